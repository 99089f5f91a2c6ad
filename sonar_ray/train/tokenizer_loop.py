"""Training a BEATs tokenizer from a teacher model (BEATs iteration 2), on Ray Train.

One worker: the EMA codebook update is a per-batch k-means step whose statistics would have to be
all-reduced across replicas; at tokenizer scale one worker is enough and keeps it exact. Like the other
fits it writes through `sonar_ray.storage` (Ray's run folder and tokenizer.pt may be on a bucket) and
trains on a GPU with `use_gpu`.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch

from sonar_ray import progress, storage
from sonar_ray.audio.features import normalize_fbank
from sonar_ray.data import DataConfig, build_train_dataset, iter_train_batches, prepare_data
from sonar_ray.models import beats, tokenizer as tokenizer_lib
from sonar_ray.objectives.tokenizer_training import TokenizerTrainConfig, TokenizerTrainer
from sonar_ray.train import artifacts
from sonar_ray.train.checkpoints import CheckpointReporter
from sonar_ray.train.driver import ingest_config, ray_storage
from sonar_ray.train.health import split_holdout


def train_tokenizer_loop_per_worker(config: dict) -> None:
    import ray.train
    import ray.train.torch

    cfg = TokenizerTrainConfig(**config["tokenizer"])
    torch.set_num_threads(2)
    device = ray.train.torch.get_device()
    teacher = beats.load_checkpoint(config["teacher"]).requires_grad_(False)
    trainer = TokenizerTrainer(cfg, teacher, device)
    reporter = CheckpointReporter(ray.train.get_context().get_world_rank())
    for batch in iter_train_batches(ray.train.get_dataset_shard("train"), first_index=0):  # in order, or an error
        if trainer.step >= cfg.steps:
            break
        metrics = trainer.train_step(normalize_fbank(batch["fbank"].to(device)), batch["padding_mask"].to(device))
        if trainer.step % 20 == 0 or trainer.step == cfg.steps:
            print(f"[tokenizer {trainer.step}/{cfg.steps}] cosine={metrics['tok_cosine']:.3f} "
                  f"coverage={metrics['tok_coverage']:.2f} restarted={metrics['tok_restarted']}", flush=True)
        if trainer.step == cfg.steps:
            reporter.report(metrics, trainer.step, write=lambda d: tokenizer_lib.save_checkpoint(
                trainer.tokenizer.eval(), str(d / artifacts.TOKENIZER)))
        elif trainer.step % 10 == 0:
            reporter.report(metrics, trainer.step)  # feeds the driver's progress bar
    reporter.close()


def fit_tokenizer(teacher_ckpt: str, data_cfg: DataConfig, output: str, cfg: TokenizerTrainConfig,
                  use_gpu: bool = False) -> tuple[str, dict]:
    """Train a tokenizer whose codes predict `teacher_ckpt`'s features.

    Returns the tokenizer URI and its label health on a held-out slice of the data ({} when it was
    trained by an earlier, interrupted run and only reused here)."""
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    out_uri = storage.join(output, artifacts.TOKENIZER)
    data_cfg = DataConfig(**{**data_cfg.__dict__, "num_batches": cfg.steps, "replay_ratio": 0.0})
    prepared, holdout = split_holdout(prepare_data(data_cfg), data_cfg.clip_seconds, retries=data_cfg.read_retries)
    if not storage.exists(out_uri):  # else: already trained by an earlier (interrupted) run
        bar = progress.TrainProgress("fit tokenizer", total=cfg.steps)
        storage_path, storage_fs = ray_storage(storage.join(output, "ray"))
        trainer = TorchTrainer(
            train_tokenizer_loop_per_worker,
            train_loop_config={"tokenizer": asdict(cfg), "teacher": teacher_ckpt},
            scaling_config=ScalingConfig(num_workers=1, use_gpu=use_gpu,
                                         resources_per_worker={"CPU": 1, **({"GPU": 1} if use_gpu else {})}),
            run_config=RunConfig(name="tokenizer", storage_path=storage_path, storage_filesystem=storage_fs,
                                 callbacks=[bar.callback]),
            datasets={"train": build_train_dataset(data_cfg, prepared=prepared)},
            dataset_config=ingest_config(),  # batches in plan order: the codebook is the same run to run
        )
        with bar:
            result = trainer.fit()
        with result.checkpoint.as_directory() as d:
            storage.write_bytes_atomic(out_uri, (Path(d) / artifacts.TOKENIZER).read_bytes())
    health = holdout.tokenizer_health(out_uri)
    for src, h in health.items():
        print(f"[health] tokenizer on {src}: labels perplexity {h['label_perplexity']:.1f}, "
              f"live codes {h['live_code_share']:.0%}", flush=True)
    return out_uri, health
