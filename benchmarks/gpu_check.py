"""One-GPU check of the full-size (90 M) SONAR run: clips/s, model FLOP utilisation, data-wait share.

1. Model only: SONAR steps (student + frozen teacher + tokenizers + re-anchoring) on a synthetic batch
   already on the device, under the loop's bf16 autocast. FLOPs per step are counted by
   torch.utils.flop_counter on one step; MFU = FLOPs/s over the GPU's dense bf16 peak.
2. The real pipeline: `fit()` (Ray Data decode + resample + fbank on CPU actors feeding one Ray Train
   GPU worker) on a demo corpus of 10-20 s files, 10 s crops. Its metrics give clips/s and the share
   of wall time the worker waited for input (`data_wait_share`).

    bash benchmarks/gpu_check.sh                      # on the GPU machine, < 10 min
    python benchmarks/gpu_check.py --device cpu --preset tiny --steps 3 --pipeline-steps 4   # dry run
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch

from benchmarks.bench_train import training_step
from benchmarks.start import write_start
from sonar_ray.config import parse_cli
from sonar_ray.train import artifacts

# Dense bf16 tensor-core peak per GPU, TFLOP/s (vendor data sheets; SXM parts). Override with --peak-tflops.
PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10G": 70.0}


@dataclass
class GpuCheckConfig:
    preset: str = field(default="base", metadata={"help": "BEATs preset (base = the 90 M model)"})
    batch_size: int = field(default=32, metadata={"help": "clips per step"})
    clip_seconds: float = field(default=10.0, metadata={"help": "crop length (BEATs: 10 s)"})
    steps: int = field(default=10, metadata={"help": "timed model-only steps (after 3 warm-up steps)"})
    pipeline_steps: int = field(default=60, metadata={"help": "steps of the real pipeline run (0 skips it)"})
    device: str = field(default="cuda", metadata={"help": "cuda, or cpu for a dry run", "choices": ("cuda", "cpu")})
    peak_tflops: float = field(default=0.0, metadata={"help": "dense bf16 peak of the GPU (0: from its name)"})
    out: str = field(default="", metadata={"help": "write the figures as JSON here too"})


def peak_flops(cfg: GpuCheckConfig) -> float | None:
    if cfg.peak_tflops > 0:
        return cfg.peak_tflops * 1e12
    if cfg.device != "cuda":
        return None
    name = torch.cuda.get_device_name()
    return next((t * 1e12 for key, t in PEAK_TFLOPS.items() if key in name), None)


def model_only(cfg: GpuCheckConfig, start: Path) -> dict:
    """SONAR steps on a device-resident batch: the model's own clips/s and FLOPs per step."""
    from torch.utils.flop_counter import FlopCounterMode

    device = torch.device(cfg.device)
    step = training_step("sonar", start, cfg.batch_size, cfg.clip_seconds, cfg.device)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    counter = FlopCounterMode(display=False)
    with counter:
        step()
    for _ in range(2):
        step()
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(cfg.steps):
        step()
    sync()
    step_s = (time.perf_counter() - t0) / cfg.steps
    out = {"model_step_s": step_s, "model_clips_per_s": cfg.batch_size / step_s,
           "flops_per_step": float(counter.get_total_flops())}
    if device.type == "cuda":
        out["peak_gpu_mem_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return out


def pipeline(cfg: GpuCheckConfig, start: Path, work: Path) -> dict:
    """The real training pipeline on one GPU worker: clips/s and data-wait share from its metrics."""
    from sonar_ray.cluster import init_ray
    from sonar_ray.demo import generate_corpus
    from sonar_ray.train.config import TrainConfig
    from sonar_ray.train.driver import fit
    from sonar_ray.train.inputs import data_config

    generate_corpus(str(work / "corpus"), "bench", seed=0)
    init_ray()
    on_gpu = cfg.device == "cuda"
    train = TrainConfig(domain="speech", method="sonar", data=str(work / "corpus"), prior=str(work / "corpus"),
                        base=str(start / artifacts.MODEL), output=str(work / "run"), batch_size=cfg.batch_size,
                        replay_policy="uniform",  # relevance would embed every clip first: a pass, not the loop
                        clip_seconds=cfg.clip_seconds, max_steps=cfg.pipeline_steps, warmup_steps=1,
                        num_workers=1, use_gpu=on_gpu, cpus_per_worker=4 if on_gpu else 1,
                        checkpoint_every=cfg.pipeline_steps, log_every=max(1, cfg.pipeline_steps // 6),
                        wandb=False, evaluate=False)
    paths = {"base": train.base, "tokenizer": str(start / artifacts.TOKENIZER),
             "predictor": str(start / artifacts.PREDICTOR)}
    fit(train, paths, data_config(train))
    rows = [json.loads(line) for line in (work / "run" / "metrics.jsonl").read_text().splitlines()]
    steady = rows[1:] or rows  # the first interval holds start-up
    return {"pipeline_clips_per_s": float(np.mean([r["samples_per_s"] for r in steady])),
            "data_wait_share": float(np.mean([r["data_wait_share"] for r in steady])),
            "pipeline_intervals": len(steady)}


def main(argv: list[str] | None = None) -> dict:
    cfg = parse_cli(GpuCheckConfig, argv, description=__doc__)
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device visible: run on the GPU machine, or --device cpu for a dry run")
    name = torch.cuda.get_device_name() if cfg.device == "cuda" else f"cpu x{os.cpu_count()}"
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        start = write_start(work / "start", cfg.preset).parent
        figures = {"device": name, "preset": cfg.preset, "batch_size": cfg.batch_size,
                   "clip_seconds": cfg.clip_seconds, **model_only(cfg, start)}
        peak = peak_flops(cfg)
        if peak:
            figures["mfu"] = figures["flops_per_step"] / figures["model_step_s"] / peak
        if cfg.pipeline_steps:
            figures.update(pipeline(cfg, start, work))
            if peak:
                figures["pipeline_mfu"] = figures["flops_per_step"] / cfg.batch_size * figures["pipeline_clips_per_s"] / peak
    print(f"RESULT {name}, {cfg.preset} preset, batch {cfg.batch_size} x {cfg.clip_seconds:g} s, SONAR:")
    print(f"  model only : {figures['model_clips_per_s']:8.1f} clips/s, {figures['flops_per_step'] / 1e12:.2f} TFLOP/step"
          + (f", MFU {figures['mfu']:.1%}" if "mfu" in figures else "")
          + (f", peak GPU memory {figures['peak_gpu_mem_gib']:.1f} GiB" if "peak_gpu_mem_gib" in figures else ""))
    if "pipeline_clips_per_s" in figures:
        print(f"  pipeline   : {figures['pipeline_clips_per_s']:8.1f} clips/s, data-wait share "
              f"{figures['data_wait_share']:.1%}" + (f", MFU {figures['pipeline_mfu']:.1%}" if "pipeline_mfu" in figures else ""))
    if cfg.out:
        Path(cfg.out).write_text(json.dumps(figures, indent=2))
    return figures


if __name__ == "__main__":
    main()
