"""Bytes or a seekable file -> mono 16 kHz float32 clip, and the reasons a file is not usable audio.

soundfile (libsndfile) decodes WAV/FLAC/OGG/MP3/...; soxr does the band-limited resampling.
Every failure is a `BadAudio` carrying one reason from `REASONS`, so callers can skip, count
and report instead of stopping. What the header claims (rate, length) is checked before any
sample is read, and nothing is decoded beyond what the caller asked for: `decode` reads one crop,
`scan` walks a whole file in fixed-size blocks, so memory does not grow with file length.
"""

from __future__ import annotations

import io
import math
import struct
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
import soundfile as sf
import soxr

SAMPLE_RATE = 16_000
# Peak below ~-80 dBFS: digital silence or 1-LSB dither of 16-bit audio, nothing to learn from.
SILENCE_PEAK = 1e-4
# Float files may overshoot 1.0 a little; +40 dBFS is broken data (and overflows the int16-scaled fbank).
MAX_PEAK = 100.0
# Rates outside this range are header damage, not audio (a "1 Hz" file asks the resampler for 16000x).
MIN_RATE, MAX_RATE = 4_000, 768_000
BLOCK_FRAMES = 1 << 16
# Container formats libsndfile cannot read: reported as such rather than as damaged audio.
UNSUPPORTED_SUFFIXES = (".m4a", ".mp4", ".aac", ".wma", ".webm", ".amr")

REASONS = ("unreadable", "empty", "not_audio", "unsupported_format", "bad_rate", "too_long", "truncated",
           "nan_inf", "too_loud", "silent", "too_short", "decode_error")


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


Source = bytes | BinaryIO
_UNKNOWN_SIZES = (0, 0xFFFFFFFF)  # streaming writers leave the RIFF/data size unset


def _wav_declares_more_than_it_holds(f: BinaryIO) -> bool:
    """libsndfile silently shortens a truncated WAV; the RIFF 'data' chunk header still tells."""
    end = f.seek(0, io.SEEK_END)
    f.seek(0)
    head = f.read(12)
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return False
    pos = 12
    while pos + 8 <= end:
        f.seek(pos)
        header = f.read(8)
        chunk, size = header[:4], struct.unpack("<I", header[4:8])[0]
        if chunk == b"data":
            return size not in _UNKNOWN_SIZES and pos + 8 + size > end
        pos += 8 + size + (size & 1)
    return False


def _open(src: Source) -> tuple[BinaryIO, sf.SoundFile]:
    f = io.BytesIO(src) if isinstance(src, (bytes, bytearray)) else src
    if f.seek(0, io.SEEK_END) == 0:
        raise BadAudio("empty", "0 bytes")
    f.seek(0)
    try:
        return f, sf.SoundFile(f)
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        raise BadAudio("not_audio", str(e).split(":")[-1].strip()) from None


def _check_header(f: BinaryIO, sfile: sf.SoundFile, min_seconds: float, max_seconds: float) -> float:
    """Reject on what the header claims, before any sample is allocated; returns the duration."""
    rate, frames = sfile.samplerate, sfile.frames
    if not MIN_RATE <= rate <= MAX_RATE:
        raise BadAudio("bad_rate", f"{rate} Hz outside [{MIN_RATE}, {MAX_RATE}]")
    if frames <= 0:
        raise BadAudio("empty", "0 frames")
    duration = frames / rate
    if duration > max_seconds:
        raise BadAudio("too_long", f"header claims {duration:.0f}s > {max_seconds:.0f}s")
    if duration < min_seconds:
        raise BadAudio("too_short", f"{duration:.3f}s < {min_seconds}s")
    here = f.tell()
    truncated = _wav_declares_more_than_it_holds(f)
    f.seek(here)
    if truncated:
        raise BadAudio("truncated", "WAV data chunk longer than the file")
    return duration


def _read(sfile: sf.SoundFile, count: int) -> np.ndarray:
    try:
        x = sfile.read(count, dtype="float32", always_2d=True)  # (n, C)
    except (sf.LibsndfileError, RuntimeError) as e:
        raise BadAudio("truncated", str(e).split(":")[-1].strip()) from None
    if not np.isfinite(x).all():
        raise BadAudio("nan_inf")
    peak = float(np.abs(x).max(initial=0.0))
    if peak > MAX_PEAK:
        raise BadAudio("too_loud", f"peak {peak:.3g} > {MAX_PEAK}")
    return x.mean(axis=1)  # (n,)


def _to_16k(mono: np.ndarray, rate: int) -> np.ndarray:
    if rate != SAMPLE_RATE and len(mono):
        mono = soxr.resample(mono, rate, SAMPLE_RATE, quality="HQ")
    return np.ascontiguousarray(mono, dtype=np.float32)


def decode(src: Source, start: float = 0.0, seconds: float | None = None, min_seconds: float = 0.0,
           max_seconds: float = math.inf) -> Decoded:
    """Decode `seconds` of audio from `start` (whole file when None), downmix, resample to 16 kHz.

    Only those frames are read (a seek, then one read). Raises BadAudio when the file is empty, not
    audio, has an absurd rate, claims more than `max_seconds` or less than `min_seconds`, is
    truncated, or the segment holds NaN/Inf, is absurdly loud or silent.
    """
    f, sfile = _open(src)
    with sfile:
        duration = _check_header(f, sfile, min_seconds, max_seconds)
        rate, frames = sfile.samplerate, sfile.frames
        first = min(int(round(start * rate)), frames - 1)
        count = frames - first if seconds is None else min(frames - first, int(round(seconds * rate)))
        try:
            if first:
                sfile.seek(first)
        except (sf.LibsndfileError, RuntimeError) as e:
            raise BadAudio("truncated", str(e).split(":")[-1].strip()) from None
        mono = _read(sfile, count)
    if len(mono) < count:
        raise BadAudio("truncated", f"read {len(mono)} of {count} frames")
    if np.abs(mono).max() < SILENCE_PEAK:
        raise BadAudio("silent")
    return Decoded(_to_16k(mono, rate), duration, rate, sfile.channels)


def scan(src: Source, min_seconds: float = 0.0, max_seconds: float = math.inf, keep_seconds: float = 0.0) -> Decoded:
    """Check a whole file block by block (truncation, NaN/Inf, loudness, silence) and return its
    first `keep_seconds` at 16 kHz: what the inspection pass needs, in memory bounded by the block size."""
    f, sfile = _open(src)
    with sfile:
        duration = _check_header(f, sfile, min_seconds, max_seconds)
        rate, frames, channels = sfile.samplerate, sfile.frames, sfile.channels
        keep_frames = int(round(keep_seconds * rate))
        kept, seen, peak = [], 0, 0.0
        while seen < frames:
            mono = _read(sfile, min(BLOCK_FRAMES, frames - seen))
            if not len(mono):
                break
            if seen < keep_frames:
                kept.append(mono[: keep_frames - seen])
            seen += len(mono)
            peak = max(peak, float(np.abs(mono).max()))
    if seen < frames:
        raise BadAudio("truncated", f"read {seen} of {frames} frames")
    if peak < SILENCE_PEAK:
        raise BadAudio("silent")
    wave = np.concatenate(kept) if kept else np.zeros(0, np.float32)
    return Decoded(_to_16k(wave, rate), duration, rate, channels)


def fit_length(wave: np.ndarray, num_samples: int) -> tuple[np.ndarray, int]:
    """Crop or zero-pad to `num_samples`; returns (clip, number of real samples)."""
    n = min(len(wave), num_samples)
    out = np.zeros(num_samples, dtype=np.float32)
    out[:n] = wave[:n]
    return out, n
