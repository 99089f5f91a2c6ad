"""`ray job submit -- python jobs/adapt.py ...` against a real head node started by the test."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fixtures_train import assert_readable_console, tiny_adapt_args

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def test_adapt_runs_through_ray_job_submit(ray_head, tiny_corpus, tiny_base, tmp_path):
    out = tmp_path / "submitted"
    ray_bin = str(Path(sys.executable).parent / "ray")
    cmd = [ray_bin, "job", "submit", "--address", ray_head["dashboard_url"], "--",
           sys.executable, str(REPO / "jobs" / "adapt.py"), *tiny_adapt_args(tiny_corpus, tiny_base, str(out), "--no-evaluate")]
    env = dict(os.environ, RAY_AUTH_MODE="disabled")
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "succeeded" in proc.stdout.lower()
    # The job's log as `ray job submit` streams it: progress and the summary, none of Ray's own noise;
    # the full logs are where its first line says, workers' output included.
    job_log = proc.stdout.split("Tailing logs until the job exits")[1].rsplit("-----", 1)[0]
    assert_readable_console(job_log)
    # (no progress bar here: the head node inherits the test session's TQDM_DISABLE)
    assert "== sonar adaptation to 'speech'" in job_log
    (logs,) = [line.split("full logs: ")[1].split(" (")[0] for line in job_log.splitlines() if "full logs: " in line]
    assert (Path(logs) / "sonar-driver.log").exists()
    assert any("[step 4/4]" in p.read_text(errors="replace") for p in Path(logs).glob("worker-*.out"))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 4 and Path(summary["model"]).exists()
