"""Reporting to Ray Train with checkpoints uploaded in the background.

`ray.train.report(..., checkpoint_upload_mode=ASYNC)` hands the upload (to S3 in production) to one
worker thread of Ray's and returns, so training goes on while a checkpoint travels. What that leaves
to us, and `CheckpointReporter` does:
- the local folder must outlive `report`: it is a `mkdtemp` that Ray deletes once uploaded
  (`delete_local_checkpoint_after_upload`, the ASYNC default), not a `TemporaryDirectory`;
- every report of the run goes ASYNC, metrics-only ones too: a SYNC report queues behind the pending
  upload, so it would wait for it after all;
- at most one upload is pending: before rank 0 writes the next checkpoint it waits until Ray Train
  has registered every earlier report (none is ever dropped, and local disk holds one checkpoint);
- progress.json (`safe_step`, where a restarted data stream may begin) names only a checkpoint that
  Ray Train has registered, so it lags the newest checkpoint by one and never gets ahead of the
  checkpoint a restart restores;
- `close()` returns once the last checkpoint is registered, the one `fit()` returns as `result.checkpoint`.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import ray.train

from sonar_ray import storage

PROGRESS = "progress.json"  # {"safe_step": N}: where a restarted data stream may begin


def write_progress(output: str, safe_step: int) -> None:
    storage.write_bytes_atomic(storage.join(output, PROGRESS), json.dumps({"safe_step": safe_step}).encode())


class CheckpointReporter:
    """Every worker reports through one of these at the same steps (a report is a barrier across them);
    rank 0 alone writes checkpoints, and progress.json into `output` when given."""

    def __init__(self, rank: int, output: str | None = None):
        self.rank, self.output = rank, output
        self.pending_step: int | None = None  # step of the checkpoint rank 0 reported last, maybe still uploading

    def report(self, metrics: dict, step: int, write: Callable[[Path], None] | None = None) -> None:
        """Report `metrics`; with `write`, also a checkpoint of `step` that `write(folder)` fills on rank 0."""
        checkpoint = None
        if write is not None and self.rank == 0:
            self._wait_for_upload()
            folder = tempfile.mkdtemp(prefix="sonar-checkpoint-")  # Ray deletes it once uploaded
            write(Path(folder))
            checkpoint = ray.train.Checkpoint.from_directory(folder)
            self.pending_step = step
        ray.train.report(metrics, checkpoint=checkpoint, checkpoint_upload_mode=ray.train.CheckpointUploadMode.ASYNC)

    def _wait_for_upload(self) -> None:
        """Once Ray Train has registered every report so far, the pending checkpoint is the one a restart
        restores: a restarted stream may begin at its step."""
        if self.pending_step is not None:
            wait_registered()
            if self.output is not None:
                write_progress(self.output, self.pending_step)
            self.pending_step = None

    def close(self) -> None:
        """At the end of the training function: the last checkpoint is in storage and registered (the
        driver exports it and records its step in progress.json)."""
        if self.rank == 0 and self.pending_step is not None:
            wait_registered()


def wait_registered() -> None:
    """Block until Ray Train has uploaded and registered every report of this worker so far."""
    ray.train.get_all_reported_checkpoints(consistency_mode=ray.train.CheckpointConsistencyMode.COMMITTED)
