"""Every value of a run is checked when the command line is parsed, and inputs before any worker
starts; a user error reaches the user as one line naming the file with the traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sonar_ray.config import parse_cli, save, to_dict
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


def test_a_batch_too_small_to_replay_is_fine_without_replay():
    with pytest.raises(ValueError, match="no replay at all"):
        parse_cli(TrainConfig, ["--batch-size", "1"])
    assert parse_cli(TrainConfig, ["--method", "dcpt", "--batch-size", "1"]).replay_ratio == 0.0


KNOBS = ("replay_ratio", "lambda_tok", "lambda_model", "codebook_reanchor", "codebook_grow")


@pytest.mark.parametrize("method,values", [
    ("sonar", (0.5, 1.0, 1.0, True, 0)),
    ("dcpt", (0.0, 0.0, 0.0, False, 0)),  # used to record replay 0.5 and lambdas 1.0 that never ran
    ("scratch", (0.5, 0.0, 0.0, False, 0)),  # no teacher; may replay (the retrain baseline)
])
def test_a_method_writes_the_values_it_runs_with(method, values):
    cfg = parse_cli(TrainConfig, ["--method", method])
    assert tuple(getattr(cfg, k) for k in KNOBS) == values
    assert tuple(to_dict(cfg)[k] for k in KNOBS) == values  # what run_config.json / summary.json record


@pytest.mark.parametrize("argv,flag", [
    (["--method", "dcpt", "--replay-ratio", "0.3"], "--replay-ratio"),
    (["--method", "dcpt", "--lambda-model", "1"], "--lambda-model"),
    (["--method", "dcpt", "--codebook-reanchor"], "--codebook-reanchor"),
    (["--method", "scratch", "--lambda-tok", "0.5"], "--lambda-tok"),
    (["--method", "dcpt", "--codebook-grow", "4"], "--codebook-grow"),
])
def test_a_value_a_method_fixes_cannot_be_overridden_silently(argv, flag):
    with pytest.raises(ValueError, match=f"--method {argv[1]} runs with {flag}"):
        parse_cli(TrainConfig, argv)


def test_a_value_equal_to_the_methods_is_fine_and_files_count_as_given(tmp_path):
    assert parse_cli(TrainConfig, ["--method", "dcpt", "--replay-ratio", "0", "--no-codebook-reanchor"]).lambda_tok == 0
    cfg_file = tmp_path / "run.yaml"
    cfg_file.write_text("method: dcpt\nreplay_ratio: 0.3\n")
    with pytest.raises(ValueError, match="--method dcpt runs with --replay-ratio"):
        parse_cli(TrainConfig, ["--config", str(cfg_file)])
    cfg_file.write_text("method: dcpt\n")  # a flag overrides the file's method: the knobs follow the flag's
    assert parse_cli(TrainConfig, ["--config", str(cfg_file), "--method", "sonar"]).replay_ratio == 0.5
    saved = tmp_path / "config.json"  # a run's own record reloads as it was
    save(parse_cli(TrainConfig, ["--method", "dcpt"]), saved)
    assert parse_cli(TrainConfig, ["--config", str(saved)]) == parse_cli(TrainConfig, ["--method", "dcpt"])


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
