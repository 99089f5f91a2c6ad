"""BEATs encoder throughput: forward and forward+backward clips/s, SDPA vs explicit attention.

Runs the model on random normalised fbank (what training feeds it: embed + encode), for the "base"
(~90M, 10 s clips) and "small" (1.6 s crops) presets. CPU in float32; on CUDA also bf16 autocast.

    python benchmarks/bench_model.py                       # default: one timed call per measurement
    python benchmarks/bench_model.py --configs small --warmup 1 --iters 5
"""

from __future__ import annotations

import argparse
import time

import torch

from sonar_ray.models.beats import BEATs, BEATsConfig

FRAMES_PER_SECOND = 100  # 10 ms fbank hop


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device, warmup: int, iters: int) -> float:
    """Seconds per call after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    sync(device)
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    sync(device)
    return (time.perf_counter() - start) / iters


def bench(model: BEATs, fbank: torch.Tensor, use_sdpa: bool, autocast_dtype, warmup: int, iters: int):
    """(forward clips/s, forward+backward clips/s)."""
    model.use_sdpa = use_sdpa
    device = fbank.device
    amp = dict(device_type=device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None)

    def forward():
        with torch.no_grad(), torch.autocast(**amp):
            model.encode(model.embed(fbank))

    def forward_backward():
        with torch.autocast(**amp):
            x, _ = model.encode(model.embed(fbank))
        x.float().pow(2).mean().backward()
        model.zero_grad(set_to_none=True)

    model.eval()
    fwd = timed(forward, device, warmup, iters)
    model.train()
    fwd_bwd = timed(forward_backward, device, warmup, iters)
    n = fbank.shape[0]
    return n / fwd, n / fwd_bwd


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", default="base,small", help="comma-separated presets")
    ap.add_argument("--base-seconds", type=float, default=10.0)
    ap.add_argument("--base-batch", type=int, default=2)
    ap.add_argument("--small-seconds", type=float, default=1.6)
    ap.add_argument("--small-batch", type=int, default=32)
    ap.add_argument("--warmup", type=int, default=0, help="untimed calls first (CPU; CUDA always does >= 3)")
    ap.add_argument("--iters", type=int, default=1, help="timed calls per measurement (CPU)")
    ap.add_argument("--gpu-iters", type=int, default=20, help="timed calls per measurement (CUDA)")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads(), help="CPU threads")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    runs = [(torch.device("cpu"), None, "cpu fp32", args.warmup, args.iters)]
    if torch.cuda.is_available():  # first CUDA calls pay for kernel selection and allocator growth
        runs += [(torch.device("cuda"), torch.bfloat16, f"{torch.cuda.get_device_name()} bf16",
                  max(args.warmup, 3), args.gpu_iters)]
    print(f"torch {torch.__version__}, {args.threads} CPU threads")
    print(f"{'config':<7} {'device':<22} {'batch':>5} {'sec':>5} {'P':>4}  {'path':<8} "
          f"{'fwd clips/s':>12} {'fwd+bwd clips/s':>16}")
    for name in args.configs.split(","):
        seconds, batch = ((args.base_seconds, args.base_batch) if name == "base"
                          else (args.small_seconds, args.small_batch))
        torch.manual_seed(0)
        model = BEATs(BEATsConfig.preset(name))
        frames = int(seconds * FRAMES_PER_SECOND) - 2  # Kaldi framing: 1 + (N - 400) // 160
        for device, dtype, label, warmup, iters in runs:
            model.to(device)
            fbank = torch.randn(batch, frames, 128, device=device)
            patches = (frames // 16) * 8
            results = {}
            for path, use_sdpa in (("sdpa", True), ("explicit", False)):
                results[path] = bench(model, fbank, use_sdpa, dtype, warmup, iters)
                f, fb = results[path]
                print(f"{name:<7} {label:<22} {batch:>5} {seconds:>5g} {patches:>4}  {path:<8} {f:>12.2f} {fb:>16.2f}",
                      flush=True)
            (sf, sfb), (ef, efb) = results["sdpa"], results["explicit"]
            print(f"{'':<7} {'':<22} {'':>5} {'':>5} {'':>4}  {'ratio':<8} {sf / ef:>11.2f}x {sfb / efb:>15.2f}x",
                  flush=True)


if __name__ == "__main__":
    main()
