"""Training a BEATs tokenizer from a teacher model (BEATs iteration 2), on Ray Train.

One worker: the EMA codebook update is a per-batch k-means step whose statistics would have to be
all-reduced across replicas; at tokenizer scale one worker is enough and keeps it exact.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from sonar_ray import storage
from sonar_ray.data import DataConfig, build_train_dataset, iter_train_batches
from sonar_ray.models import beats, tokenizer as tokenizer_lib
from sonar_ray.objectives.tokenizer_training import FeatureEstimator, tokenizer_loss
from sonar_ray.train import artifacts
from sonar_ray.train.loop import normalize_fbank
from sonar_ray.train.schedule import build_optimizer, warmup_cosine


@dataclass
class TokenizerTrainConfig:
    steps: int = 100
    lr: float = 5e-4
    quant_n: int = 256          # codes; small corpora cannot populate BEATs' 1024
    quant_dim: int = 32
    encoder_layers: int = 2     # the tokenizer is a smaller copy of the teacher's architecture
    seed: int = 0


def tokenizer_config(teacher_cfg: beats.BEATsConfig, cfg: TokenizerTrainConfig) -> tokenizer_lib.TokenizerConfig:
    fields = {k: v for k, v in teacher_cfg.to_dict().items() if k in tokenizer_lib.TokenizerConfig.__dataclass_fields__}
    fields.update(encoder_layers=cfg.encoder_layers, quant_n=cfg.quant_n, quant_dim=cfg.quant_dim)
    return tokenizer_lib.TokenizerConfig.from_dict(fields)


def train_tokenizer_loop_per_worker(config: dict) -> None:
    import ray.train

    cfg = TokenizerTrainConfig(**config["tokenizer"])
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(2)
    teacher = beats.load_checkpoint(config["teacher"]).requires_grad_(False)
    tok = tokenizer_lib.Tokenizer(tokenizer_config(teacher.cfg, cfg)).train()
    estimator = FeatureEstimator(cfg.quant_dim, teacher.cfg.encoder_embed_dim)
    params = [p for p in [*tok.parameters(), *estimator.parameters()] if p.requires_grad]
    optimizer = build_optimizer(params, cfg.lr, 0.01)
    scheduler = warmup_cosine(optimizer, max(1, cfg.steps // 10), cfg.steps)
    step = 0
    for batch in iter_train_batches(ray.train.get_dataset_shard("train")):
        if step >= cfg.steps:
            break
        fbank = normalize_fbank(batch["fbank"])  # (B, T, 128)
        frame_pad = batch["padding_mask"]  # (B, T)
        with torch.no_grad():
            x = teacher.embed(fbank)  # (B, P, D)
            patch_pad = teacher.patch_padding_mask(frame_pad, x.shape[1])  # (B, P)
            target, _ = teacher.encode(x, patch_pad)  # (B, P, D) teacher's last layer
        out = tokenizer_loss(tok, estimator, fbank, target, patch_pad, frame_pad)
        optimizer.zero_grad(set_to_none=True)
        out["loss"].backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        scheduler.step()
        step += 1
        metrics = {"step": step, "tok_loss": float(out["loss"]), "tok_cosine": float(out["cosine"]),
                   "tok_coverage": float(out["label_coverage"])}
        if step % 20 == 0 or step == cfg.steps:
            print(f"[tokenizer {step}/{cfg.steps}] cosine={metrics['tok_cosine']:.3f} "
                  f"coverage={metrics['tok_coverage']:.2f}", flush=True)
        if step == cfg.steps:
            with tempfile.TemporaryDirectory() as d:
                tokenizer_lib.save_checkpoint(tok.eval(), str(Path(d) / artifacts.TOKENIZER))
                ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(d))


def fit_tokenizer(teacher_ckpt: str, data_cfg: DataConfig, output: str, cfg: TokenizerTrainConfig) -> str:
    """Train a tokenizer whose codes predict `teacher_ckpt`'s features; returns the tokenizer URI."""
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    out_uri = storage.join(output, artifacts.TOKENIZER)
    if storage.exists(out_uri):
        return out_uri  # already trained by an earlier (interrupted) run
    data_cfg = DataConfig(**{**data_cfg.__dict__, "num_batches": cfg.steps, "replay_ratio": 0.0})
    trainer = TorchTrainer(
        train_tokenizer_loop_per_worker,
        train_loop_config={"tokenizer": asdict(cfg), "teacher": teacher_ckpt},
        scaling_config=ScalingConfig(num_workers=1, resources_per_worker={"CPU": 1}),
        run_config=RunConfig(name="tokenizer", storage_path=str(Path(output, "ray").resolve())),
        datasets={"train": build_train_dataset(data_cfg)},
    )
    result = trainer.fit()
    with result.checkpoint.as_directory() as d:
        storage.write_bytes_atomic(out_uri, (Path(d) / artifacts.TOKENIZER).read_bytes())
    return out_uri
