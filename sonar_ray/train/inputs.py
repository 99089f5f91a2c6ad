"""Where a run's inputs come from: the user's URIs, or the bundled demo (built on first use).

The demo lives under $SONAR_HOME (default ~/.cache/sonar-ray), so a local run and a job submitted
to a local cluster share one corpus and one base model.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import replace
from pathlib import Path

from sonar_ray import storage
from sonar_ray.data import DataConfig
from sonar_ray.data.manifest import TRAIN_MANIFEST
from sonar_ray.train import artifacts
from sonar_ray.train.config import TrainConfig


def sonar_home() -> Path:
    return Path(os.environ.get("SONAR_HOME", Path.home() / ".cache" / "sonar-ray"))


def demo_corpus(scale: str = "demo") -> str:
    """The demo corpus root, generated once per generator version."""
    from sonar_ray.demo import CORPUS_VERSION, generate_corpus

    root = sonar_home() / f"corpus-{scale}-v{CORPUS_VERSION}"
    if not (root / TRAIN_MANIFEST).exists():
        print(f"building the demo corpus ({scale} scale) in {root} (once)", flush=True)
        generate_corpus(str(root), scale=scale)
    return str(root)


def demo_base_recipe(corpus: str, recipe=None):
    """The PretrainConfig of a demo base model on `corpus` (default recipe: PretrainConfig's defaults)."""
    from sonar_ray.train.pretrain import PretrainConfig

    return replace(recipe or PretrainConfig(), data=corpus, output=None, resume=True)


# PretrainConfig fields that do not change the model a recipe makes.
NOT_RECIPE = ("data", "output", "resume", "wandb", "ray_address", "gates")


def recipe_key(recipe) -> dict:
    """What makes a base model: the recipe without where it reads / writes and how it logs."""
    from sonar_ray.config import to_dict

    return {k: v for k, v in to_dict(recipe).items() if k not in NOT_RECIPE}


def demo_base_dir(corpus: str, recipe=None, name: str = "base") -> Path:
    """Named after the corpus and the recipe: changing either trains a new base model."""
    spec = json.dumps({"corpus": corpus, **recipe_key(demo_base_recipe(corpus, recipe))}, sort_keys=True)
    return sonar_home() / f"{name}-{hashlib.sha256(spec.encode()).hexdigest()[:10]}"


# The demo base model, pre-trained once with jobs/pretrain.py and shipped (model.pt, tokenizer.pt,
# predictor.pt and recipe.json: corpus version, recipe, command, health, wall time).
SHIPPED_BASE = Path(__file__).resolve().parents[1] / "demo" / "base"


def shipped_base_model(recipe=None) -> str | None:
    """The shipped model.pt when it was made from this corpus version with this recipe, else None."""
    from sonar_ray.demo import CORPUS_VERSION

    card = SHIPPED_BASE / "recipe.json"
    if not card.exists():
        return None
    made = json.loads(card.read_text())
    if made["corpus_version"] != CORPUS_VERSION or made["recipe"] != recipe_key(demo_base_recipe("", recipe)):
        return None
    return str(SHIPPED_BASE / artifacts.MODEL)


def demo_base_model(corpus: str, recipe=None, name: str = "base") -> str:
    """model.pt of a base model pre-trained on `corpus` with `recipe`: the shipped one when it matches,
    else trained once under $SONAR_HOME."""
    from sonar_ray.train.pretrain import pretrain

    shipped = shipped_base_model(recipe)
    if shipped is not None:
        return shipped
    out = demo_base_dir(corpus, recipe, name)
    if not (out / artifacts.MODEL).exists():
        print(f"pre-training the demo base model in {out} (once)", flush=True)
        pretrain(replace(demo_base_recipe(corpus, recipe), output=str(out)))
    return str(out / artifacts.MODEL)


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
    given = {name: getattr(cfg, name) for name in INPUTS}
    if not uses_demo(cfg):
        require_inputs(cfg)
    elif any(uri is None for name, uri in given.items() if name != "base" or cfg.method != "scratch"):
        corpus = demo_corpus()
        demo = {"data": storage.join(corpus, TRAIN_MANIFEST), "prior": storage.join(corpus, TRAIN_MANIFEST),
                "probes": corpus}
        given = {name: demo.get(name) if uri is None else uri for name, uri in given.items()}
        if given["base"] is None and cfg.method != "scratch":
            given["base"] = demo_base_model(corpus)
    output = cfg.output or str(Path("outputs") / f"{cfg.method}-{cfg.domain}")
    if not storage.is_remote(output):
        output = str(Path(output).resolve())
    cfg = replace(cfg, **given, output=output)
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
        seed=cfg.seed)
