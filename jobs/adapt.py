r"""Adapt a BEATs model to a new domain with SONAR (default) or the DCPT baseline.

    python jobs/adapt.py --domain speech                      # demo corpus + demo base model
    python jobs/adapt.py --domain music --method dcpt --max-steps 300
    ray job submit --address http://HEAD:8265 -- python jobs/adapt.py --domain speech \
        --data s3://bucket/incoming/speech/ --prior s3://bucket/prior/ --probes s3://bucket/eval/ \
        --base s3://bucket/models/base/model.pt --output s3://bucket/runs/speech-001 --num-workers 8 --use-gpu \
        --embed-pool-actors 4 --embed-pool-gpus-per-actor 0.5

The demo corpus and demo base model are used only by the bare demo command (none of --data, --prior,
--probes, --base given) or with --demo; any other run names each input it needs (--prior unless
--replay-ratio 0 or --method dcpt, --probes unless --no-evaluate, --base unless --method scratch) or
stops at once with one line naming the missing flag. --method dcpt and scratch fix the knobs they do
not use (replay, distillation, codebook) to off; giving one of them another value is an error.

The inspection pass and the evaluation embedding run on a Ray Data actor pool (--embed-pool-*); a pool
that asks for more GPUs than the cluster has stops the run before any work, not after training.

The pipeline is the library call `sonar_ray.train.adapt.adapt(cfg)` (config -> data -> model + loop
(Ray Train) -> evaluation -> report); this job parses the flags and prints the summary.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from sonar_ray.config import parse_cli, run_job
from sonar_ray.train.adapt import AdaptResult, adapt, summary_table
from sonar_ray.train.config import TrainConfig


def main(argv: list[str] | None = None) -> AdaptResult:
    result = adapt(parse_cli(TrainConfig, argv, description=__doc__))
    print(summary_table(result), flush=True)
    return result


if __name__ == "__main__":
    run_job(main, "adapt")
