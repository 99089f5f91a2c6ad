"""Demo clips for the watcher tests (a module, not conftest, so tests can import it)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import soundfile as sf

from sonar_ray import storage

STANDIN = str(Path(__file__).with_name("adapt_standin.py"))


def clip_bytes(seed: int, seconds: float = 0.5, sr: int = 16000) -> bytes:
    """A short tone-plus-noise WAV clip, different per seed."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    wave = 0.3 * np.sin(2 * np.pi * (200 + 50 * seed) * t) + 0.05 * rng.standard_normal(t.size)
    buf = io.BytesIO()
    sf.write(buf, wave.astype(np.float32), sr, format="WAV")
    return buf.getvalue()


def upload(incoming: str, domain: str, names: list[str], seed: int = 0) -> None:
    for i, name in enumerate(names):
        storage.write_bytes_atomic(storage.join(incoming, domain, name), clip_bytes(seed + i))
