"""The driver side of a training run: resolve inputs, build the stream, run the TorchTrainer, export.

`fit(cfg, paths, data_cfg)` is what jobs call; it returns a `RunSummary` and leaves in `output`:
model.pt, tokenizer.pt, predictor.pt (exports of the final checkpoint), metrics.jsonl, bad_inputs.json
and ray/ (Ray Train's run folder with its checkpoints, used by --resume and by failure restarts).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from sonar_ray import progress, storage
from sonar_ray.cluster import init_ray, quiet_data_progress
from sonar_ray.config import to_dict
from sonar_ray.data import DataConfig, PreparedData, build_train_dataset
from sonar_ray.train import artifacts
from sonar_ray.train.config import TrainConfig
from sonar_ray.train.loop import PROGRESS, train_loop_per_worker
from sonar_ray.train.metrics import wandb_run_id


@dataclass
class RunSummary:
    output: str
    model: str
    tokenizer: str
    predictor: str
    steps: int
    samples_seen: int
    wall_seconds: float
    worker_seconds: float   # CPU/GPU-seconds: wall time x workers
    final_metrics: dict
    first_metrics: dict


def run_name(cfg: TrainConfig) -> str:
    """Stable (no timestamps), so --resume and failure restarts find the run again."""
    return f"{cfg.method}-{cfg.domain}"


def _read_progress(output: str) -> int:
    uri = storage.join(output, PROGRESS)
    return json.loads(storage.read_bytes(uri))["safe_step"] if storage.exists(uri) else 0


def completed_steps(output: str) -> int:
    """How far the run in `output` has safely got, once it has exported a model (0: none yet). Equal to
    the exported model's step between invocations; while a later segment runs it may be ahead of it,
    never ahead of that segment's end (its own checkpoints lag by one)."""
    return _read_progress(output) if storage.exists(storage.join(output, artifacts.MODEL)) else 0


class StreamFactory:
    """Called by Ray Train each time its worker group starts: a restart resumes the stream
    near the restored step instead of from the beginning (workers skip nothing, so the few
    batches after the safe point may be seen twice, never skipped). The stream ends at `end_step`."""

    def __init__(self, data_cfg: DataConfig, output: str, num_workers: int, end_step: int,
                 prepared: PreparedData | None):
        self.data_cfg, self.output, self.num_workers, self.prepared = data_cfg, output, num_workers, prepared
        self.stop_batch = end_step * num_workers

    def __call__(self):
        quiet_data_progress()
        start = _read_progress(self.output) * self.num_workers
        return build_train_dataset(self.data_cfg, start_batch=start, stop_batch=self.stop_batch,
                                   prepared=self.prepared)


def check_inputs(cfg: TrainConfig, paths: dict) -> None:
    """Fail before any worker starts: missing or incompatible starting model."""
    from sonar_ray.models import beats

    if cfg.method != "scratch":
        if not paths.get("base"):
            raise ValueError(f"--method {cfg.method} needs a starting checkpoint (--base)")
        storage.require_exists(paths["base"], "base checkpoint")
        beats.load_checkpoint(paths["base"])  # raises a clear error on wrong keys / shapes
    for key in ("tokenizer", "predictor"):
        if paths.get(key):
            storage.require_exists(paths[key], f"{key} checkpoint")


def fit(cfg: TrainConfig, paths: dict, data_cfg: DataConfig, prepared: PreparedData | None = None) -> RunSummary:
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    output = cfg.output
    check_inputs(cfg, paths)
    ray_dir = storage.join(output, "ray")
    name = run_name(cfg)
    existing = storage.exists(storage.join(ray_dir, name))
    if existing and not cfg.resume:
        raise FileExistsError(f"{output} already holds run {name!r}: pass --resume to continue it, "
                              "or choose another --output")
    if not existing:
        storage.write_bytes_atomic(storage.join(output, PROGRESS), b'{"safe_step": 0}')
    storage.makedirs(output)
    init_ray(cfg.ray_address)

    log_dir = output if not storage.is_remote(output) else tempfile.mkdtemp(prefix="sonar-logs-")
    fault_marker = storage.join(log_dir, ".injected_failure")
    loop_config = {
        "train": to_dict(cfg), "paths": paths, "log_dir": log_dir, "output": output,
        "run_name": wandb_run_id(output, name, resume=existing),  # a fresh id unless continuing this run
        "threads_per_worker": max(1, int(cfg.cpus_per_worker)) if not cfg.use_gpu else 4,
        "fail_at_step": int(os.environ.get("SONAR_INJECT_FAILURE_AT_STEP", -1)), "fault_marker": fault_marker,
    }
    storage_path, storage_fs = ray_dir, None
    if storage.is_remote(output):
        storage_fs, storage_path = storage.pyarrow_filesystem(ray_dir)
    else:
        storage_path = str(Path(ray_dir).resolve())
    bar = progress.TrainProgress(f"fit {name}", total=cfg.end_step, initial=_read_progress(output))
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config=loop_config,
        scaling_config=ScalingConfig(num_workers=cfg.num_workers, use_gpu=cfg.use_gpu,
                                     resources_per_worker={"CPU": cfg.cpus_per_worker, **({"GPU": cfg.gpus_per_worker} if cfg.use_gpu else {})}),
        run_config=RunConfig(name=name, storage_path=storage_path, storage_filesystem=storage_fs,
                             failure_config=FailureConfig(max_failures=cfg.max_failures),
                             checkpoint_config=CheckpointConfig(num_to_keep=2), callbacks=[bar.callback]),
        datasets={"train": StreamFactory(data_cfg, output, cfg.num_workers, cfg.end_step, prepared)},
    )
    t0 = time.time()
    with bar:
        result = trainer.fit()
    wall = time.time() - t0
    if result.checkpoint is None:
        raise RuntimeError(f"run {name!r} finished without a checkpoint: {result.error}")
    summary = export(cfg, result, output, wall)
    # The final checkpoint is registered now: a later --resume (e.g. a larger --stop-after) streams
    # on from exactly where this one stopped.
    storage.write_bytes_atomic(storage.join(output, PROGRESS), json.dumps({"safe_step": summary.steps}).encode())
    return summary


def export(cfg: TrainConfig, result, output: str, wall: float) -> RunSummary:
    """Copy the final checkpoint's model files to the output root (official formats)."""
    with result.checkpoint.as_directory() as d:
        d = Path(d)
        for name in (artifacts.MODEL, artifacts.TOKENIZER, artifacts.PREDICTOR, "metrics.jsonl"):
            if (d / name).exists():
                storage.write_bytes_atomic(storage.join(output, name), (d / name).read_bytes())
        rows = [json.loads(l) for l in (d / "metrics.jsonl").read_text().splitlines()] if (d / "metrics.jsonl").exists() else []
        state = artifacts.load_torch(str(d / artifacts.TRAINER_STATE))
    steps = int(state["step"])
    return RunSummary(
        output=output, model=storage.join(output, artifacts.MODEL), tokenizer=storage.join(output, artifacts.TOKENIZER),
        predictor=storage.join(output, artifacts.PREDICTOR), steps=steps,
        samples_seen=steps * cfg.batch_size * cfg.num_workers, wall_seconds=round(wall, 2),
        worker_seconds=round(wall * cfg.num_workers, 2), final_metrics=rows[-1] if rows else dict(result.metrics or {}),
        first_metrics=rows[0] if rows else {})
