"""Procedural sound primitives (numpy + scipy.signal): sources, filters, rooms and noise."""

from __future__ import annotations

import numpy as np
from scipy import signal


def seconds(sr: int, dur: float) -> np.ndarray:
    return np.arange(int(round(sr * dur))) / sr


def harmonic(f0: np.ndarray | float, sr: int, n: int, amps: np.ndarray) -> np.ndarray:
    """Sum of harmonics k*f0 with amplitudes `amps` (k = 1..len(amps)), partials above Nyquist dropped."""
    f0 = np.broadcast_to(np.asarray(f0, dtype=np.float64), (n,))
    phase = 2 * np.pi * np.cumsum(f0) / sr  # (n,)
    out = np.zeros(n)
    for k, a in enumerate(amps, start=1):
        if a and k * f0.max() < 0.45 * sr:
            out += a * np.sin(k * phase)
    return out


def envelope(n: int, sr: int, attack: float, decay: float) -> np.ndarray:
    """Linear attack then exponential decay with time constant `decay` seconds."""
    t = np.arange(n) / sr
    return np.minimum(1.0, t / max(attack, 1e-4)) * np.exp(-np.maximum(t - attack, 0) / max(decay, 1e-4))


def noise(rng: np.random.Generator, n: int, color: str = "white") -> np.ndarray:
    """White, pink (1/f) or brown (1/f^2) noise, unit RMS."""
    x = rng.standard_normal(n)
    if color != "white":
        spec = np.fft.rfft(x)
        f = np.maximum(np.fft.rfftfreq(n), 1.0 / n)
        spec /= f ** (0.5 if color == "pink" else 1.0)
        x = np.fft.irfft(spec, n)
    return x / (x.std() + 1e-12)


def bandpass(x: np.ndarray, sr: int, lo: float, hi: float, order: int = 4) -> np.ndarray:
    hi = min(hi, 0.45 * sr)
    sos = signal.butter(order, [lo, hi], btype="bandpass", fs=sr, output="sos")
    return signal.sosfilt(sos, x)


def lowpass(x: np.ndarray, sr: int, cutoff: float, order: int = 2) -> np.ndarray:
    sos = signal.butter(order, min(cutoff, 0.45 * sr), btype="lowpass", fs=sr, output="sos")
    return signal.sosfilt(sos, x)


def resonators(x: np.ndarray, sr: int, freqs, bandwidths) -> np.ndarray:
    """Parallel two-pole resonators (formants), each normalised to unit peak gain."""
    out = np.zeros_like(x)
    for f, bw in zip(freqs, bandwidths):
        if f >= 0.45 * sr:
            continue
        r = np.exp(-np.pi * bw / sr)
        a = [1.0, -2 * r * np.cos(2 * np.pi * f / sr), r * r]
        out += signal.lfilter([1 - r], a, x)
    return out


def reverb(rng: np.random.Generator, x: np.ndarray, sr: int, rt60: float, wet: float) -> np.ndarray:
    """Room as exponentially decaying noise impulse response (RT60 in seconds), mixed `wet`."""
    if rt60 <= 0 or wet <= 0:
        return x
    n = int(sr * min(rt60, 1.5))
    ir = rng.standard_normal(n) * np.exp(-6.9 * np.arange(n) / (sr * rt60))
    ir /= np.sqrt((ir ** 2).sum())
    tail = signal.fftconvolve(x, ir)[: len(x)]
    return (1 - wet) * x + wet * tail


def add_noise(rng: np.random.Generator, x: np.ndarray, snr_db: float, color: str) -> np.ndarray:
    rms = np.sqrt(np.mean(x ** 2)) + 1e-9
    return x + noise(rng, len(x), color) * rms / 10 ** (snr_db / 20)


def normalize(x: np.ndarray, peak: float) -> np.ndarray:
    return x * (peak / (np.abs(x).max() + 1e-9))
