"""The HEAR API: attributes, shapes and timestamps on clips of different lengths."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sonar_ray.eval.hear import DEFAULT_HOP_MS, HearModel, get_scene_embeddings, get_timestamp_embeddings, load_model


@pytest.fixture(scope="module")
def model(checkpoints):
    return load_model(checkpoints["base"])


def test_model_attributes(model):
    assert model.sample_rate == 16000
    assert model.scene_embedding_size == model.timestamp_embedding_size == 64


@pytest.mark.parametrize("seconds", [0.1, 1.0, 2.5])
@pytest.mark.parametrize("hop_ms", [DEFAULT_HOP_MS, 160])
def test_shapes_and_timestamps(model, seconds, hop_ms):
    model = HearModel(model.beats, hop_ms=hop_ms)
    n = int(16000 * seconds)
    audio = torch.from_numpy(np.random.default_rng(0).uniform(-0.5, 0.5, (3, n)).astype(np.float32))
    scene = get_scene_embeddings(audio, model)
    assert scene.shape == (3, 64) and scene.dtype == torch.float32

    emb, ts = get_timestamp_embeddings(audio, model)
    assert emb.shape[:2] == ts.shape and emb.shape[0] == 3 and emb.shape[2] == 64
    assert emb.dtype == torch.float32 and torch.isfinite(emb).all()
    # One timestamp every hop_ms, each centred on its block's frames, the same for every sound.
    expected = 87.5 + hop_ms * torch.arange(ts.shape[1])
    torch.testing.assert_close(ts, expected.expand(3, -1).float())
    # The blocks cover the whole clip, and none starts after its end (a block spans 175 ms: 16 frames).
    block_start = ts[0] - 87.5
    assert block_start[-1] + 175 >= 1000 * seconds and (block_start < 1000 * seconds).all()


def test_default_hop_meets_hear_and_fine_timestamps_are_real_blocks(checkpoints):
    assert DEFAULT_HOP_MS <= 50  # HEAR's bound for event and transcription tasks
    fine, coarse = load_model(checkpoints["base"]), load_model(checkpoints["base"], hop_ms=160)
    audio = torch.from_numpy(np.random.default_rng(3).uniform(-0.5, 0.5, (2, 24000)).astype(np.float32))
    emb_fine, ts_fine = get_timestamp_embeddings(audio, fine)
    emb_coarse, ts_coarse = get_timestamp_embeddings(audio, coarse)
    assert ts_fine.shape[1] == -(-1500 // DEFAULT_HOP_MS)  # 1.5 s: one block starting every hop inside it
    # Every 160/hop-th fine timestamp is a coarse one; those in between are blocks of their own.
    step = 160 // DEFAULT_HOP_MS
    torch.testing.assert_close(ts_fine[:, ::step], ts_coarse)
    torch.testing.assert_close(emb_fine[:, ::step], emb_coarse, atol=1e-5, rtol=0)
    assert not torch.allclose(emb_fine[:, 1], emb_fine[:, 0], atol=1e-3)
    # Advancing the audio by one hop puts the next fine block first.
    advanced, _ = get_timestamp_embeddings(audio[:, 640:], coarse)
    torch.testing.assert_close(emb_fine[:, 1], advanced[:, 0], atol=1e-5, rtol=0)


@pytest.mark.parametrize("hop_ms", [0, 15, 50, 320])
def test_rejects_a_hop_off_the_frame_grid(checkpoints, hop_ms):
    with pytest.raises(ValueError, match="hop_ms"):
        load_model(checkpoints["base"], hop_ms=hop_ms)


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
