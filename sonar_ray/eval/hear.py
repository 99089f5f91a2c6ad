"""The HEAR 2021 embedding API, so sonar-ray checkpoints plug into existing audio benchmarks.

    model = load_model("model.pt", hop_ms=40)
    scene = get_scene_embeddings(audio, model)                  # (n_sounds, model.scene_embedding_size)
    emb, ts = get_timestamp_embeddings(audio, model)            # (n_sounds, n_times, D), (n_sounds, n_times) ms

`audio` is a float tensor (n_sounds, n_samples) at `model.sample_rate` (16 kHz), values in [-1, 1],
all sounds of one length (HEAR pads them). BEATs sees time in blocks of patches (16 fbank frames,
160 ms); a timestamp's embedding is the mean of one block's frequency patches, its timestamp the
centre of the block's frames in ms (frame k is centred at 10 k + 12.5 ms). HEAR asks for <= 50 ms
between timestamps on event and transcription tasks, so timestamps come every `hop_ms` (default
DEFAULT_HOP_MS = 40 ms; any multiple of the 10 ms frame shift that divides 160 ms: 10, 20, 40, 80,
160): the encoder runs 160 / hop_ms times on the audio advanced by 0, hop, 2 hop, ... and the blocks
interleave, so every timestamp is a real block centred there (cost: 160 / hop_ms forward passes).
The audio is zero-padded at the end up to whole blocks so the timestamps cover every sample, and no
block starts after the end. The scene embedding is the same pooled embedding the linear probes use
(mean over the clip's full time blocks, `sonar_ray.eval.embeddings`).
"""

from __future__ import annotations

import torch

from sonar_ray.audio.features import FRAME_LENGTH, FRAME_SHIFT, NUM_MEL_BINS
from sonar_ray.eval.embeddings import embed_waveforms, encode_frames, min_samples


DEFAULT_HOP_MS = 40  # <= 50 ms, what HEAR asks of event and transcription embeddings


class HearModel(torch.nn.Module):
    """A frozen BEATs encoder with the attributes HEAR reads."""

    sample_rate = 16_000

    def __init__(self, beats: torch.nn.Module, layer: str = "last", batch_size: int = 16,
                 hop_ms: int = DEFAULT_HOP_MS):
        super().__init__()
        frame_ms = 1000 * FRAME_SHIFT // self.sample_rate
        block_ms = beats.cfg.input_patch_size * frame_ms
        if hop_ms <= 0 or hop_ms % frame_ms or block_ms % hop_ms:
            raise ValueError(f"hop_ms must be a multiple of {frame_ms} ms that divides the {block_ms} ms "
                             f"time block, got {hop_ms}")
        self.beats = beats.eval()
        self.layer, self.batch_size, self.hop_ms = layer, batch_size, hop_ms
        self.scene_embedding_size = self.timestamp_embedding_size = beats.cfg.encoder_embed_dim


def load_model(model_file_path: str = "", layer: str = "last", hop_ms: int = DEFAULT_HOP_MS) -> HearModel:
    """Checkpoint (local path or URI, official BEATs format) -> HEAR model with timestamps every `hop_ms`."""
    from sonar_ray.models.beats import load_checkpoint

    if not model_file_path:
        raise ValueError("sonar-ray HEAR models need a checkpoint path")
    return HearModel(load_checkpoint(model_file_path), layer, hop_ms=hop_ms)


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


def _block_embeddings(model: HearModel, audio: torch.Tensor, freq_blocks: int) -> torch.Tensor:
    """(n_sounds, n) -> (n_sounds, blocks, D): each time block's mean over its frequency patches."""
    chunks = []
    for start in range(0, len(audio), model.batch_size):
        features, _ = encode_frames(model.beats, list(audio[start:start + model.batch_size].numpy()), model.layer)
        b, p, d = features.shape
        chunks.append(features.view(b, p // freq_blocks, freq_blocks, d).mean(2).cpu())  # (b, blocks, D)
    return torch.cat(chunks)


@torch.no_grad()
def get_timestamp_embeddings(audio: torch.Tensor, model: HearModel) -> tuple[torch.Tensor, torch.Tensor]:
    """(n_sounds, n_samples) -> (embeddings (n_sounds, n_times, D), timestamps (n_sounds, n_times) in ms)."""
    audio = _check(audio)
    num_samples = audio.shape[1]
    patch_frames = model.beats.cfg.input_patch_size
    freq_blocks = NUM_MEL_BINS // patch_frames
    hop = model.hop_ms * model.sample_rate // 1000  # samples between timestamps
    passes = patch_frames * FRAME_SHIFT // hop  # shifted passes that interleave into one hop-spaced grid
    n = _block_padded_length(num_samples, patch_frames)
    audio = torch.nn.functional.pad(audio, (0, n + (passes - 1) * hop - num_samples))  # (n_sounds, n + shifts)
    shifted = [_block_embeddings(model, audio[:, k * hop:k * hop + n], freq_blocks) for k in range(passes)]
    embeddings = torch.stack(shifted, 2).flatten(1, 2)  # (n_sounds, blocks * passes, D): block j, shift k -> j * passes + k
    keep = max(1, -(-num_samples // hop))  # timestamps whose block starts inside the audio
    embeddings = embeddings[:, :keep]
    step = torch.arange(embeddings.shape[1], dtype=torch.float64)
    first_centre_ms = 1000.0 * (FRAME_LENGTH / 2 + FRAME_SHIFT * (patch_frames - 1) / 2) / model.sample_rate
    timestamps = (first_centre_ms + model.hop_ms * step).float().expand(len(audio), -1).contiguous()
    return embeddings, timestamps
