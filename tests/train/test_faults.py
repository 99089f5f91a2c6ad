"""Fault injection is a step hook the driver adds only when the environment asks for it, not training code."""

from __future__ import annotations

import subprocess
import sys

from sonar_ray.train import faults


def test_the_injected_failure_kills_rank_zero_once_at_its_step(tmp_path, monkeypatch):
    monkeypatch.delenv(faults.ENV, raising=False)
    assert faults.hooks_from_env(str(tmp_path)) == []  # a normal run: no hook at all
    monkeypatch.setenv(faults.ENV, "3")
    [hook] = faults.hooks_from_env(str(tmp_path))
    hook(2, 0)
    hook(3, 1)  # another step, another rank: nothing happens
    worker = f"from sonar_ray.train.faults import KillWorkerAt; KillWorkerAt(3, {hook.marker!r})(3, 0); print('alive')"
    first = subprocess.run([sys.executable, "-c", worker], capture_output=True, text=True, timeout=120)
    assert first.returncode == 1 and "alive" not in first.stdout and (tmp_path / faults.MARKER).exists()
    again = subprocess.run([sys.executable, "-c", worker], capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "alive" in again.stdout  # the restarted worker goes on


def test_the_training_loop_holds_no_fault_injection():
    from pathlib import Path

    loop = (Path(faults.__file__).parent / "loop.py").read_text()
    assert "_exit" not in loop and faults.ENV not in loop and "fault_marker" not in loop and "fail_at" not in loop
