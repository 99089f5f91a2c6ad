"""Pre-training a base model the BEATs way, in three resumable stages:

1. iteration 1: masked-token prediction of a frozen random-projection tokenizer's labels;
2. a tokenizer trained to predict the iteration-1 model's features;
3. iteration 2: masked-token prediction of that tokenizer's labels.

Deviation from BEATs, for cost: iteration 2 continues from the iteration-1 encoder instead of
restarting from random weights. `--init CKPT` starts iteration 1 from an existing (e.g. official) model.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from sonar_ray import storage
from sonar_ray.train import artifacts
from sonar_ray.train.config import TrainConfig
from sonar_ray.train.driver import RunSummary, fit
from sonar_ray.train.inputs import data_config
from sonar_ray.train.tokenizer_loop import TokenizerTrainConfig, fit_tokenizer


@dataclass
class PretrainConfig:
    """Pre-train a BEATs base model on prior (general) audio."""

    data: str | None = field(default=None, metadata={"help": "prior audio: corpus root, manifest or folder (default: demo corpus)"})
    domain: str = field(default="prior", metadata={"help": "domain of the rows to train on ('' = all rows)"})
    output: str = field(default="outputs/base", metadata={"help": "output folder/URI"})
    init: str | None = field(default=None, metadata={"help": "start iteration 1 from this BEATs checkpoint"})
    preset: str = field(default="small", metadata={"help": "BEATs preset"})
    iter1_steps: int = field(default=120, metadata={"help": "iteration-1 steps"})
    tokenizer_steps: int = field(default=40, metadata={"help": "tokenizer training steps"})
    iter2_steps: int = field(default=60, metadata={"help": "iteration-2 steps"})
    tokenizer_codes: int = field(default=256, metadata={"help": "codes of the trained tokenizer"})
    batch_size: int = field(default=16, metadata={"help": "clips per worker per step"})
    clip_seconds: float = field(default=1.6, metadata={"help": "crop length"})
    lr: float = field(default=5e-4, metadata={"help": "peak learning rate"})
    num_workers: int = field(default=2, metadata={"help": "Ray Train workers"})
    use_gpu: bool = field(default=False, metadata={"help": "one GPU per worker"})
    seed: int = field(default=0, metadata={"help": "seed"})
    resume: bool = field(default=False, metadata={"help": "continue an interrupted pre-training"})
    wandb: bool = field(default=True, metadata={"help": "log to wandb (offline by default)"})
    ray_address: str | None = field(default=None, metadata={"help": "Ray cluster address"})


def _stage(cfg: PretrainConfig, name: str, steps: int, paths: dict) -> RunSummary | None:
    out = storage.join(cfg.output, name)
    if storage.exists(storage.join(out, artifacts.MODEL)):
        print(f"[pretrain] {name}: done already ({out})", flush=True)
        return None
    train = TrainConfig(domain=cfg.domain, method="scratch", data=cfg.data, prior=cfg.data, base=paths.get("base"),
                        output=out, replay_ratio=0.0, preset=cfg.preset, max_steps=steps, batch_size=cfg.batch_size,
                        clip_seconds=cfg.clip_seconds, lr=cfg.lr, warmup_steps=max(1, steps // 10),
                        num_workers=cfg.num_workers, use_gpu=cfg.use_gpu, seed=cfg.seed, resume=True,
                        checkpoint_every=max(1, steps // 2), wandb=cfg.wandb, evaluate=False,
                        ray_address=cfg.ray_address)
    print(f"[pretrain] {name}: {steps} steps -> {out}", flush=True)
    return fit(train, paths, data_config(train, new_domain=cfg.domain or None))


def pretrain(cfg: PretrainConfig) -> dict:
    """Runs the stages not yet done; returns the URIs of the base model files."""
    from sonar_ray.cluster import init_ray

    init_ray(cfg.ray_address)
    iter1 = storage.join(cfg.output, "iter1")
    _stage(cfg, "iter1", cfg.iter1_steps, {"base": cfg.init})

    tok_cfg = TokenizerTrainConfig(steps=cfg.tokenizer_steps, quant_n=cfg.tokenizer_codes, seed=cfg.seed)
    train = TrainConfig(domain=cfg.domain, method="scratch", data=cfg.data, prior=cfg.data, replay_ratio=0.0,
                        batch_size=cfg.batch_size, clip_seconds=cfg.clip_seconds, max_steps=cfg.tokenizer_steps,
                        num_workers=1, seed=cfg.seed, replay_policy="uniform")
    print(f"[pretrain] tokenizer: {cfg.tokenizer_steps} steps", flush=True)
    tokenizer = fit_tokenizer(storage.join(iter1, artifacts.MODEL), data_config(train, new_domain=cfg.domain or None),
                              storage.join(cfg.output, "tokenizer"), tok_cfg)

    _stage(replace(cfg, lr=cfg.lr / 2), "iter2", cfg.iter2_steps,
           {"base": storage.join(iter1, artifacts.MODEL), "tokenizer": tokenizer})
    iter2 = storage.join(cfg.output, "iter2")
    # The base model: iteration 2's encoder, tokenizer and predictor side by side.
    final = {}
    for name in (artifacts.MODEL, artifacts.TOKENIZER, artifacts.PREDICTOR):
        dst = storage.join(cfg.output, name)
        storage.write_bytes_atomic(dst, storage.read_bytes(storage.join(iter2, name)))
        final[name] = dst
    return final
