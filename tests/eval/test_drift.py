"""Drift from the base model: linear CKA (its invariances), per-layer CKA on tiny BEATs models, and the
relative weight change (its value, and a grown head skipped)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from sonar_ray.eval.drift import cka_per_layer, layer_embeddings, linear_cka, relative_weight_change
from sonar_ray.models.beats import BEATs, BEATsConfig

SR = 16_000


@pytest.fixture(scope="module")
def base() -> BEATs:
    torch.manual_seed(0)
    return BEATs(BEATsConfig.preset("tiny", encoder_layers=3)).eval()


@pytest.fixture(scope="module")
def waves() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.uniform(-0.5, 0.5, int(SR * rng.uniform(1.0, 2.0))).astype(np.float32) for _ in range(20)]


def test_cka_is_one_for_the_same_features_up_to_rotation_and_scale():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 8))
    rotation, _ = np.linalg.qr(rng.normal(size=(8, 8)))
    assert linear_cka(x, x) == pytest.approx(1.0)
    assert linear_cka(x, 3.5 * x @ rotation) == pytest.approx(1.0)
    assert linear_cka(x, rng.normal(size=(50, 6))) < 0.5


def test_cka_needs_the_same_clips():
    with pytest.raises(ValueError, match="same clips"):
        linear_cka(np.zeros((5, 3)), np.zeros((4, 3)))


def test_layer_embeddings_pool_every_layer(base, waves):
    layers = layer_embeddings(base, waves, batch_size=8)
    assert len(layers) == 3 and all(e.shape == (20, base.cfg.encoder_embed_dim) for e in layers)
    # Batching changes nothing.
    np.testing.assert_allclose(layers[-1], layer_embeddings(base, waves, batch_size=20)[-1], atol=1e-5)


def test_a_model_has_not_drifted_from_itself(base, waves):
    cka = cka_per_layer(base, base, waves)
    assert len(cka) == 3
    np.testing.assert_allclose(cka, 1.0, atol=1e-6)


def test_perturbing_one_layer_moves_it_and_the_layers_after(base, waves):
    model = copy.deepcopy(base)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.encoder.layers[1].named_parameters():
            if "relative_attention_bias" not in name:  # shared with layer 0 (it owns the position bias)
                p.add_(torch.randn(p.shape, generator=g))
    cka = cka_per_layer(base, model, waves)
    assert cka[0] == pytest.approx(1.0, abs=1e-6)
    assert cka[1] < 0.99 and cka[2] < 0.99


def test_identical_states_have_not_moved(base):
    change = relative_weight_change(base.state_dict(), copy.deepcopy(base).state_dict())
    assert change["total"] == 0.0 and change["skipped"] == []
    assert set(change["per_module"].values()) == {0.0}
    assert {"encoder.layers.0", "encoder.layers.2", "patch_embedding", "encoder.pos_conv.0"} <= set(change["per_module"])


def test_a_known_perturbation_and_a_grown_head():
    torch.manual_seed(0)
    base = BEATs(BEATsConfig.preset("tiny", finetuned_model=True, predictor_class=5))
    torch.manual_seed(0)
    model = BEATs(BEATsConfig.preset("tiny", finetuned_model=True, predictor_class=9))  # same encoder, bigger head
    state0, state = base.state_dict(), model.state_dict()
    name = "encoder.layers.1.fc1.weight"
    delta = torch.full_like(state[name], 0.01)
    state[name] = state[name] + delta

    change = relative_weight_change(state0, state)

    assert change["skipped"] == ["predictor.weight", "predictor.bias"]
    layer1 = [v for k, v in state0.items() if k.startswith("encoder.layers.1.")]
    expected_layer = delta.norm().item() / torch.cat([v.flatten() for v in layer1]).norm().item()
    shared = [v for k, v in state0.items() if not k.startswith("predictor.")]
    expected_total = delta.norm().item() / torch.cat([v.flatten() for v in shared]).norm().item()
    assert change["per_module"]["encoder.layers.1"] == pytest.approx(expected_layer, rel=1e-5)
    assert change["total"] == pytest.approx(expected_total, rel=1e-5)
    assert change["per_module"]["encoder.layers.0"] == 0.0
    assert "predictor" not in change["per_module"]
