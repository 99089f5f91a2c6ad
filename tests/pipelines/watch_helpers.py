"""Demo clips and the stand-in watcher for the watcher tests (a module, not conftest, so tests can import it)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import soundfile as sf

import adapt_standin
from sonar_ray import storage
from sonar_ray.pipelines.runner import InlineRunner
from sonar_ray.pipelines.watch import WatchConfig, Watcher

STANDIN = str(Path(__file__).with_name("adapt_standin.py"))  # the stand-in as a job script (Ray Jobs runner)


def standin_watcher(cfg: WatchConfig) -> Watcher:
    """A watcher whose inline runner calls the stand-in in place of the library's adapt(cfg)."""
    return Watcher(cfg, InlineRunner(adapt_standin.adapt))


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
