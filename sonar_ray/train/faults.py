"""Test-only fault injection, kept out of the training loop: a step hook that kills rank 0's worker once.

`SONAR_INJECT_FAILURE_AT_STEP=N` in the driver's environment makes the driver pass `KillWorkerAt(N, marker)`
to every worker's `step_hooks`: just before step N is trained, rank 0 leaves the marker file and exits,
so Ray Train's FailureConfig must restart the group from the last checkpoint; the marker keeps the
restarted worker alive.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ENV = "SONAR_INJECT_FAILURE_AT_STEP"
MARKER = ".injected_failure"


@dataclass
class KillWorkerAt:
    step: int
    marker: str  # a local path every worker can see

    def __call__(self, step: int, rank: int) -> None:
        if step == self.step and rank == 0 and not Path(self.marker).exists():
            Path(self.marker).touch()
            os._exit(1)  # a dying worker, not an exception Ray Train could report as a training error


def hooks_from_env(log_dir: str) -> list:
    """The step hooks the environment asks for (none unless a test set SONAR_INJECT_FAILURE_AT_STEP)."""
    at = int(os.environ.get(ENV, -1))
    return [KillWorkerAt(at, os.path.join(log_dir, MARKER))] if at >= 0 else []
