"""A small labeled probe corpus of synthesized audio files and tiny BEATs checkpoints.

The corpus follows the demo corpus layout (`<root>/audio/<domain>/...`, `manifests/probes.jsonl`)
with one task per domain: prior/pitch (two close pitches), speech/rate (syllable-like amplitude
modulation at 4 vs 9 Hz), music/interval (three intervals), environmental/events (multi-label:
any of a tone, a noise burst, a click train). Clips vary in length (0.6-1.4 s) so batches are padded.
One prior train row points at a file that is not audio, so the skip path is exercised.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

SR = 16_000
SPLIT_SIZES = {"train": 16, "valid": 10, "test": 24}  # clips per class


def _clip(rng: np.random.Generator, kind: str, label) -> np.ndarray:
    t = np.arange(int(SR * rng.uniform(0.6, 1.4))) / SR
    phase = rng.uniform(0, 2 * np.pi)
    if kind == "pitch":
        f = {"low": 300.0, "high": 340.0}[label] * rng.uniform(0.98, 1.02)
        x = np.sin(2 * np.pi * f * t + phase)
    elif kind == "rate":
        rate = {"slow": 4.0, "fast": 9.0}[label] * rng.uniform(0.9, 1.1)
        carrier = np.sin(2 * np.pi * rng.uniform(150, 250) * t + phase)
        x = carrier * (0.5 + 0.5 * np.sin(2 * np.pi * rate * t))
    elif kind == "interval":
        root = rng.uniform(220, 330)
        ratio = {"third": 1.25, "fifth": 1.5, "octave": 2.0}[label]
        x = np.sin(2 * np.pi * root * t + phase) + np.sin(2 * np.pi * root * ratio * t)
    else:  # events: a subset of {tone, noise, clicks}
        x = np.zeros_like(t)
        if "tone" in label:
            x += np.sin(2 * np.pi * 1000 * t)
        if "noise" in label:
            x += rng.normal(size=len(t)) * (t > t[-1] / 2)
        if "clicks" in label:
            x[:: SR // 20] += 4.0
    x = x + 0.2 * rng.normal(size=len(t))
    return (0.3 * x / np.abs(x).max()).astype(np.float32)


TASKS = {
    ("prior", "pitch"): ["low", "high"],
    ("speech", "rate"): ["slow", "fast"],
    ("music", "interval"): ["third", "fifth", "octave"],
    ("environmental", "events"): [["tone"], ["noise"], ["clicks"], ["tone", "noise"], ["noise", "clicks"], []],
}


def build_probe_corpus(root: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    rows = []
    for (domain, task), labels in TASKS.items():
        folder = root / "audio" / domain
        folder.mkdir(parents=True, exist_ok=True)
        for split, n in SPLIT_SIZES.items():
            for label in labels:
                for i in range(n if domain != "environmental" else max(4, n // 2)):
                    name = f"{task}_{split}_{'+'.join(label) if isinstance(label, list) else label}_{i}.wav"
                    sf.write(folder / name, _clip(rng, task if task != "events" else "events", label), SR)
                    rows.append({"path": f"audio/{domain}/{name}", "domain": domain, "task": task,
                                 "label": label, "split": split, "duration": 1.0})
    (root / "audio" / "prior" / "broken.wav").write_bytes(b"this is not audio")
    rows.append({"path": "audio/prior/broken.wav", "domain": "prior", "task": "pitch", "label": "low",
                 "split": "train", "duration": 1.0})
    (root / "manifests").mkdir(exist_ok=True)
    (root / "manifests" / "probes.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


@pytest.fixture(scope="session")
def probe_corpus(tmp_path_factory) -> Path:
    return build_probe_corpus(tmp_path_factory.mktemp("probe_corpus"))


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory) -> dict[str, str]:
    """base: a seeded random-init tiny BEATs; same: a byte copy of it at another path;
    damaged: base with Gaussian noise (std 1) added to every parameter."""
    from sonar_ray.models.beats import BEATs, BEATsConfig, save_checkpoint

    folder = tmp_path_factory.mktemp("checkpoints")
    torch.manual_seed(0)
    base = BEATs(BEATsConfig.preset("tiny")).eval()
    save_checkpoint(base, str(folder / "base.pt"))
    shutil.copy(folder / "base.pt", folder / "same.pt")
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in base.parameters():
            p.add_(torch.randn(p.shape, generator=g))
    save_checkpoint(base, str(folder / "damaged.pt"))
    return {name: str(folder / f"{name}.pt") for name in ("base", "same", "damaged")}
