"""Where a run's inputs come from: the user's URIs, or, for a demo run only, the demo corpus and
demo base model (`sonar_ray.demo.inputs`, built on first use)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from sonar_ray import storage
from sonar_ray.data import DataConfig
from sonar_ray.train import artifacts
from sonar_ray.train.config import TrainConfig


INPUTS = ("data", "prior", "probes", "base")  # what --demo fills in


def uses_demo(cfg: TrainConfig) -> bool:
    """--demo, or the bare demo command: none of the inputs given."""
    return cfg.demo or all(getattr(cfg, name) is None for name in INPUTS)


def require_inputs(cfg: TrainConfig) -> None:
    """A run given its own data names every input it needs: demo data never fills a gap silently.
    Called before any work (no Ray, no inspection, no corpus built)."""
    needed = {"data": (True, "the new-domain audio"),
              "prior": (cfg.replay_ratio > 0, "the prior (replay) audio; --replay-ratio 0 trains without replay"),
              "probes": (cfg.evaluate, "the corpus with manifests/probes.jsonl; --no-evaluate skips evaluation"),
              "base": (cfg.method != "scratch", "the starting checkpoint; --method scratch starts from random weights")}
    for name, (need, what) in needed.items():
        if need and getattr(cfg, name) is None:
            raise ValueError(f"--{name} is missing: {what} (--demo fills missing inputs with the demo corpus)")


def resolve(cfg: TrainConfig) -> tuple[TrainConfig, dict]:
    """Fill the inputs (demo corpus and base model only for a demo run) and the output folder;
    returns (cfg, paths)."""
    if uses_demo(cfg):
        from sonar_ray.demo.inputs import fill_demo_inputs  # demo runs only: training never needs the demo package

        cfg = fill_demo_inputs(replace(cfg, demo=True))  # recorded: this run used demo inputs
    else:
        require_inputs(cfg)
    output = cfg.output or str(Path("outputs") / f"{cfg.method}-{cfg.domain}")
    if not storage.is_remote(output):
        output = str(Path(output).resolve())
    cfg = replace(cfg, output=output)
    base = cfg.base
    paths = {"base": base}
    if base is not None:
        folder = base.rsplit("/", 1)[0] if storage.is_remote(base) else str(Path(base).parent)
        tok = cfg.base_tokenizer or storage.join(folder, artifacts.TOKENIZER)
        pred = storage.join(folder, artifacts.PREDICTOR)
        if cfg.base_tokenizer or storage.exists(tok):
            paths["tokenizer"] = tok
        if storage.exists(pred):
            paths["predictor"] = pred
    elif cfg.base_tokenizer:
        paths["tokenizer"] = cfg.base_tokenizer
    if cfg.method == "sonar" and cfg.lambda_tok > 0 and "predictor" not in paths:
        # An official checkpoint ships no label predictor, so there is no teacher code distribution to
        # distil; recorded as 0 so summary.json says what ran.
        print(f"[adapt] no predictor.pt beside {base}: tokenizer-level distillation is off (--lambda-tok 0)",
              flush=True)
        cfg = replace(cfg, lambda_tok=0.0)
    return cfg, paths


def data_config(cfg: TrainConfig, new_domain: str | None = None) -> DataConfig:
    """The joint stream for a run: num_workers x max_steps batches of `batch_size` clips each."""
    policy = cfg.replay_policy if cfg.replay_ratio > 0 else "uniform"  # no replay: no strata needed
    return DataConfig(
        new_uri=cfg.data, new_domain=new_domain if new_domain is not None else (cfg.domain or None),
        prior_uri=cfg.prior or "", prior_domain="prior", replay_ratio=cfg.replay_ratio,
        batch_size=cfg.batch_size, num_batches=cfg.max_steps * cfg.num_workers, clip_seconds=cfg.clip_seconds,
        policy=policy, num_strata=cfg.num_strata, max_oversample=cfg.replay_max_oversample, model_uri=cfg.base if policy == "relevance" else None,
        embed_pool=cfg.embed_pool, seed=cfg.seed)
