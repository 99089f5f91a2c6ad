"""Stopping the servers tests start: by process group, never machine-wide."""

from __future__ import annotations

import os
import subprocess


def stop_process_group(proc: subprocess.Popen, timeout: float = 5) -> None:
    """SIGTERM the group `proc` leads (started with start_new_session=True), SIGKILL if it lingers
    (`ray start --block` takes ~30 s to honour SIGTERM; a test cluster has nothing to save)."""
    os.killpg(proc.pid, 15)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        proc.wait()
