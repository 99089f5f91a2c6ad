"""Bytes -> mono 16 kHz float32 clip, and the reasons a file is not usable audio.

soundfile (libsndfile) decodes WAV/FLAC/OGG/MP3/...; soxr does the band-limited resampling.
Every failure is a `BadAudio` carrying one reason from `REASONS`, so callers can skip, count
and report instead of stopping.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass

import numpy as np
import soundfile as sf
import soxr

SAMPLE_RATE = 16_000
# Peak below ~-80 dBFS: digital silence or 1-LSB dither of 16-bit audio, nothing to learn from.
SILENCE_PEAK = 1e-4

REASONS = ("unreadable", "empty", "not_audio", "truncated", "nan_inf", "silent", "too_short")


class BadAudio(Exception):
    def __init__(self, reason: str, detail: str = ""):
        assert reason in REASONS, reason
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(frozen=True)
class Decoded:
    wave: np.ndarray       # (N,) float32, mono, SAMPLE_RATE
    duration: float        # of the whole file, seconds
    source_rate: int
    channels: int


def _wav_declares_more_than_it_holds(data: bytes) -> bool:
    """libsndfile silently shortens a truncated WAV; the RIFF 'data' chunk header still tells."""
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return False
    pos = 12
    while pos + 8 <= len(data):
        chunk, size = data[pos:pos + 4], struct.unpack("<I", data[pos + 4:pos + 8])[0]
        if chunk == b"data":
            return pos + 8 + size > len(data)
        pos += 8 + size + (size & 1)
    return False


def decode(data: bytes, start: float = 0.0, seconds: float | None = None, min_seconds: float = 0.0) -> Decoded:
    """Decode `seconds` of audio from `start` (whole file when None), downmix, resample to 16 kHz.

    Raises BadAudio when the file is empty, not audio, truncated, holds NaN/Inf, is silent, or is
    shorter than `min_seconds`. Only the requested segment is checked for NaN/silence.
    """
    if not data:
        raise BadAudio("empty", "0 bytes")
    try:
        f = sf.SoundFile(io.BytesIO(data))
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        raise BadAudio("not_audio", str(e).split(":")[-1].strip()) from None
    with f:
        rate, channels, frames = f.samplerate, f.channels, f.frames
        if frames <= 0:
            raise BadAudio("empty", "0 frames")
        if _wav_declares_more_than_it_holds(data):
            raise BadAudio("truncated", "WAV data chunk longer than the file")
        duration = frames / rate
        if duration < min_seconds:
            raise BadAudio("too_short", f"{duration:.3f}s < {min_seconds}s")
        first = min(int(round(start * rate)), frames - 1)
        count = frames - first if seconds is None else min(frames - first, int(round(seconds * rate)))
        try:
            if first:
                f.seek(first)
            x = f.read(count, dtype="float32", always_2d=True)  # (n, C)
        except (sf.LibsndfileError, RuntimeError) as e:
            raise BadAudio("truncated", str(e).split(":")[-1].strip()) from None
    if len(x) < count:
        raise BadAudio("truncated", f"read {len(x)} of {count} frames")
    if not np.isfinite(x).all():
        raise BadAudio("nan_inf")
    mono = x.mean(axis=1)
    if np.abs(mono).max() < SILENCE_PEAK:
        raise BadAudio("silent")
    if rate != SAMPLE_RATE:
        mono = soxr.resample(mono, rate, SAMPLE_RATE, quality="HQ")
    return Decoded(np.ascontiguousarray(mono, dtype=np.float32), duration, rate, channels)


def fit_length(wave: np.ndarray, num_samples: int) -> tuple[np.ndarray, int]:
    """Crop or zero-pad to `num_samples`; returns (clip, number of real samples)."""
    n = min(len(wave), num_samples)
    out = np.zeros(num_samples, dtype=np.float32)
    out[:n] = wave[:n]
    return out, n

