"""Write the demo corpus: real audio files (WAV/FLAC/OGG, mixed rates, some stereo) plus manifests.

Layout and manifest schema are those of docs/ARCHITECTURE.md ("Data"). Every file is seeded by
(seed, domain, split, task, label, index), so a corpus is reproducible whatever the number of worker
processes: byte for byte, except OGG files, whose samples match but whose stream serial libvorbis
draws at random.
"""

from __future__ import annotations

import io
import json
import math
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
import soundfile as sf

from sonar_ray import progress, storage
from sonar_ray.data.manifest import PROBE_MANIFEST, TRAIN_MANIFEST
from sonar_ray.demo.domains import DOMAINS, TASKS, synthesize

SPLITS = ("train", "valid", "test")
FORMATS = [("wav", "WAV", "PCM_16"), ("flac", "FLAC", "PCM_16"), ("ogg", "OGG", "VORBIS")]
FORMAT_P = [0.4, 0.4, 0.2]
RATES, RATE_P = [16_000, 22_050, 44_100], [0.5, 0.35, 0.15]
STEREO_P = 0.2


@dataclass(frozen=True)
class Scale:
    clip_seconds: float   # probe clips are this long; unlabeled files 1-2x as long (so crops vary)
    train_files: int      # unlabeled files per domain
    probe_clips: tuple[int, int, int]  # clips per task in train / valid / test (rounded up to whole classes)
    workers: int          # generator processes


# Bump when the generator's output changes: cached demo corpora (and the base models trained on
# them) live in folders named after it, so a stale cache is never picked up.
CORPUS_VERSION = 2

# Like general audio (AudioSet holds speech, music and animals), the prior's unlabeled set mixes in a
# minority of clips from each new domain's generator (every RELATED_EVERY-th file, domains in turn),
# so relevance-based replay has prior material near each new domain to find. Probe clips stay pure.
RELATED_EVERY = 5

SCALES = {
    "tiny": Scale(1.0, 6, (12, 6, 12), 1),
    "demo": Scale(2.0, 240, (160, 40, 120), 2),
    "large": Scale(4.0, 3000, (1000, 200, 400), 2),
    # The demo's unlabeled files and probe train/valid clips (same seeds), 400 test clips per task: a
    # binomial standard error of ~0.025 instead of the demo's ~0.045 (benchmarks/replicate.py).
    "replicate": Scale(2.0, 240, (160, 40, 400), 2),
    "bench": Scale(10.0, 120, (12, 6, 12), 8),  # AudioSet-length clips for throughput checks (benchmarks/gpu_check.py)
}


@dataclass(frozen=True)
class FileSpec:
    path: str
    domain: str
    seconds: float
    seed: tuple[int, ...]
    task: str | None = None
    label: str | None = None
    split: str | None = None
    source: str | None = None  # generator, when not the domain's own (related material in the prior)


def related_source(domain: str, index: int) -> str | None:
    """The new domain whose generator makes unlabeled prior file `index`, or None (a plain prior clip)."""
    if domain != "prior" or index % RELATED_EVERY != RELATED_EVERY - 1:
        return None
    new = [d for d in DOMAINS if d != "prior"]
    return new[(index // RELATED_EVERY) % len(new)]


def plan_corpus(scale: Scale, seed: int) -> list[FileSpec]:
    specs = []
    for d, domain in enumerate(DOMAINS):
        for i in range(scale.train_files):
            length = scale.clip_seconds * (1 + np.random.default_rng([seed, d, 9, i]).random())
            specs.append(FileSpec(f"audio/{domain}/train/{domain}-{i:05d}", domain, round(length, 3), (seed, d, 0, i),
                                  source=related_source(domain, i)))
        for t, (task, classes) in enumerate(TASKS[domain].items()):
            for s, (split, total) in enumerate(zip(SPLITS, scale.probe_clips)):
                for c, label in enumerate(classes):
                    for i in range(math.ceil(total / len(classes))):
                        specs.append(FileSpec(f"audio/{domain}/probe/{task}/{split}/{label}-{i:04d}", domain,
                                              scale.clip_seconds, (seed, d, 1 + s, t, c, i), task, label, split))
    return specs


def render(spec: FileSpec) -> tuple[str, bytes, dict]:
    """One file: synthesize at its own rate, maybe stereo, encode; returns (path, bytes, manifest row)."""
    rng = np.random.default_rng(spec.seed)
    ext, fmt, subtype = FORMATS[rng.choice(len(FORMATS), p=FORMAT_P)]
    rate = int(rng.choice(RATES, p=RATE_P))
    wave = synthesize(spec.source or spec.domain, rng, rate, spec.seconds, {spec.task: spec.label} if spec.task else {})
    if rng.random() < STEREO_P:  # a second microphone: slightly later and quieter
        shift = int(rng.integers(1, 40))
        wave = np.stack([wave, np.concatenate([np.zeros(shift, np.float32), wave[:-shift]]) * 0.8], axis=1)
    buf = io.BytesIO()
    sf.write(buf, wave, rate, format=fmt, subtype=subtype)
    path = f"{spec.path}.{ext}"
    row = {"path": path, "domain": spec.domain, "duration": spec.seconds}
    if spec.task:
        row.update(task=spec.task, label=spec.label, split=spec.split)
    if spec.source:
        row["source"] = spec.source
    return path, buf.getvalue(), row


class _Writer:
    """Local files directly; object stores in batched uploads."""

    def __init__(self, out: str):
        self.out, self.remote, self.pending = out, storage.is_remote(out), {}
        self.fs, self.base = storage.filesystem(out)
        self.bytes = 0

    def add(self, path: str, data: bytes) -> None:
        self.bytes += len(data)
        if not self.remote:
            storage.makedirs(storage.join(self.out, path.rsplit("/", 1)[0]))
            with open(storage.join(self.out, path), "wb") as f:
                f.write(data)
            return
        self.pending[f"{self.base.rstrip('/')}/{path}"] = data
        if len(self.pending) >= 64:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.fs.pipe(self.pending)
            self.pending = {}


def _jsonl(rows: list[dict]) -> bytes:
    return "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows).encode()


def _read_rows(out: str, manifest: str) -> list[dict]:
    uri = storage.join(out, manifest)
    return [json.loads(line) for line in storage.read_bytes(uri).decode().splitlines()] if storage.exists(uri) else []


def built_domains(out: str) -> set[str]:
    """Domains whose files the corpus under `out` holds: those its train manifest lists (written last)."""
    return {r["domain"] for r in _read_rows(out, TRAIN_MANIFEST)}


def generate_corpus(out: str, scale: str = "tiny", seed: int = 0, workers: int | None = None,
                    domains: list[str] | None = None) -> dict:
    """Generate the corpus under `out` (folder or URI); returns a summary (files, bytes, seconds).

    `domains` generates only those domains' files and adds them to the manifests already there, so a
    corpus grown one domain at a time has the manifests, row order included, of one built at once.
    """
    started = time.perf_counter()
    plan = SCALES[scale]
    every = plan_corpus(plan, seed)
    unknown = sorted(set(domains or ()) - set(DOMAINS))
    if unknown:
        raise ValueError(f"unknown demo domains {unknown}; the demo has {list(DOMAINS)}")
    specs = [s for s in every if domains is None or s.domain in domains]
    workers = workers or plan.workers
    writer, new_rows = _Writer(out), []
    if workers > 1:  # spawn: forking a process that runs Ray or a server thread is unsafe
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
        results = pool.map(render, specs, chunksize=16)
    else:
        pool, results = None, map(render, specs)
    try:
        for path, data, row in progress.bar(results, desc="corpus", total=len(specs), unit="file"):
            writer.add(path, data)
            new_rows.append(row)
    finally:
        if pool:
            pool.shutdown()
    writer.flush()
    made = {s.domain for s in specs}
    order = {f"{s.path}.": i for i, s in enumerate(every)}  # plan order, whatever order domains were built in
    for manifest, probe in ((PROBE_MANIFEST, True), (TRAIN_MANIFEST, False)):  # train last: it marks completion
        kept = [r for r in _read_rows(out, manifest) if r["domain"] not in made] if domains is not None else []
        rows = kept + [r for r in new_rows if ("task" in r) == probe]
        rows.sort(key=lambda r: order[r["path"].rsplit(".", 1)[0] + "."])
        storage.write_bytes_atomic(storage.join(out, manifest), _jsonl(rows))
    return {"out": out, "scale": scale, "seed": seed, "files": len(specs), "bytes": writer.bytes,
            "seconds": round(time.perf_counter() - started, 2)}
