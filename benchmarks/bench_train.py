"""Training-step cost, measured side by side in one run.

1. Step time and peak memory of a DCPT step (student only) vs a SONAR step (student + frozen teacher
   forward + teacher tokenizer + codebook re-anchoring). The ratio is SONAR's distillation overhead.
2. Ray Train: samples/s of the same DCPT-style run with 1 and with 2 workers (data-parallel scaling).

    python benchmarks/bench_train.py                       # small preset, 2-s crops, batch 16
    python benchmarks/bench_train.py --preset base --batch 4 --steps 3 --skip-ray   # the full-size 90 M model

Each method runs in a fresh process from the same untrained starting point (benchmarks/start.py),
so the peak RSS printed is that method's: models, optimizer state and activations.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch

from benchmarks.start import write_start
from sonar_ray.train import artifacts
from sonar_ray.train.assemble import build_models
from sonar_ray.train.config import TrainConfig
from sonar_ray.train.loop import compute_losses
from sonar_ray.train.schedule import build_optimizer


def training_step(method: str, start: Path, batch: int, seconds: float, device: str = "cpu") -> Callable[[], None]:
    """One worker's models for `method` from the starting point's files, on `device`, and its training step
    (losses, backward, optimizer, codebook update; bf16 autocast on CUDA, as the loop) on a synthetic batch."""
    device = torch.device(device)
    cfg = TrainConfig(method=method)
    paths = {"base": str(start / artifacts.MODEL), "tokenizer": str(start / artifacts.TOKENIZER),
             "predictor": str(start / artifacts.PREDICTOR)}
    models = build_models(cfg, paths, device)
    if models.codebook is not None:
        models.codebook.usage.fill_(1.0 / models.tokenizer.num_codes)  # as after survey_codebook
    frames = int(seconds * 100) - 2
    g = torch.Generator().manual_seed(0)
    data = {"fbank": (torch.randn(batch, frames, 128, generator=g) * 6 + 15).to(device),
            "padding_mask": torch.zeros(batch, frames, dtype=torch.bool, device=device),
            "is_prior": (torch.arange(batch) < batch // 2).to(device)}
    opt = build_optimizer(list(models.student.parameters()), 1e-4, 0.01)
    gen = torch.Generator().manual_seed(0)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")

    def step():
        with autocast:
            loss, _, aux = compute_losses(cfg, models, models.student, data, gen, device)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if models.codebook is not None:
            models.codebook.step(models.tokenizer.quantize.embedding, aux["features"])

    return step


def step_cost(method: str, start: str, batch: int, seconds: float, steps: int) -> dict:
    """Runs in its own process, so its peak RSS is this method's alone: steps/s and peak memory."""
    torch.set_num_threads(os.cpu_count() or 1)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    step = training_step(method, Path(start), batch, seconds)
    step()  # warm-up (allocates the optimizer state)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    elapsed = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {"step_s": elapsed / steps, "peak_mib": peak / 1024, "import_mib": before / 1024}


def in_own_process(fn, *args):
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def ray_throughput(num_workers: int, steps: int, corpus: str, out: str) -> tuple[float, float]:
    """(samples/s, rank 0's share of wall time spent waiting for input), steady state."""
    from sonar_ray.train.config import TrainConfig
    from sonar_ray.train.driver import fit
    from sonar_ray.train.inputs import data_config

    cfg = TrainConfig(domain="speech", method="scratch", data=corpus, prior=corpus, output=out, replay_ratio=0.5,
                      replay_policy="uniform", preset="small", max_steps=steps, batch_size=8, clip_seconds=1.0,
                      num_workers=num_workers, checkpoint_every=steps, log_every=5, wandb=False, evaluate=False)
    fit(cfg, {}, data_config(cfg))
    rows = [json.loads(line) for line in Path(out, "metrics.jsonl").read_text().splitlines()]
    rows = rows[1:]  # steady state: the first interval holds start-up
    return float(np.mean([r["samples_per_s"] for r in rows])), float(np.mean([r["data_wait_share"] for r in rows]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="small")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--ray-steps", type=int, default=20)
    p.add_argument("--skip-ray", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)

    with tempfile.TemporaryDirectory() as d:
        write_start(d, args.preset)
        cost = {m: in_own_process(step_cost, m, d, args.batch, args.seconds, args.steps) for m in ("dcpt", "sonar")}
    dcpt, sonar = cost["dcpt"], cost["sonar"]
    print(f"one process each, {args.preset} preset, batch {args.batch} x {args.seconds}s, {torch.get_num_threads()} threads, "
          f"mean of {args.steps} steps")
    for name, c in cost.items():
        print(f"  {name:5s} step: {c['step_s']:7.3f} s   peak RSS {c['peak_mib']:7.0f} MiB "
              f"(+{c['peak_mib'] - c['import_mib']:.0f} MiB over the imports)")
    print(f"RESULT sonar/dcpt step time {sonar['step_s'] / dcpt['step_s']:.2f}x (target <= 1.15x), "
          f"peak memory {sonar['peak_mib'] / dcpt['peak_mib']:.2f}x")
    if args.skip_ray:
        return

    from sonar_ray.cluster import init_ray
    from sonar_ray.demo import generate_corpus

    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")
    init_ray()
    with tempfile.TemporaryDirectory() as d:
        generate_corpus(f"{d}/corpus", "tiny", seed=0)
        (one, wait1), (two, wait2) = (ray_throughput(n, args.ray_steps, f"{d}/corpus", f"{d}/w{n}") for n in (1, 2))
    print(f"Ray Train, small preset, batch 8 x 1.0s per worker, {args.ray_steps} steps")
    print(f"  1 worker : {one:7.1f} samples/s, waiting for input {wait1:.0%} of the time")
    print(f"  2 workers: {two:7.1f} samples/s, waiting for input {wait2:.0%} of the time")
    print(f"RESULT Ray Train 2 vs 1 workers {two / one:.2f}x on {os.cpu_count()} cores (target >= 1.6x)")


if __name__ == "__main__":
    main()
