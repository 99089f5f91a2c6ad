"""The demo base model shipped in sonar_ray/demo/base: it loads with the official formats, it is used only
for the corpus version and recipe on its card, and it is healthy on prior clips it never saw."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from sonar_ray.audio.features import clip_features
from sonar_ray.demo import CORPUS_VERSION
from sonar_ray.demo.domains import synthesize
from sonar_ray.models import beats
from sonar_ray.models import tokenizer as official_tokenizer
from sonar_ray.objectives.health import label_health, masked_prediction_health
from sonar_ray.objectives.masked_prediction import MaskedTokenModel
from sonar_ray.demo import inputs
from sonar_ray.train import artifacts
from sonar_ray.audio.features import normalize_fbank
from sonar_ray.train.pretrain import PretrainConfig

CARD = inputs.SHIPPED_BASE / "recipe.json"
pytestmark = pytest.mark.skipif(not CARD.exists(), reason="no shipped demo base model")

# The demo targets (issue "healthy self-supervised pre-training"), stricter than jobs/pretrain.py's gates.
TARGETS = {"iter1_info_gain": 1.0, "tokenizer_perplexity": 32.0, "live_codes": 0.6, "iter2_accuracy": (0.25, 0.75),
           "probe_margin": 0.10}


@pytest.fixture(scope="module")
def card() -> dict:
    return json.loads(CARD.read_text())


def fresh_prior_clips(n: int = 48, seconds: float = 1.6) -> tuple[torch.Tensor, torch.Tensor]:
    """Prior-domain clips from the demo generator with seeds the corpus never uses."""
    waves = []
    for i in range(n):
        rng = np.random.default_rng([12345, i])
        waves.append(synthesize("prior", rng, 16000, seconds, {}))
    waves = np.stack(waves)
    fbank, pad = clip_features(waves, np.full(n, waves.shape[1]))
    return normalize_fbank(fbank), pad


def test_shipped_base_is_used_only_for_its_corpus_version_and_recipe(card, monkeypatch):
    assert card["corpus_version"] == CORPUS_VERSION, "the shipped base was made from another corpus version"
    assert inputs.shipped_base_model() == str(inputs.SHIPPED_BASE / artifacts.MODEL)
    assert inputs.demo_base_model("/any/corpus") == str(inputs.SHIPPED_BASE / artifacts.MODEL)  # no training
    assert inputs.shipped_base_model(replace(PretrainConfig(), iter1_steps=7)) is None
    assert inputs.shipped_base_model(replace(PretrainConfig(), wandb=False, gates=False)) is not None
    monkeypatch.setattr("sonar_ray.demo.CORPUS_VERSION", CORPUS_VERSION + 1)
    assert inputs.shipped_base_model() is None


def test_shipped_base_card_records_a_healthy_pretraining(card):
    h = card["health"]
    assert h["iter1"]["prior"]["info_gain"] >= TARGETS["iter1_info_gain"]
    assert h["tokenizer"]["prior"]["label_perplexity"] >= TARGETS["tokenizer_perplexity"]
    assert h["tokenizer"]["prior"]["live_code_share"] >= TARGETS["live_codes"]
    low, high = TARGETS["iter2_accuracy"]
    assert low <= h["iter2"]["prior"]["masked_accuracy"] <= high
    for task, score in card["probes"]["base"].items():
        assert score >= card["probes"]["random_init"][task] + TARGETS["probe_margin"], task


def test_shipped_base_loads_officially_and_is_healthy_on_unseen_prior_clips():
    model = beats.load_checkpoint(str(inputs.SHIPPED_BASE / artifacts.MODEL))  # strict official format
    tok = official_tokenizer.load_checkpoint(str(inputs.SHIPPED_BASE / artifacts.TOKENIZER))
    predictor = artifacts.load_predictor(str(inputs.SHIPPED_BASE / artifacts.PREDICTOR))
    assert predictor.num_codes == tok.cfg.quant_n
    fbank, pad = fresh_prior_clips()
    with torch.no_grad():
        labels = tok.eval().labels_from_fbank(fbank, pad)
    codes = label_health(labels.flatten(), tok.cfg.quant_n)
    assert codes["label_perplexity"] >= TARGETS["tokenizer_perplexity"], codes
    assert codes["live_code_share"] >= TARGETS["live_codes"], codes
    h = masked_prediction_health(MaskedTokenModel(model, predictor), tok, fbank, pad)
    low, high = TARGETS["iter2_accuracy"]
    assert low <= h["masked_accuracy"] <= high, h
    assert h["info_gain"] >= PretrainConfig().min_info_gain, h
