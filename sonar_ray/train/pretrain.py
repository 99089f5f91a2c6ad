"""Pre-training a base model the BEATs way, in three resumable stages:

1. iteration 1: masked-token prediction of a frozen random-projection tokenizer's labels;
2. a tokenizer trained to predict the iteration-1 model's features;
3. iteration 2: masked-token prediction of that tokenizer's labels.

Deviation from BEATs, for cost: iteration 2 continues from the iteration-1 encoder instead of
restarting from random weights. `--init CKPT` starts iteration 1 from an existing (e.g. official) model.

Each stage is scored on held-out clips of the data (`sonar_ray.train.health`) and must pass its health
gate before the next stage starts, so a base model whose pre-training did not learn is never shipped.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace

from sonar_ray import storage
from sonar_ray.config import to_dict
from sonar_ray.data import PreparedData, prepare_data, write_bad_input_report
from sonar_ray.objectives.random_projection import RandomProjectionConfig, RandomProjectionTokenizer, median_patch_level
from sonar_ray.train import artifacts
from sonar_ray.train.health import split_holdout
from sonar_ray.train.config import TrainConfig
from sonar_ray.train.driver import fit
from sonar_ray.train.inputs import data_config
from sonar_ray.train.tokenizer_loop import TokenizerTrainConfig, fit_tokenizer


HEALTH = "health.json"  # a stage's held-out health, beside its model: re-gated when the stage is reused


class HealthGateError(ValueError):
    """A pre-training stage did not learn; the message is one line naming the metric and its value."""


@dataclass
class PretrainConfig:
    """Pre-train a BEATs base model on prior (general) audio."""

    data: str | None = field(default=None, metadata={"help": "prior audio: corpus root, manifest or folder (default: demo corpus)"})
    domain: str = field(default="prior", metadata={"help": "domain of the rows to train on ('' = all rows)"})
    output: str = field(default="outputs/base", metadata={"help": "output folder/URI"})
    init: str | None = field(default=None, metadata={"help": "start iteration 1 from this BEATs checkpoint"})
    preset: str = field(default="small", metadata={"help": "BEATs preset"})
    iter1_steps: int = field(default=400, metadata={"help": "iteration-1 steps"})
    iter1_codes: int = field(default=1024, metadata={"help": "codes of the iteration-1 random-projection tokenizer"})
    tokenizer_steps: int = field(default=150, metadata={"help": "tokenizer training steps"})
    iter2_steps: int = field(default=400, metadata={"help": "iteration-2 steps"})
    tokenizer_codes: int = field(default=64, metadata={"help": "codes of the trained tokenizer"})
    batch_size: int = field(default=16, metadata={"help": "clips per worker per step"})
    clip_seconds: float = field(default=1.6, metadata={"help": "crop length"})
    lr: float = field(default=1e-3, metadata={"help": "peak learning rate (iteration 2: half of it)"})
    num_workers: int = field(default=2, metadata={"help": "Ray Train workers"})
    use_gpu: bool = field(default=False, metadata={"help": "one GPU per worker"})
    seed: int = field(default=0, metadata={"help": "seed"})
    resume: bool = field(default=False, metadata={"help": "continue an interrupted pre-training"})
    wandb: bool = field(default=True, metadata={"help": "log to wandb (offline by default)"})
    ray_address: str | None = field(default=None, metadata={"help": "Ray cluster address"})
    gates: bool = field(default=True, metadata={"help": "stop at the first stage that fails its health gate "
                                                        "(--no-gates: an expert's override, ships it anyway)"})
    min_info_gain: float = field(default=0.5, metadata={"help": "gate, iterations 1 and 2: held-out masked-prediction "
                                                                "information gain over the label marginal, nats"})
    min_tokenizer_perplexity: float = field(default=16.0, metadata={"help": "gate, trained tokenizer: held-out label perplexity"})
    min_live_codes: float = field(default=0.3, metadata={"help": "gate, trained tokenizer: share of codes used on held-out clips"})
    iter2_accuracy: list[float] = field(default_factory=lambda: [0.2, 0.8], metadata={
        "help": "gate, iteration 2: held-out masked accuracy must lie in [LOW, HIGH] (above: trivial labels)"})

    def __post_init__(self):
        if len(self.iter2_accuracy) != 2 or not 0.0 <= self.iter2_accuracy[0] < self.iter2_accuracy[1] <= 1.0:
            raise ValueError(f"iter2_accuracy must be two numbers 0 <= LOW < HIGH <= 1, got {self.iter2_accuracy}")
        for name in ("iter1_steps", "iter1_codes", "tokenizer_steps", "iter2_steps", "tokenizer_codes", "batch_size",
                     "num_workers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


# PretrainConfig fields that do not change the model a recipe makes.
NOT_RECIPE = ("data", "output", "resume", "wandb", "ray_address", "gates")


def recipe_key(recipe: PretrainConfig) -> dict:
    """What makes a base model: the recipe without where it reads / writes and how it logs."""
    return {k: v for k, v in to_dict(recipe).items() if k not in NOT_RECIPE}


MIN_GATE_CLIPS = 8  # fewer held-out clips cannot tell a healthy stage from a collapsed one


def gate_failures(cfg: PretrainConfig, stage: str, health: dict) -> list[str]:
    """What a stage's held-out health (per source) fails of the thresholds; [] when it passes."""
    fails = []
    for src, h in health.items():
        if stage in ("iter1", "iter2") and h["info_gain"] < cfg.min_info_gain:
            fails.append(f"information gain {h['info_gain']:.3f} nats < {cfg.min_info_gain} ({src})")
        if stage == "iter2" and not cfg.iter2_accuracy[0] <= h["masked_accuracy"] <= cfg.iter2_accuracy[1]:
            fails.append(f"masked accuracy {h['masked_accuracy']:.3f} outside {cfg.iter2_accuracy} ({src})")
        if stage == "tokenizer":
            if h["label_perplexity"] < cfg.min_tokenizer_perplexity:
                fails.append(f"label perplexity {h['label_perplexity']:.1f} < {cfg.min_tokenizer_perplexity} ({src})")
            if h["live_code_share"] < cfg.min_live_codes:
                fails.append(f"live-code share {h['live_code_share']:.2f} < {cfg.min_live_codes} ({src})")
    if not health:
        fails.append("no held-out clips to measure it on")
    return fails


def _gate(cfg: PretrainConfig, stage: str, health: dict) -> None:
    fails = gate_failures(cfg, stage, health)
    if fails and cfg.gates:
        raise HealthGateError(f"pre-training stage {stage} failed its health gate: {'; '.join(fails)} "
                              "(see --help for the thresholds; --no-gates ships it anyway)")
    if fails:
        print(f"[pretrain] {stage}: health gate failed, continuing (--no-gates): {'; '.join(fails)}", flush=True)


def _stage(cfg: PretrainConfig, name: str, steps: int, paths: dict) -> dict:
    """Train one masked-prediction stage (or reuse it when done); returns its held-out health, gated."""
    out = storage.join(cfg.output, name)
    health_uri = storage.join(out, HEALTH)
    if storage.exists(storage.join(out, artifacts.MODEL)) and storage.exists(health_uri):
        print(f"[pretrain] {name}: done already ({out})", flush=True)
        health = json.loads(storage.read_bytes(health_uri))
    else:
        train = TrainConfig(domain=cfg.domain, method="scratch", data=cfg.data, prior=cfg.data, base=paths.get("base"),
                            output=out, replay_ratio=0.0, preset=cfg.preset, max_steps=steps, batch_size=cfg.batch_size,
                            clip_seconds=cfg.clip_seconds, lr=cfg.lr, warmup_steps=max(1, steps // 10),
                            num_workers=cfg.num_workers, use_gpu=cfg.use_gpu, seed=cfg.seed, resume=True,
                            checkpoint_every=max(1, steps // 2), wandb=cfg.wandb, evaluate=False,
                            ray_address=cfg.ray_address)
        print(f"[pretrain] {name}: {steps} steps -> {out}", flush=True)
        health = fit(train, paths, data_config(train, new_domain=cfg.domain or None)).health["after"]
        storage.write_bytes_atomic(health_uri, json.dumps(health).encode())
    _gate(cfg, name, health)  # a failed stage stays failed when reused
    return health


def iteration1_tokenizer(cfg: PretrainConfig, data_cfg, prepared: PreparedData, uri: str) -> str:
    """The frozen random-projection tokenizer of iteration 1, centred on the data's median patch level
    (measured on held-out clips; see `sonar_ray.objectives.random_projection` for why)."""
    if storage.exists(uri):
        return uri
    _, holdout = split_holdout(prepared, data_cfg.clip_seconds, retries=data_cfg.read_retries)
    if not holdout.clips:
        raise ValueError(f"{cfg.data}: too few usable clips to pre-train on (need at least 2)")
    fbank, pad = holdout.clips["prior"]
    if cfg.gates and len(fbank) < MIN_GATE_CLIPS:  # measured: 1 held-out clip gave -3.6 nats after a healthy fit
        raise HealthGateError(f"{cfg.data}: only {len(fbank)} held-out clip(s) to judge the health gates on "
                              f"(need {MIN_GATE_CLIPS}, i.e. about {8 * MIN_GATE_CLIPS} usable clips); "
                              "give more data, or --no-gates to train without them")
    rp = RandomProjectionTokenizer(RandomProjectionConfig(num_codes=cfg.iter1_codes, seed=cfg.seed,
                                                          level=round(median_patch_level(fbank, pad), 4)))
    rp.save(uri)
    return uri


@dataclass
class PretrainResult:
    """A pre-trained base model: its files (iteration 2's, copied to the output root) and what
    `<output>/summary.json` records (the recipe, each stage's held-out health, the wall time)."""

    output: str
    model: str       # model.pt (official BEATs format)
    tokenizer: str   # tokenizer.pt
    predictor: str   # predictor.pt
    recipe: dict     # recipe_key(cfg): what makes this base model
    health: dict     # {stage: {source: held-out health}}
    wall_seconds: float

    def summary(self) -> dict:
        return {"recipe": self.recipe, "health": self.health, "wall_seconds": self.wall_seconds}


def pretrain(cfg: PretrainConfig) -> PretrainResult:
    """Runs the stages not yet done; writes `<output>/summary.json` and, before any training,
    `<output>/bad_inputs.json` (the files skipped and why)."""
    from sonar_ray.cluster import init_ray

    t0 = time.time()
    if cfg.data is None:  # only the bare demo command (jobs/pretrain.py) fills it, with the demo corpus
        raise ValueError("--data is missing: the prior (general) audio to pre-train on")
    init_ray(cfg.ray_address)
    train = TrainConfig(domain=cfg.domain, method="scratch", data=cfg.data, prior=cfg.data, replay_ratio=0.0,
                        batch_size=cfg.batch_size, clip_seconds=cfg.clip_seconds, max_steps=cfg.tokenizer_steps,
                        num_workers=1, seed=cfg.seed, replay_policy="uniform")
    data_cfg = data_config(train, new_domain=cfg.domain or None)
    prepared = prepare_data(data_cfg)  # inspection is cached: the stages reuse it
    write_bad_input_report(cfg.output, prepared.bad)
    iter1 = storage.join(cfg.output, "iter1")
    labels = iteration1_tokenizer(cfg, data_cfg, prepared, storage.join(cfg.output, "iter1-tokenizer.pt"))
    health = {"iter1": _stage(cfg, "iter1", cfg.iter1_steps, {"base": cfg.init, "tokenizer": labels})}

    tok_cfg = TokenizerTrainConfig(steps=cfg.tokenizer_steps, quant_n=cfg.tokenizer_codes, seed=cfg.seed)
    print(f"[pretrain] tokenizer: {cfg.tokenizer_steps} steps", flush=True)
    tokenizer, tok_health = fit_tokenizer(storage.join(iter1, artifacts.MODEL), data_cfg,
                                          storage.join(cfg.output, "tokenizer"), tok_cfg, use_gpu=cfg.use_gpu)
    _gate(cfg, "tokenizer", tok_health)
    health["tokenizer"] = tok_health

    health["iter2"] = _stage(replace(cfg, lr=cfg.lr / 2), "iter2", cfg.iter2_steps,
                             {"base": storage.join(iter1, artifacts.MODEL), "tokenizer": tokenizer})
    iter2 = storage.join(cfg.output, "iter2")
    # The base model: iteration 2's encoder, tokenizer and predictor side by side.
    final = {}
    for name in (artifacts.MODEL, artifacts.TOKENIZER, artifacts.PREDICTOR):
        dst = storage.join(cfg.output, name)
        storage.write_bytes_atomic(dst, storage.read_bytes(storage.join(iter2, name)))
        final[name] = dst
    result = PretrainResult(output=cfg.output, model=final[artifacts.MODEL], tokenizer=final[artifacts.TOKENIZER],
                            predictor=final[artifacts.PREDICTOR], recipe=recipe_key(cfg), health=health,
                            wall_seconds=round(time.time() - t0, 1))
    storage.write_bytes_atomic(storage.join(cfg.output, "summary.json"), json.dumps(result.summary(), indent=2).encode())
    return result
