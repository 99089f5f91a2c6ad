"""The HEAR 2021 embedding API, so sonar-ray checkpoints plug into existing audio benchmarks.

    model = load_model("model.pt")
    scene = get_scene_embeddings(audio, model)                  # (n_sounds, model.scene_embedding_size)
    emb, ts = get_timestamp_embeddings(audio, model)            # (n_sounds, n_times, D), (n_sounds, n_times) ms

`audio` is a float tensor (n_sounds, n_samples) at `model.sample_rate` (16 kHz), values in [-1, 1],
all sounds of one length (HEAR pads them). One timestamp per time block of patches (16 fbank frames,
160 ms hop): its embedding is the mean of the block's frequency patches, its timestamp the centre of
the block's frames in ms (frame k is centred at 10 k + 12.5 ms). The audio is zero-padded at the end
up to whole blocks so the timestamps cover every sample. The scene embedding is the same pooled
embedding the linear probes use (mean over the clip's full time blocks, `sonar_ray.eval.embeddings`).
"""

from __future__ import annotations

import torch

from sonar_ray.eval.embeddings import (FRAME_LENGTH, FRAME_SHIFT, NUM_MEL_BINS, embed_waveforms, encode_frames,
                                       min_samples)


class HearModel(torch.nn.Module):
    """A frozen BEATs encoder with the attributes HEAR reads."""

    sample_rate = 16_000

    def __init__(self, beats: torch.nn.Module, layer: str = "last", batch_size: int = 16):
        super().__init__()
        self.beats = beats.eval()
        self.layer, self.batch_size = layer, batch_size
        self.scene_embedding_size = self.timestamp_embedding_size = beats.cfg.encoder_embed_dim


def load_model(model_file_path: str = "", layer: str = "last") -> HearModel:
    """Checkpoint (local path or URI, official BEATs format) -> HEAR model."""
    from sonar_ray.models.beats import load_checkpoint

    if not model_file_path:
        raise ValueError("sonar-ray HEAR models need a checkpoint path")
    return HearModel(load_checkpoint(model_file_path), layer)


def _check(audio: torch.Tensor) -> torch.Tensor:
    if audio.ndim != 2:
        raise ValueError(f"audio must be (n_sounds, n_samples), got shape {tuple(audio.shape)}")
    return audio.detach().float().cpu()


def get_scene_embeddings(audio: torch.Tensor, model: HearModel) -> torch.Tensor:
    """(n_sounds, n_samples) -> (n_sounds, scene_embedding_size)."""
    waves = [a.numpy() for a in _check(audio)]
    return torch.from_numpy(embed_waveforms(model.beats, waves, model.layer, model.batch_size))


def _block_padded_length(num_samples: int, patch_frames: int) -> int:
    """Samples needed so that whole time blocks cover all `num_samples`."""
    frames = max(0, -(-(num_samples - FRAME_LENGTH) // FRAME_SHIFT)) + 1  # ceil: the last frame reaches the end
    blocks = -(-frames // patch_frames)
    return max(FRAME_LENGTH + (blocks * patch_frames - 1) * FRAME_SHIFT, min_samples(patch_frames))


@torch.no_grad()
def get_timestamp_embeddings(audio: torch.Tensor, model: HearModel) -> tuple[torch.Tensor, torch.Tensor]:
    """(n_sounds, n_samples) -> (embeddings (n_sounds, n_times, D), timestamps (n_sounds, n_times) in ms)."""
    audio = _check(audio)
    patch_frames = model.beats.cfg.input_patch_size
    freq_blocks = NUM_MEL_BINS // patch_frames
    n = _block_padded_length(audio.shape[1], patch_frames)
    audio = torch.nn.functional.pad(audio, (0, n - audio.shape[1]))  # (n_sounds, n)
    chunks = []
    for start in range(0, len(audio), model.batch_size):
        features, _ = encode_frames(model.beats, list(audio[start:start + model.batch_size].numpy()), model.layer)
        b, p, d = features.shape
        chunks.append(features.view(b, p // freq_blocks, freq_blocks, d).mean(2).cpu())  # (b, blocks, D)
    embeddings = torch.cat(chunks)
    block = torch.arange(embeddings.shape[1], dtype=torch.float64)
    frame_centre_ms = 1000.0 * (FRAME_LENGTH / 2 + FRAME_SHIFT * (block * patch_frames + (patch_frames - 1) / 2))
    timestamps = (frame_centre_ms / model.sample_rate).float().expand(len(audio), -1).contiguous()
    return embeddings, timestamps
