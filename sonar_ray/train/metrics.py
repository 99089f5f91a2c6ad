"""Rank-0 metric sinks: a JSON-lines file we own, wandb (offline unless told otherwise), a log line with ETA.

Each run gets its own wandb run id, kept in its output folder: a fresh run (a new --output, another
seed, each trial of a sweep) never merges into an earlier W&B run, and only the same run continued
(--resume, or a restart after a failure) logs to the same one again.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from pathlib import Path

from sonar_ray import storage

WANDB_ID_FILE = "wandb_run_id"


def wandb_run_id(output: str, prefix: str, *, resume: bool) -> str:
    """A new id `<prefix>-<8 hex>` for a fresh run, stored in `output`; the stored one on resume."""
    uri = storage.join(output, WANDB_ID_FILE)
    if resume and storage.exists(uri):
        return storage.read_bytes(uri).decode().strip()
    run_id = f"{prefix}-{secrets.token_hex(4)}"
    storage.write_bytes_atomic(uri, run_id.encode())
    return run_id


class MetricsLogger:
    """`run_name` is the run's unique id (`wandb_run_id`): wandb's run name and id both."""

    def __init__(self, local_dir: str, total_steps: int, start_step: int = 0, *, use_wandb: bool,
                 project: str, run_name: str, config: dict):
        self.path = Path(local_dir) / "metrics.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.total, self.start_step, self.t0 = total_steps, start_step, time.time()
        self.run = None
        if use_wandb:
            import wandb

            os.environ.setdefault("WANDB_MODE", "offline")  # never needs a key or the network
            os.environ.setdefault("WANDB_SILENT", "true")
            wandb_dir = Path(local_dir) / "wandb"
            wandb_dir.mkdir(parents=True, exist_ok=True)
            self.run = wandb.init(project=project, name=run_name, id=run_name, resume="allow",
                                  dir=str(wandb_dir), config=config, reinit="finish_previous")

    def log(self, step: int, metrics: dict) -> None:
        row = {"step": step, **{k: float(v) for k, v in metrics.items()}}
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        if self.run is not None:
            self.run.log(metrics, step=step)
        done = step - self.start_step
        elapsed = time.time() - self.t0
        eta = elapsed / max(done, 1) * (self.total - step)
        terms = " ".join(f"{k}={v:.3f}" for k, v in metrics.items() if k.startswith(("loss", "acc")))
        print(f"[step {step}/{self.total}] {terms} ({metrics.get('samples_per_s', 0):.1f} clips/s, eta {eta:.0f}s)",
              flush=True)

    def close(self) -> None:
        if self.run is not None:
            self.run.finish()  # flushes the offline run file
