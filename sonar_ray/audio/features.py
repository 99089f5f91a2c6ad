"""The BEATs input contract: one definition of fbank, its normalisation and which frames / patches are
real, for inspection, the training stream and loop, health checks and evaluation.

- fbank: Kaldi fbank of [-1, 1] audio scaled to the int16 range (as BEATs does), 128 mel bins, 25 ms
  frames every 10 ms, edges snipped; `normalize_fbank` maps it to the BEATs input scale with the
  official statistics: (fbank - mean) / (2 * std).
- frames: a clip of n real samples has `num_frames(n)` = 1 + (n - 400) // 160 frames on its own; in a
  zero-padded batch exactly those are real (`frame_padding_mask`).
- patches: time-block-major (index = time_block * freq_blocks + freq_block); a patch is real when all
  16 frames of its time block are real (`patch_padding_mask`): the patches the clip has on its own,
  so what a clip computes does not depend on what it was batched with.

The official `forward_padding_mask` groups consecutive patch *indices* instead (a quirk that marks some
real patches padded and some padded ones real); only the official API keeps it (`BEATs.extract_features`,
`Tokenizer.extract_labels` and the tokenizer's own attention mask, which its parity fixtures pin).
"""

from __future__ import annotations

import torch
from torch import Tensor

from sonar_ray.audio.fbank import kaldi_fbank

SAMPLE_RATE = 16_000
FRAME_LENGTH, FRAME_SHIFT = 400, 160  # samples: 25 ms / 10 ms at 16 kHz
NUM_MEL_BINS = 128
FBANK_SCALE = 2 ** 15  # BEATs feeds int16-range audio to Kaldi fbank
FBANK_MEAN = 15.41663  # official BEATs fbank normalisation (AudioSet statistics)
FBANK_STD = 6.55582


def raw_fbank(waves: Tensor) -> Tensor:
    """Waveforms (B, N) in [-1, 1] at 16 kHz -> raw Kaldi fbank (B, T, 128)."""
    return kaldi_fbank(waves * FBANK_SCALE, num_mel_bins=NUM_MEL_BINS, sample_frequency=SAMPLE_RATE,
                       frame_length=25, frame_shift=10)


def clip_features(waves, lengths) -> tuple[Tensor, Tensor]:
    """(B, N) float32 clips (numpy) with `lengths` (B,) real samples -> raw fbank (B, T, 128), frame mask (B, T)."""
    fbank = raw_fbank(torch.as_tensor(waves))  # (B, T, 128)
    return fbank, frame_padding_mask(torch.as_tensor(lengths), fbank.shape[1])


def normalize_fbank(fbank: Tensor, fbank_mean: float = FBANK_MEAN, fbank_std: float = FBANK_STD) -> Tensor:
    """Raw Kaldi fbank -> the BEATs input scale (what `BEATs.preprocess` returns)."""
    return (fbank - fbank_mean) / (2 * fbank_std)


def num_frames(num_samples: Tensor) -> Tensor:
    """(B,) real samples -> (B,) fbank frames the clip has on its own."""
    return torch.clamp((num_samples - FRAME_LENGTH) // FRAME_SHIFT + 1, min=0)


def frame_padding_mask(num_samples: Tensor, frames: int) -> Tensor:
    """(B,) real samples -> (B, frames) bool, True = the frame reaches into padding."""
    return torch.arange(frames, device=num_samples.device)[None, :] >= num_frames(num_samples)[:, None]


def num_patches(fbank: Tensor, patch_size: int = 16) -> int:
    """Patches of fbank (B, T, F) in the BEATs patch embedding: whole time blocks x frequency blocks."""
    return (fbank.shape[1] // patch_size) * (fbank.shape[2] // patch_size)


def patch_padding_mask(frame_padding_mask: Tensor, patch_size: int = 16, num_mel_bins: int = NUM_MEL_BINS) -> Tensor:
    """Frame mask (B, T) -> patch mask (B, P) time-block-major, True = a frame of its time block is padded.

    Frames past the last whole time block are dropped, as the stride-16 patch embedding drops them.
    """
    B, T = frame_padding_mask.shape
    blocks = frame_padding_mask[:, : T // patch_size * patch_size].reshape(B, T // patch_size, patch_size)
    return blocks.any(-1).repeat_interleave(num_mel_bins // patch_size, dim=1)  # (B, P)
