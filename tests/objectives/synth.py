"""Synthetic clips (tones, chirps, AM tones, clicks, noise) as normalized BEATs fbank."""

import math

import torch

from sonar_ray.audio.fbank import kaldi_fbank
from sonar_ray.models.transformer import FBANK_MEAN, FBANK_STD

SR = 16000


def synth_clips(n: int, seconds: float = 1.0, seed: int = 0) -> torch.Tensor:
    """(n, N) waveforms in [-1, 1], cycling through five kinds of sound with random parameters."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * SR)) / SR
    u = lambda lo, hi: lo + (hi - lo) * torch.rand((), generator=g).item()  # noqa: E731
    clips = []
    for i in range(n):
        kind = i % 5
        if kind == 0:  # harmonic tone
            f0 = u(100, 800)
            x = sum(torch.sin(2 * math.pi * f0 * k * t) / k for k in range(1, 5))
        elif kind == 1:  # linear chirp
            f0, f1 = u(200, 1000), u(2000, 7000)
            x = torch.sin(2 * math.pi * (f0 * t + (f1 - f0) * t**2 / (2 * seconds)))
        elif kind == 2:  # amplitude-modulated tone
            x = torch.sin(2 * math.pi * u(500, 4000) * t) * (0.5 + 0.5 * torch.sin(2 * math.pi * u(2, 8) * t))
        elif kind == 3:  # click train
            x = torch.zeros_like(t)
            x[:: int(SR / u(5, 20))] = 1.0
            x = x + 0.01 * torch.randn(t.shape, generator=g)
        else:  # band of noise
            x = torch.randn(t.shape, generator=g).cumsum(0).diff(prepend=torch.zeros(1)) * torch.sin(
                2 * math.pi * u(1, 4) * t).abs()
        clips.append(0.9 * x / x.abs().max())
    return torch.stack(clips)


def normalized_fbank(wave: torch.Tensor) -> torch.Tensor:
    """(B, N) -> (B, T, 128), normalized as BEATs.preprocess does."""
    return (kaldi_fbank(wave * 2**15) - FBANK_MEAN) / (2 * FBANK_STD)
