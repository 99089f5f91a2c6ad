"""Pre-train a BEATs base model on prior (general) audio: iteration 1 with a random-projection
tokenizer, a tokenizer trained from that model, iteration 2 with it. Each stage is scored on held-out
clips and must pass its health gate (thresholds: the --min-*/--iter2-accuracy flags below) or the job stops
with one line naming the failing metric; --no-gates ships it anyway.

    python jobs/pretrain.py                                   # demo corpus -> outputs/base
    python jobs/pretrain.py --data s3://bucket/prior/ --output s3://bucket/models/base --preset base --use-gpu
    python jobs/pretrain.py --init BEATs_iter3.pt ...         # start from an official checkpoint
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from sonar_ray.config import parse_cli, run_job
from sonar_ray.train.pretrain import PretrainConfig, PretrainResult, pretrain


def main(argv: list[str] | None = None) -> PretrainResult:
    cfg = parse_cli(PretrainConfig, argv, description=__doc__)
    if cfg.data is None:  # the bare demo command
        from sonar_ray.demo.inputs import demo_corpus

        cfg = replace(cfg, data=demo_corpus())
    result = pretrain(cfg)
    print(f"\n== pre-training done in {result.wall_seconds:.0f}s; base model files:")
    for uri in (result.model, result.tokenizer, result.predictor):
        print(f"  {uri.rsplit('/', 1)[-1]:14s} {uri}")
    return result


if __name__ == "__main__":
    run_job(main, "pretrain")
