"""Training-step cost, measured side by side in one run.

1. One process: steps/s of a DCPT step (student only) vs a SONAR step (student + frozen teacher
   forward + teacher tokenizer + codebook re-anchoring). The ratio is SONAR's distillation overhead.
2. Ray Train: samples/s of the same DCPT-style run with 1 and with 2 workers (data-parallel scaling).

    python benchmarks/bench_train.py                       # small preset, 2-s crops, batch 16
    python benchmarks/bench_train.py --steps 20 --skip-ray
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch

from sonar_ray.models import beats, tokenizer as tokenizer_lib
from sonar_ray.objectives.codebook import OnlineCodebook
from sonar_ray.objectives.masked_prediction import MaskedTokenModel
from sonar_ray.objectives.tokenizer_training import kmeans_init
from sonar_ray.train import artifacts
from sonar_ray.train.config import TrainConfig
from sonar_ray.train.assemble import Models
from sonar_ray.train.loop import compute_losses
from sonar_ray.train.schedule import build_optimizer


def build(method: str, preset: str, folder: Path) -> tuple[TrainConfig, Models]:
    torch.manual_seed(0)
    encoder = beats.BEATs(beats.BEATsConfig.preset(preset))
    beats.save_checkpoint(encoder, str(folder / "model.pt"))
    tok_cfg = {k: v for k, v in encoder.cfg.to_dict().items() if k in tokenizer_lib.TokenizerConfig.__dataclass_fields__}
    tok = tokenizer_lib.Tokenizer(tokenizer_lib.TokenizerConfig.from_dict({**tok_cfg, "encoder_layers": 2,
                                                                          "quant_n": 256, "quant_dim": 32})).eval()
    with torch.no_grad():
        z = tok.quantize_input(torch.randn(8, 200, 128)).flatten(0, 1)
        kmeans_init(tok.quantize.embedding, torch.nn.functional.normalize(z, dim=-1))
        tok.quantize.embedding.cluster_size.fill_(1.0)
    cfg = TrainConfig(method=method)
    student = MaskedTokenModel(encoder, artifacts.new_predictor(encoder.cfg.encoder_embed_dim, 256), cfg.mask_ratio)
    models = Models(student=student, tokenizer=tok)
    if method == "sonar":
        models.teacher = beats.load_checkpoint(str(folder / "model.pt")).requires_grad_(False)
        models.teacher_tokenizer = tokenizer_lib.Tokenizer(tok.cfg)
        models.teacher_tokenizer.load_state_dict(tok.state_dict())
        models.teacher_tokenizer.eval().requires_grad_(False)
        models.teacher_predictor = artifacts.new_predictor(encoder.cfg.encoder_embed_dim, 256).eval().requires_grad_(False)
        models.codebook = OnlineCodebook(256, usage=torch.full((256,), 1 / 256))
    return cfg, models


def steps_per_second(method: str, preset: str, batch: int, seconds: float, steps: int) -> float:
    with tempfile.TemporaryDirectory() as d:
        cfg, models = build(method, preset, Path(d))
        frames = int(seconds * 100) - 2
        g = torch.Generator().manual_seed(0)
        data = {"fbank": torch.randn(batch, frames, 128, generator=g) * 6 + 15,
                "padding_mask": torch.zeros(batch, frames, dtype=torch.bool),
                "is_prior": torch.arange(batch) < batch // 2}
        opt = build_optimizer(list(models.student.parameters()), 1e-4, 0.01)
        gen = torch.Generator().manual_seed(0)

        def step():
            loss, _, aux = compute_losses(cfg, models, models.student, data, gen, "cpu")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if models.codebook is not None:
                models.codebook.step(models.tokenizer.quantize.embedding, aux["features"])

        step()  # warm-up
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        return steps / (time.perf_counter() - t0)


def ray_samples_per_second(num_workers: int, steps: int, corpus: str, out: str) -> float:
    from sonar_ray.train.config import TrainConfig
    from sonar_ray.train.driver import fit
    from sonar_ray.train.inputs import data_config

    cfg = TrainConfig(domain="speech", method="scratch", data=corpus, prior=corpus, output=out, replay_ratio=0.5,
                      replay_policy="uniform", preset="small", max_steps=steps, batch_size=8, clip_seconds=1.0,
                      num_workers=num_workers, checkpoint_every=steps, log_every=5, wandb=False, evaluate=False)
    fit(cfg, {}, data_config(cfg))
    rows = [json.loads(line) for line in Path(out, "metrics.jsonl").read_text().splitlines()]
    return float(np.mean([r["samples_per_s"] for r in rows[1:]]))  # steady state: the first interval holds start-up


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

    dcpt = steps_per_second("dcpt", args.preset, args.batch, args.seconds, args.steps)
    sonar = steps_per_second("sonar", args.preset, args.batch, args.seconds, args.steps)
    print(f"one process, {args.preset} preset, batch {args.batch} x {args.seconds}s, {torch.get_num_threads()} threads")
    print(f"  dcpt  step: {dcpt:6.2f} steps/s")
    print(f"  sonar step: {sonar:6.2f} steps/s")
    print(f"  sonar / dcpt step time: {dcpt / sonar:.2f}x  (distillation overhead; target <= 1.35x)")
    if args.skip_ray:
        return

    from sonar_ray.cluster import init_ray
    from sonar_ray.demo import generate_corpus

    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")
    init_ray()
    with tempfile.TemporaryDirectory() as d:
        generate_corpus(f"{d}/corpus", "tiny", seed=0)
        one = ray_samples_per_second(1, args.ray_steps, f"{d}/corpus", f"{d}/w1")
        two = ray_samples_per_second(2, args.ray_steps, f"{d}/corpus", f"{d}/w2")
    print(f"Ray Train, small preset, batch 8 x 1.0s per worker, {args.ray_steps} steps")
    print(f"  1 worker : {one:7.1f} samples/s")
    print(f"  2 workers: {two:7.1f} samples/s  (scaling {two / one:.2f}x on {os.cpu_count()} cores)")


if __name__ == "__main__":
    main()
