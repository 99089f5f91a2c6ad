"""BEATs encoder throughput: forward and forward+backward clips/s, SDPA vs explicit attention, and
fwd+bwd time side by side with the official BEATs code.

Runs the model on random normalised fbank (what training feeds it: embed + encode), for the "base"
(~90M, 10 s clips) and "small" (1.6 s crops) presets. CPU in float32; on CUDA also bf16 autocast.
With `--reference DIR` (a folder holding the official code's `official.py`, e.g. ../shared/reference)
it first times `extract_features` fwd+bwd of the official model and of ours on identical weights and
waveforms (2 x 5 s clips, the last 20 % of one padded), alternating order, minimum of `--ref-reps`.

    python benchmarks/bench_model.py --reference ../shared/reference
    python benchmarks/bench_model.py --configs small --warmup 1 --iters 5
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time

import torch

from sonar_ray.models.beats import BEATs, BEATsConfig
from sonar_ray.models.transformer import load_weights

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


def versus_official(reference_dir: str, seconds: float, batch: int, reps: int) -> None:
    """Official / ours fwd+bwd seconds on identical weights and input (> 1: ours is faster)."""
    sys.path.insert(0, reference_dir)
    official = importlib.import_module("official")
    torch.manual_seed(0)
    # The 12 x 768 backbone with the official defaults (max_distance 1280), as the official code builds it.
    ref = official.BEATs(official.BEATsConfig(dict(input_patch_size=16, relative_position_embedding=True,
                                                   gru_rel_pos=True, deep_norm=True)))
    ours = load_weights(BEATs(BEATsConfig.from_dict(dict(ref.cfg.__dict__))), ref.state_dict(), "official model")
    ref.eval(), ours.eval()
    x = 0.1 * torch.randn(batch, int(16000 * seconds))
    mask = torch.zeros_like(x, dtype=torch.bool)
    mask[-1, int(x.shape[1] * 0.8):] = True
    with torch.no_grad():
        diff = (ref.extract_features(x, padding_mask=mask)[0] - ours.extract_features(x, padding_mask=mask)[0])
    def step(model) -> float:
        model.zero_grad(set_to_none=True)
        start = time.perf_counter()
        features, _ = model.extract_features(x, padding_mask=mask)
        features.float().pow(2).mean().backward()
        return time.perf_counter() - start
    step(ref), step(ours)  # warm-up
    times = {"official": [], "ours": []}
    for i in range(reps):  # alternate so neither side always runs second
        for name in (("official", "ours") if i % 2 == 0 else ("ours", "official")):
            times[name].append(step(ref if name == "official" else ours))
    t_ref, t_ours = min(times["official"]), min(times["ours"])
    print(f"official BEATs vs ours, 12 x 768, {batch} x {seconds:g} s, CPU fp32 fwd+bwd, min of {reps}: "
          f"official {t_ref:.3f} s, ours {t_ours:.3f} s, ratio {t_ref / t_ours:.2f}x, "
          f"max |diff| {diff.abs().max().item():.1e}", flush=True)
    # The ceiling any implementation of the same math has on this machine: its matrix products alone
    # (linear layers, attention, convolutions, forward and backward) at this CPU's best GEMM rate.
    flops = {name: step_flops(lambda m=m: step(m)) for name, m in (("official", ref), ("ours", ours))}
    peak = gemm_peak()
    floor = flops["ours"] / peak
    print(f"matrix-product floor: official {flops['official'] / 1e9:.1f} / ours {flops['ours'] / 1e9:.1f} GFLOP "
          f"per step, at this CPU's best fp32 GEMM rate {peak / 1e9:.0f} GFLOP/s = {floor:.3f} s: "
          f"ratio at most {t_ref / floor:.2f}x if nothing else took time (ours spends {t_ours - floor:.3f} s "
          f"beyond it, the official code {t_ref - floor:.3f} s)", flush=True)


def _conv_backward_flops(grad_out_shape, x_shape, w_shape, bias, stride, padding, dilation, transposed,
                         output_padding, groups, output_mask, out_shape=None, **kwargs) -> int:
    """Each requested gradient of a convolution costs what its forward does. (torch 2.13's own formula
    ignores `groups` and counts the grouped positional conv's backward 16x.)"""
    from torch.utils.flop_counter import conv_flop_count

    forward = conv_flop_count(x_shape, w_shape, grad_out_shape, transposed=transposed)
    return forward * (int(output_mask[0]) + int(output_mask[1]))


def step_flops(step) -> float:
    """FLOPs of the matrix products (mm, bmm, addmm, convolutions, attention) one call of `step` runs."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False,
                         custom_mapping={torch.ops.aten.convolution_backward: _conv_backward_flops}) as counter:
        step()
    return float(counter.get_total_flops())


def gemm_peak(n: int = 2048, reps: int = 5) -> float:
    """This CPU's fp32 GEMM rate (FLOP/s) at the current thread count: best of `reps` n x n products,
    larger and squarer than any product of the step, so no layer's GEMM can run faster."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up: thread pool, packing buffers
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


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
    ap.add_argument("--reference", default=None, help="folder with the official code's official.py: time it side by side")
    ap.add_argument("--ref-reps", type=int, default=4, help="alternating timed fwd+bwd calls per model (reference)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.reference:
        versus_official(args.reference, seconds=5.0, batch=2, reps=args.ref_reps)

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
