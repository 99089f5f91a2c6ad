"""Data-path throughput: decode + resample + crop + fbank through Ray Data vs a torch DataLoader.

Both paths run the same code (`clip_batch`) on the same files; prints clips/s and real-time factor
per core (seconds of audio processed per second of wall time, divided by the cores used).

    python benchmarks/bench_data.py [--corpus DIR_OR_URI] [--clip-seconds 2] [--repeat 3] [--workers 2]
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from sonar_ray.config import parse_cli
from sonar_ray.data import SAMPLE_RATE, BadAudio, decode, fit_length, load_source
from sonar_ray.data.fetch import fetch_bytes
from sonar_ray.audio.features import clip_features


@dataclass
class BenchConfig:
    """Ray Data vs DataLoader on the same decode + resample + crop + fbank code."""

    corpus: str = field(default="", metadata={"help": "corpus root (default: a fresh tiny demo corpus)"})
    clip_seconds: float = field(default=1.0, metadata={"help": "crop length"})
    repeat: int = field(default=3, metadata={"help": "passes over the file list"})
    workers: int = field(default=2, metadata={"help": "DataLoader workers / Ray Data CPUs"})
    batch_size: int = field(default=16, metadata={"help": "clips per batch"})
    trials: int = field(default=3, metadata={"help": "timed runs of each path, in alternating order (best counts)"})


def clip_batch(uris, clip_seconds: float) -> dict[str, np.ndarray]:
    """The shared transform: files -> fbank (B, T, 128) and frame padding mask (B, T)."""
    num = int(clip_seconds * SAMPLE_RATE)
    waves, lengths = np.zeros((len(uris), num), np.float32), np.zeros(len(uris), np.int64)
    for i, uri in enumerate(uris):
        try:
            waves[i], lengths[i] = fit_length(decode(fetch_bytes(str(uri)), seconds=clip_seconds).wave, num)
        except BadAudio:
            continue
    fbank, mask = clip_features(waves, lengths)
    return {"fbank": fbank.numpy(), "padding_mask": mask.numpy()}


class ClipFiles(torch.utils.data.Dataset):
    def __init__(self, uris, clip_seconds):
        self.uris, self.clip_seconds = uris, clip_seconds

    def __len__(self):
        return len(self.uris)

    def __getitem__(self, i):
        out = clip_batch([self.uris[i]], self.clip_seconds)
        return torch.from_numpy(out["fbank"][0]), torch.from_numpy(out["padding_mask"][0])


def bench_ray(uris, cfg: BenchConfig) -> float:
    import ray

    ds = ray.data.from_items([{"uri": u} for u in uris], override_num_blocks=4 * cfg.workers)
    ds = ds.map_batches(lambda b: clip_batch(b["uri"], cfg.clip_seconds), batch_size=cfg.batch_size,
                        num_cpus=1, concurrency=cfg.workers)
    start, n = time.perf_counter(), 0
    for batch in ds.iter_batches(batch_size=cfg.batch_size):
        n += len(batch["fbank"])
    assert n == len(uris)
    return time.perf_counter() - start


def bench_loader(uris, cfg: BenchConfig) -> float:
    loader = torch.utils.data.DataLoader(ClipFiles(uris, cfg.clip_seconds), batch_size=cfg.batch_size,
                                         num_workers=cfg.workers, multiprocessing_context="spawn",
                                         persistent_workers=False)
    start, n = time.perf_counter(), 0
    for fbank, _ in loader:
        n += len(fbank)
    assert n == len(uris)
    return time.perf_counter() - start


def bench_kernel(uris, cfg: BenchConfig) -> float:
    """The transform alone, in this process on one thread: the per-core ceiling of either path."""
    start = time.perf_counter()
    for i in range(0, len(uris), cfg.batch_size):
        clip_batch(uris[i:i + cfg.batch_size], cfg.clip_seconds)
    return time.perf_counter() - start


def main(argv=None) -> None:
    cfg = parse_cli(BenchConfig, argv)
    torch.set_num_threads(1)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    corpus = cfg.corpus
    if not corpus:
        from sonar_ray.demo import generate_corpus

        corpus = os.path.join(tempfile.mkdtemp(), "tiny")
        print("generated", generate_corpus(corpus, "tiny"))
    uris = load_source(f"{corpus.rstrip('/')}/audio")["uri"].tolist() * cfg.repeat  # every file of the corpus
    from sonar_ray.cluster import init_ray

    init_ray(num_cpus=cfg.workers)
    audio = len(uris) * cfg.clip_seconds
    print(f"{len(uris)} clips x {cfg.clip_seconds}s, {cfg.workers} workers, batch {cfg.batch_size}")
    kernel = audio / bench_kernel(uris, cfg)  # x real time on 1 core
    best = {"ray": float("inf"), "loader": float("inf")}
    for trial in range(cfg.trials):  # alternating order, best of trials: load drifts, the minimum does not
        for name in (("ray", "loader") if trial % 2 == 0 else ("loader", "ray")):
            best[name] = min(best[name], (bench_ray if name == "ray" else bench_loader)(uris, cfg))
    print(f"{'path':<22}{'clips/s':>10}{'x realtime/core':>18}")
    print(f"{'kernel, 1 thread':<22}{kernel / cfg.clip_seconds:>10.1f}{kernel:>18.1f}")
    for name, label in (("ray", "ray data map_batches"), ("loader", "torch DataLoader")):
        print(f"{label:<22}{len(uris) / best[name]:>10.1f}{audio / best[name] / cfg.workers:>18.1f}")
    print(f"RESULT decode+resample+fbank {kernel:.0f}x real time per core (goal >= 200x); "
          f"Ray Data / DataLoader {best['loader'] / best['ray']:.2f}x (goal >= 0.9x), best of {cfg.trials}")


if __name__ == "__main__":
    main()
