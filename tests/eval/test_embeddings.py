"""Pooled embeddings: valid-patch masks from the time extent, batch invariance, layers, both paths (in the
driver, and on an EmbedPool of Ray Data actors: its size and batch size change nothing but the speed)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sonar_ray.audio.features import frame_padding_mask, patch_padding_mask
from sonar_ray.config import parse_cli
from sonar_ray.data.manifest import PROBE_MANIFEST, read_manifest
from sonar_ray.data.pool import EmbedPool
from sonar_ray.eval.embeddings import (IN_DRIVER_MAX_CLIPS, ClipEmbedder, EmbeddingSpec, embed_clips, embed_waveforms,
                                       encode_frames)
from sonar_ray.models.beats import load_checkpoint


@pytest.fixture(scope="module")
def model(checkpoints):
    return load_checkpoint(checkpoints["base"])


def waves(seed: int = 0, lengths=(16000, 24000, 9000, 1000, 40000)) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.uniform(-0.5, 0.5, n).astype(np.float32) for n in lengths]


def test_valid_patches_follow_the_time_extent():
    # The fixtures' 2 s batch, clip 1 with its last 0.5 s padded: 24000 real samples -> 148 real
    # frames -> 9 full time blocks. Patches 72..95 are padded (the official mask says 75..95).
    mask = patch_padding_mask(frame_padding_mask(torch.tensor([32000, 24000]), 198))
    assert not mask[0].any()
    assert mask[1].tolist() == [False] * 72 + [True] * 24


def test_embedding_does_not_depend_on_the_batch(model):
    clips = waves()
    together = embed_waveforms(model, clips, batch_size=8)
    alone = np.stack([embed_waveforms(model, [c])[0] for c in clips])
    assert together.shape == (5, model.cfg.encoder_embed_dim) and together.dtype == np.float32
    np.testing.assert_allclose(together, alone, atol=1e-5)
    # Different clips get different embeddings (the pooling is not degenerate).
    assert np.abs(together[0] - together[1]).max() > 1e-2


def test_a_padded_clip_pools_only_its_own_patches(model):
    long, short = waves(lengths=(48000, 16000))
    features, padded = encode_frames(model, [long, short])
    assert padded.shape == features.shape[:2]
    assert padded[1].sum() == features.shape[1] - (1 + (16000 - 400) // 160) // 16 * 8
    # Zeroing the padded rows' content changes nothing in the pooled embedding.
    noisy_tail = np.concatenate([short, np.full(32000, 0.9, np.float32)])
    features2, _ = encode_frames(model, [long, noisy_tail])
    assert not torch.allclose(features[1, ~padded[1]], features2[1, ~padded[1]])  # content differs...
    np.testing.assert_allclose(embed_waveforms(model, [long, short])[1], embed_waveforms(model, [short])[0],
                               atol=1e-5)  # ...but the pooled embedding of the padded clip is its own


@pytest.mark.parametrize("layer", ["last", "average", "0", "-1"])
def test_layer_choice(model, layer):
    clips = waves(lengths=(16000, 20000))
    emb = embed_waveforms(model, clips, layer=layer)
    assert emb.shape == (2, model.cfg.encoder_embed_dim)
    if layer == "-1":
        np.testing.assert_array_equal(emb, embed_waveforms(model, clips, layer="last"))
    if layer in ("average", "0"):
        assert np.abs(emb - embed_waveforms(model, clips, layer="last")).max() > 1e-3


def test_unknown_layer_is_an_error(model):
    with pytest.raises(ValueError, match="layer"):
        embed_waveforms(model, waves(lengths=(16000,)), layer="middle")


def _probe_uris(corpus, n: int = 20) -> list[str]:
    df = read_manifest(str(corpus / PROBE_MANIFEST))
    return list(df["uri"][:n]) + [str(corpus / "audio" / "prior" / "broken.wav")]


def test_clip_embedder_reports_bad_files(probe_corpus, checkpoints):
    uris = _probe_uris(probe_corpus, 5)
    assert len(uris) <= IN_DRIVER_MAX_CLIPS  # embedded in this process, no Ray
    emb, errors = embed_clips(checkpoints["base"], uris, EmbeddingSpec(), EmbedPool(batch_size=2))
    assert emb.shape == (6, 64)
    assert errors == [""] * 5 + ["not_audio"]
    assert not emb[-1].any() and emb[:5].any(1).all()


def test_the_pool_gives_the_driver_numbers_whatever_its_size(probe_corpus, checkpoints, ray_local):
    uris = _probe_uris(probe_corpus, 20)
    uris = uris[-1:] + uris[:-1]  # the bad file first: row order is the input's
    spec = EmbeddingSpec()
    local = ClipEmbedder(checkpoints["base"], spec)({"uri": np.array(uris, dtype=object)})
    for pool in (EmbedPool(actors=1, batch_size=3), EmbedPool(actors=2, batch_size=16)):
        emb, errors = embed_clips(checkpoints["base"], uris, spec, pool)
        assert errors == ["not_audio"] + [""] * 20
        np.testing.assert_allclose(emb, local["embedding"], atol=1e-5)


def test_gpus_the_cluster_lacks_fail_at_once(probe_corpus, checkpoints, ray_local):
    assert ray_local.cluster_resources().get("GPU", 0) == 0
    with pytest.raises(ValueError, match="needs 1 GPUs; the Ray cluster has 0"):
        embed_clips(checkpoints["base"], _probe_uris(probe_corpus, 20), EmbeddingSpec(),
                    EmbedPool(actors=2, gpus_per_actor=0.5))


@pytest.mark.parametrize("flags, message", [
    (["--embed-pool-actors", "0"], "--embed-pool-actors must be >= 1"),
    (["--embed-pool-batch-size", "0"], "--embed-pool-batch-size must be >= 1"),
    (["--embed-pool-gpus-per-actor", "1.5"], "--embed-pool-gpus-per-actor must be"),
    (["--embed-pool-gpus-per-actor", "-1"], "--embed-pool-gpus-per-actor must be"),
])
def test_pool_settings_are_checked_when_the_flags_are_parsed(flags, message):
    from jobs.evaluate import EvaluateConfig
    from sonar_ray.train.config import TrainConfig

    for cls in (EvaluateConfig, TrainConfig):
        with pytest.raises(ValueError, match=message):
            parse_cli(cls, flags)
    assert parse_cli(TrainConfig, ["--embed-pool-actors", "3", "--embed-pool-gpus-per-actor", "0.25"]).embed_pool == \
        EmbedPool(actors=3, gpus_per_actor=0.25)


def test_clip_embedder_is_a_plain_callable(probe_corpus, checkpoints):
    embedder = ClipEmbedder(checkpoints["base"], EmbeddingSpec())
    uris = np.array(_probe_uris(probe_corpus, 3)[:3], dtype=object)
    out = embedder({"uri": uris, "row": np.arange(3)})
    assert out["row"].tolist() == [0, 1, 2] and out["embedding"].shape == (3, 64)
