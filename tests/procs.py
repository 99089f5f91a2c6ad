"""Stopping the servers tests start: by process group, never machine-wide."""

from __future__ import annotations

import os
import subprocess


def stop_process_group(proc: subprocess.Popen, timeout: float = 30) -> None:
    """SIGTERM the group `proc` leads (started with start_new_session=True), SIGKILL if it lingers."""
    os.killpg(proc.pid, 15)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        proc.wait()
