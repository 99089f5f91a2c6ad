"""The driver side of a training run: resolve inputs, build the stream, run the TorchTrainer, export.

`fit(cfg, paths, data_cfg)` is what `adapt(cfg)` and `pretrain(cfg)` call; it returns a `RunSummary`
and leaves in `output`: model.pt, tokenizer.pt, predictor.pt (exports of the final checkpoint),
metrics.jsonl, bad_inputs.json and ray/ (Ray Train's run folder with its checkpoints, used by --resume
and by failure restarts).
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from sonar_ray import progress, storage
from sonar_ray.cluster import init_ray, quiet_data_progress
from sonar_ray.config import to_dict
from sonar_ray.data import DataConfig, PreparedData, build_train_dataset, prepare_data, write_bad_input_report
from sonar_ray.train import artifacts, faults
from sonar_ray.train.config import TrainConfig
from sonar_ray.train.health import HoldOut, split_holdout
from sonar_ray.train.checkpoints import PROGRESS, write_progress
from sonar_ray.train.loop import train_loop_per_worker
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
    health: dict | None = None   # {"before"/"after": {"new"/"prior": masked-prediction health}} on held-out clips


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
    """Worker `rank`'s own stream of batches rank, rank + W, ...; called by Ray Train each time its
    worker group starts. A restart begins at the last safe step (progress.json, which may lag the
    restored checkpoint by one) and the worker skips what its checkpoint already trained, so every
    batch is trained exactly once. The stream ends at `end_step`."""

    def __init__(self, data_cfg: DataConfig, output: str, num_workers: int, rank: int, end_step: int,
                 prepared: PreparedData | None):
        self.data_cfg, self.output, self.num_workers, self.rank = data_cfg, output, num_workers, rank
        self.prepared, self.stop_batch = prepared, end_step * num_workers

    def __call__(self):
        quiet_data_progress()
        start = _read_progress(self.output) * self.num_workers
        return build_train_dataset(self.data_cfg, start_batch=start, stop_batch=self.stop_batch,
                                   prepared=self.prepared, rank=self.rank, num_ranks=self.num_workers)


def ingest_config():
    """Each worker reads its own dataset whole, in order. Ray Train would otherwise split every
    dataset dynamically and replace its execution options (preserve_order included) with the
    driver's defaults, so which batch a worker trains would depend on timing."""
    from ray.train import DataConfig as IngestConfig

    options = IngestConfig.default_ingest_options()
    options.preserve_order = True
    return IngestConfig(datasets_to_split=[], execution_options=options)


RUN_CONFIG = "run_config.json"
# Settings --resume may change: they do not alter what the run computes.
RESUMABLE = ("resume", "demo", "stop_after", "evaluate", "eval_split", "eval_other_domains", "probes", "wandb",
             "wandb_project", "ray_address", "max_failures", "log_every", "checkpoint_every", "cpus_per_worker",
             "gpus_per_worker")


def ray_storage(uri: str) -> tuple[str, object | None]:
    """RunConfig's (storage_path, storage_filesystem) for Ray Train's run folder: a local path or a bucket prefix."""
    if storage.is_remote(uri):
        fs, path = storage.pyarrow_filesystem(uri)
        return path, fs
    return str(Path(uri).resolve()), None


def check_resume(cfg: TrainConfig, output: str) -> None:
    """--resume continues the recorded run only with the same settings; names every difference."""
    uri = storage.join(output, RUN_CONFIG)
    if not storage.exists(uri):
        return  # a run from before configurations were recorded
    recorded, now = json.loads(storage.read_bytes(uri)), to_dict(cfg)
    changed = [f"--{k.replace('_', '-')} {recorded.get(k)!r} -> {now[k]!r}" for k in sorted(now)
               if k not in RESUMABLE and recorded.get(k) != now[k]]
    if changed:
        raise ValueError(f"--resume: {output} holds a run with other settings ({'; '.join(changed)}); "
                         "use the recorded settings or another --output")


def check_inputs(cfg: TrainConfig, paths: dict) -> None:
    """Fail before any worker starts: missing or incompatible starting model, missing probes."""
    from sonar_ray.data.manifest import PROBE_MANIFEST
    from sonar_ray.models import beats

    if cfg.method != "scratch":
        if not paths.get("base"):
            raise ValueError(f"--method {cfg.method} needs a starting checkpoint (--base)")
        storage.require_exists(paths["base"], "base checkpoint")
        beats.load_checkpoint(paths["base"])  # raises a clear error on wrong keys / shapes
    for key in ("tokenizer", "predictor"):
        if paths.get(key):
            storage.require_exists(paths[key], f"{key} checkpoint")
    if cfg.method == "sonar" and cfg.lambda_tok > 0 and not paths.get("predictor"):
        raise ValueError("tokenizer-level distillation (lambda_tok > 0) needs the starting model's predictor.pt "
                         "beside --base; pass --lambda-tok 0 to train without it")
    if cfg.evaluate and cfg.probes:  # else found only after training, when evaluation starts
        storage.require_exists(storage.join(cfg.probes, PROBE_MANIFEST), "probe manifest (--probes)")


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
    if existing:
        check_resume(cfg, output)
    else:
        write_progress(output, 0)
        storage.write_bytes_atomic(storage.join(output, RUN_CONFIG), json.dumps(to_dict(cfg), indent=2).encode())
    storage.makedirs(output)
    init_ray(cfg.ray_address)

    log_dir = output if not storage.is_remote(output) else tempfile.mkdtemp(prefix="sonar-logs-")
    loop_config = {
        "train": to_dict(cfg), "paths": paths, "log_dir": log_dir, "output": output,
        "run_name": wandb_run_id(output, name, resume=existing),  # a fresh id unless continuing this run
        "threads_per_worker": max(1, int(cfg.cpus_per_worker)) if not cfg.use_gpu else 4,
        "step_hooks": faults.hooks_from_env(log_dir),
    }
    # A held-out slice of the run's own data, set aside before the stream is planned.
    prepared = prepared or prepare_data(data_cfg)
    write_bad_input_report(output, prepared.bad)  # what the run skipped, whoever prepared its data
    loop_config["skipped_inputs"] = len(prepared.bad)
    prepared, holdout = split_holdout(prepared, data_cfg.clip_seconds, retries=data_cfg.read_retries)
    before = holdout.measure(paths_files(paths), cfg.mask_ratio)
    storage_path, storage_fs = ray_storage(ray_dir)
    bar = progress.TrainProgress(f"fit {name}", total=cfg.end_step, initial=_read_progress(output))
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config=loop_config,
        scaling_config=ScalingConfig(num_workers=cfg.num_workers, use_gpu=cfg.use_gpu,
                                     resources_per_worker={"CPU": cfg.cpus_per_worker, **({"GPU": cfg.gpus_per_worker} if cfg.use_gpu else {})}),
        run_config=RunConfig(name=name, storage_path=storage_path, storage_filesystem=storage_fs,
                             failure_config=FailureConfig(max_failures=cfg.max_failures),
                             checkpoint_config=CheckpointConfig(num_to_keep=2), callbacks=[bar.callback]),
        datasets={f"train_{r}": StreamFactory(data_cfg, output, cfg.num_workers, r, cfg.end_step, prepared)
                  for r in range(cfg.num_workers)},
        dataset_config=ingest_config(),
    )
    t0 = time.time()
    with bar:
        result = trainer.fit()
    wall = time.time() - t0
    if result.checkpoint is None:
        raise RuntimeError(f"run {name!r} finished without a checkpoint: {result.error}")
    summary = export(cfg, result, output, wall)
    record_health(summary, holdout, before, cfg.mask_ratio)
    # The final checkpoint is registered now: a later --resume (e.g. a larger --stop-after) streams
    # on from exactly where this one stopped.
    write_progress(output, summary.steps)
    return summary


def paths_files(paths: dict) -> dict:
    return {"model": paths.get("base"), "tokenizer": paths.get("tokenizer"), "predictor": paths.get("predictor")}


def record_health(summary: RunSummary, holdout: HoldOut, before: dict, mask_ratio: float) -> None:
    """Score the exported model on the held-out slice; into the summary, metrics.jsonl and the console."""
    after = holdout.measure({"model": summary.model, "tokenizer": summary.tokenizer,
                             "predictor": summary.predictor}, mask_ratio)
    summary.health = {"before": before, "after": after}
    # Onto the final step's row, so readers still see one row per step.
    health = {f"health/{src}/{k}": v for src, h in after.items() for k, v in h.items()}
    uri = storage.join(summary.output, "metrics.jsonl")
    rows = storage.read_bytes(uri).decode().splitlines() if storage.exists(uri) else []
    if rows and health:
        rows[-1] = json.dumps({**json.loads(rows[-1]), **health})
        storage.write_bytes_atomic(uri, ("\n".join(rows) + "\n").encode())
    for src, h in after.items():
        was = before.get(src, {})
        print(f"[health] {src} (held-out {h['clips']} clips): information gain {h['info_gain']:.2f} nats"
              + (f" (was {was['info_gain']:.2f})" if was else "")
              + f", masked accuracy {h['masked_accuracy']:.3f} vs majority {h['majority_accuracy']:.3f}"
              + f", labels perplexity {h['label_perplexity']:.1f}, live codes {h['live_code_share']:.0%}", flush=True)


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
