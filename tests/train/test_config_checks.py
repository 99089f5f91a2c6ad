"""Every value of a run is checked when the command line is parsed, and inputs before any worker
starts; a user error reaches the user as one line naming the file with the traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sonar_ray.config import parse_cli
from sonar_ray.train.config import TrainConfig
from sonar_ray.train.driver import check_inputs

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("argv,match", [
    (["--checkpoint-every", "0"], "checkpoint-every"),  # used to fail after training, dividing by zero
    (["--log-every", "0"], "log-every"),
    (["--lr", "-1"], "lr"),
    (["--batch-size", "4", "--replay-ratio", "0.9"], "no new-domain clip"),  # rounds to 4 of 4 prior clips
    (["--batch-size", "4", "--replay-ratio", "0.1"], "no replay at all"),
])
def test_values_are_checked_at_parse_time(argv, match):
    with pytest.raises(ValueError, match=match):
        parse_cli(TrainConfig, argv)


def test_a_ratio_that_rounds_to_all_replay_is_fine_without_replay():
    assert parse_cli(TrainConfig, ["--method", "dcpt", "--batch-size", "4", "--replay-ratio", "0.9"]).method == "dcpt"


def test_missing_probes_are_found_before_training(tmp_path):
    cfg = TrainConfig(method="scratch", probes=str(tmp_path / "no-corpus"), output=str(tmp_path / "out"))
    with pytest.raises(FileNotFoundError, match="probe manifest"):
        check_inputs(cfg, {})
    check_inputs(TrainConfig(method="scratch", probes=str(tmp_path), evaluate=False), {})  # not evaluating: fine


def test_a_user_error_is_one_line_with_the_log_path():
    out = subprocess.run([sys.executable, str(REPO / "jobs" / "adapt.py"), "--checkpoint-every", "0"],
                         capture_output=True, text=True, timeout=120, cwd=REPO)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    (line,) = out.stderr.strip().splitlines()
    assert "--checkpoint-every must be >= 1" in line
    log = Path(line.rsplit("traceback: ", 1)[1].rstrip(")"))
    assert "Traceback" in log.read_text()
    log.unlink()
