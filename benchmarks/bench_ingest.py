"""What a training stream costs its consumer while it waits, side by side in one run.

A stream that is ahead of its consumer (as a training stream is while the step runs) is backpressured
with no task in flight; Ray Data's scheduling loop then spins in a thread of the consuming process.
This reads the same stream with a slow consumer (a `--step-seconds` sleep stands for the training
step) with and without `IdleBackoff`, and reports the CPU the consuming process burns per step.

    python benchmarks/bench_ingest.py [--blocks 60] [--step-seconds 0.2]
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from sonar_ray.config import parse_cli
from sonar_ray.data.backoff import IdleBackoff


@dataclass
class BenchConfig:
    """CPU burnt by a waiting stream's consumer process, with and without IdleBackoff."""

    blocks: int = field(default=60, metadata={"help": "batches in the stream"})
    block_mb: float = field(default=2.0, metadata={"help": "size of one batch"})
    buffer_mb: float = field(default=8.0, metadata={"help": "object-store budget of the stream (makes it wait)"})
    step_seconds: float = field(default=0.2, metadata={"help": "consumer's time per batch (stands for a step)"})


def _batch(row: dict, floats: int) -> dict:
    return {"x": np.zeros((1, floats), np.float32)}


def consumer_cpu_per_step(cfg: BenchConfig, backoff: bool) -> float:
    import ray
    from ray.data import ExecutionResources

    ds = ray.data.from_items([{"i": i} for i in range(cfg.blocks)], override_num_blocks=cfg.blocks)
    ds.context.execution_options.resource_limits = ExecutionResources(object_store_memory=cfg.buffer_mb * 2**20)
    callbacks = ds.context.custom_execution_callback_classes
    if backoff and IdleBackoff not in callbacks:
        callbacks.append(IdleBackoff)
    if not backoff and IdleBackoff in callbacks:
        callbacks.remove(IdleBackoff)
    ds = ds.map_batches(_batch, batch_size=1, fn_kwargs={"floats": int(cfg.block_mb * 2**18)})
    cpu0, steps = time.process_time(), 0
    for _ in ds.iter_batches(batch_size=1, prefetch_batches=1):
        time.sleep(cfg.step_seconds)  # the training step, holding no CPU so only the stream's use shows
        steps += 1
    return (time.process_time() - cpu0) / steps


def main() -> None:
    cfg = parse_cli(BenchConfig, description=__doc__)
    from sonar_ray.cluster import init_ray

    init_ray()
    load = os.getloadavg()[0]
    spin = consumer_cpu_per_step(cfg, backoff=False)
    idle = consumer_cpu_per_step(cfg, backoff=True)
    print(f"{cfg.blocks} batches of {cfg.block_mb} MB, {cfg.buffer_mb} MB budget, {cfg.step_seconds}s per step, "
          f"load {load:.2f} -> {os.getloadavg()[0]:.2f}")
    print(f"  consumer CPU per step, plain stream : {spin:.3f} s ({spin / cfg.step_seconds:.0%} of the step)")
    print(f"  consumer CPU per step, IdleBackoff  : {idle:.3f} s ({idle / cfg.step_seconds:.0%} of the step)")


if __name__ == "__main__":
    main()
