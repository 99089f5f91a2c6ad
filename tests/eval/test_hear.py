"""The HEAR API: attributes, shapes and timestamps on clips of different lengths."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sonar_ray.eval.hear import get_scene_embeddings, get_timestamp_embeddings, load_model


@pytest.fixture(scope="module")
def model(checkpoints):
    return load_model(checkpoints["base"])


def test_model_attributes(model):
    assert model.sample_rate == 16000
    assert model.scene_embedding_size == model.timestamp_embedding_size == 64


@pytest.mark.parametrize("seconds", [0.1, 1.0, 2.5])
def test_shapes_and_timestamps(model, seconds):
    n = int(16000 * seconds)
    audio = torch.from_numpy(np.random.default_rng(0).uniform(-0.5, 0.5, (3, n)).astype(np.float32))
    scene = get_scene_embeddings(audio, model)
    assert scene.shape == (3, 64) and scene.dtype == torch.float32

    emb, ts = get_timestamp_embeddings(audio, model)
    assert emb.shape[:2] == ts.shape and emb.shape[0] == 3 and emb.shape[2] == 64
    assert emb.dtype == torch.float32 and torch.isfinite(emb).all()
    # One timestamp per 160 ms block, centred on its frames, the same for every sound.
    expected = 87.5 + 160.0 * torch.arange(ts.shape[1])
    torch.testing.assert_close(ts, expected.expand(3, -1).float())
    # The blocks cover the whole clip and not a block more.
    covered_ms = ts[0, -1] + 80 + 12.5  # last block's last frame ends 80 + 12.5 ms after its centre
    assert covered_ms >= 1000 * seconds and ts[0, -1] - 80 - 12.5 < 1000 * seconds


def test_timestamps_scale_with_length(model):
    rng = np.random.default_rng(1)
    counts = [get_timestamp_embeddings(torch.from_numpy(rng.uniform(-0.5, 0.5, (1, n)).astype(np.float32)),
                                       model)[0].shape[1] for n in (8000, 16000, 32000)]
    assert counts[0] < counts[1] < counts[2]


def test_scene_embedding_is_batch_independent(model):
    audio = torch.from_numpy(np.random.default_rng(2).uniform(-0.5, 0.5, (4, 20000)).astype(np.float32))
    together = get_scene_embeddings(audio, model)
    alone = torch.cat([get_scene_embeddings(audio[i:i + 1], model) for i in range(4)])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=0)


def test_rejects_wrong_rank(model):
    with pytest.raises(ValueError, match="n_sounds"):
        get_scene_embeddings(torch.zeros(16000), model)
