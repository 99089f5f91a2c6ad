"""The demo's inputs: the demo corpus and a demo base model, built on first use. Only demo runs (the bare
demo command, `--demo`, the sweep's and the tests' smoke runs) come here; the training layer never does.

They live under $SONAR_HOME (default ~/.cache/sonar-ray), so a local run and a job submitted to a local
cluster share one corpus and one base model.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import replace
from pathlib import Path

from sonar_ray import demo, storage
from sonar_ray.data.manifest import TRAIN_MANIFEST
from sonar_ray.demo.corpus import built_domains
from sonar_ray.train import artifacts
from sonar_ray.train.config import TrainConfig
from sonar_ray.train.pretrain import PretrainConfig, pretrain, recipe_key


def sonar_home() -> Path:
    return Path(os.environ.get("SONAR_HOME", Path.home() / ".cache" / "sonar-ray"))


def demo_corpus(scale: str = "demo", domains: list[str] | None = None) -> str:
    """The demo corpus root, generated once per generator version: the given domains (default: all) are
    built when missing, so a demo run waits only for the domains it uses."""
    root = sonar_home() / f"corpus-{scale}-v{demo.CORPUS_VERSION}"
    missing = [d for d in demo.DOMAINS if d in (domains or demo.DOMAINS) and d not in built_domains(str(root))]
    if missing:
        print(f"building the demo corpus ({scale} scale, {', '.join(missing)}) in {root} (once)", flush=True)
        demo.generate_corpus(str(root), scale=scale, domains=missing)
    return str(root)


def demo_base_recipe(corpus: str, recipe: PretrainConfig | None = None) -> PretrainConfig:
    """The PretrainConfig of a demo base model on `corpus` (default recipe: PretrainConfig's defaults)."""
    return replace(recipe or PretrainConfig(), data=corpus, output=None, resume=True)


def demo_base_dir(corpus: str, recipe: PretrainConfig | None = None, name: str = "base") -> Path:
    """Named after the corpus and the recipe: changing either trains a new base model."""
    spec = json.dumps({"corpus": corpus, **recipe_key(demo_base_recipe(corpus, recipe))}, sort_keys=True)
    return sonar_home() / f"{name}-{hashlib.sha256(spec.encode()).hexdigest()[:10]}"


# The demo base model, pre-trained once with jobs/pretrain.py and shipped (model.pt, tokenizer.pt,
# predictor.pt and recipe.json: corpus version, recipe, command, health, wall time).
SHIPPED_BASE = Path(__file__).resolve().parent / "base"


def shipped_base_model(recipe: PretrainConfig | None = None) -> str | None:
    """The shipped model.pt when it was made from this corpus version with this recipe, else None."""
    card = SHIPPED_BASE / "recipe.json"
    if not card.exists():
        return None
    made = json.loads(card.read_text())
    if made["corpus_version"] != demo.CORPUS_VERSION or made["recipe"] != recipe_key(demo_base_recipe("", recipe)):
        return None
    return str(SHIPPED_BASE / artifacts.MODEL)


def demo_base_model(corpus: str, recipe: PretrainConfig | None = None, name: str = "base") -> str:
    """model.pt of a base model pre-trained on `corpus` with `recipe`: the shipped one when it matches,
    else trained once under $SONAR_HOME."""
    shipped = shipped_base_model(recipe)
    if shipped is not None:
        return shipped
    out = demo_base_dir(corpus, recipe, name)
    if not (out / artifacts.MODEL).exists():
        print(f"pre-training the demo base model in {out} (once)", flush=True)
        pretrain(replace(demo_base_recipe(corpus, recipe), output=str(out)))
    return str(out / artifacts.MODEL)


def fill_demo_inputs(cfg: TrainConfig) -> TrainConfig:
    """A demo run: every input not given comes from the demo corpus and the demo base model."""
    needed = ["data", "prior", "probes"] + (["base"] if cfg.method != "scratch" else [])
    if all(getattr(cfg, name) is not None for name in needed):
        return cfg
    corpus = demo_corpus(domains=["prior", cfg.domain])  # a domain the demo lacks fails on its empty source
    manifest = storage.join(corpus, TRAIN_MANIFEST)
    return replace(cfg, data=cfg.data or manifest, prior=cfg.prior or manifest, probes=cfg.probes or corpus,
                   base=cfg.base or (demo_base_model(corpus) if cfg.method != "scratch" else None))
