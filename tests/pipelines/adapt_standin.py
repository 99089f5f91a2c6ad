"""Stand-in for `jobs/adapt.py` with the same flags and outputs, for watcher tests that are not about training.

It really reads the manifest and decodes every listed object (skipping and reporting the ones that
fail, as the data layer does), fails when the base checkpoint is missing, refuses an output that
already holds a run unless --resume (as `fit` does: it marks a started run with `ray/`), dies once
after starting when $SONAR_STANDIN_FAIL_ONCE names a marker file not yet there, and writes model.pt,
tokenizer.pt, summary.json and bad_inputs.json. It does not train: the model is the base, and the
metrics are fixed (adaptability 0.5 as good as its base, forgetting 0.0) unless $SONAR_STANDIN_METRICS
(JSON) overrides some of them — promotion-gate tests force rejection that way or by config.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import soundfile as sf

from sonar_ray import storage


def main() -> None:
    p = argparse.ArgumentParser()
    for flag in ("--domain", "--data", "--prior", "--base", "--output"):
        p.add_argument(flag, required=True)
    p.add_argument("--probes", default=None)
    p.add_argument("--max-steps", type=int, default=0)
    p.add_argument("--config", default="")
    p.add_argument("--no-evaluate", action="store_true")
    p.add_argument("--resume", action="store_true")
    args = p.parse_args()
    if args.probes is None and not args.no_evaluate:
        raise ValueError("--probes is missing")  # as jobs/adapt.py

    started = storage.join(args.output, "ray", "started")
    if storage.exists(started) and not args.resume:
        raise FileExistsError(f"{args.output} already holds a run: pass --resume to continue it")
    storage.write_bytes_atomic(started, b"")
    marker = os.environ.get("SONAR_STANDIN_FAIL_ONCE")
    if marker and not Path(marker).exists():
        Path(marker).touch()
        sys.exit(1)

    base = storage.read_bytes(args.base)  # FileNotFoundError -> the job fails, as adapt.py would
    rows = [json.loads(line) for line in storage.read_bytes(args.data).decode().splitlines() if line.strip()]
    good, bad = 0, []
    for row in rows:
        fs, path = storage.filesystem(row["path"])
        try:
            with fs.open(path, "rb") as f:
                sf.read(f)
            good += 1
        except Exception as e:  # noqa: BLE001 - skipped and reported, like the data layer
            bad.append({"path": row["path"], "reason": f"{type(e).__name__}: {e}"})
    model, tokenizer = storage.join(args.output, "model.pt"), storage.join(args.output, "tokenizer.pt")
    storage.write_bytes_atomic(model, base)
    storage.write_bytes_atomic(tokenizer, base)
    report = {"total": len(bad), "counts": {}, "files": bad}  # the data layer's bad_inputs.json format
    storage.write_bytes_atomic(storage.join(args.output, "bad_inputs.json"), json.dumps(report).encode())
    metrics = {} if args.no_evaluate else {
        "adaptability": 0.5, "adaptability_base": 0.5, "forgetting": 0.0, "prior_base": 0.6, "prior_adapted": 0.6,
        **json.loads(os.environ.get("SONAR_STANDIN_METRICS", "{}"))}
    summary = {"model": model, "tokenizer": tokenizer, "steps": args.max_steps,
               "config": {"domain": args.domain, "clips": good, "prior": args.prior, "probes": args.probes},
               "metrics": metrics}
    storage.write_bytes_atomic(storage.join(args.output, "summary.json"), json.dumps(summary).encode())
    print(f"stand-in adapted {args.domain} on {good} clips ({len(bad)} skipped)", file=sys.stderr)


if __name__ == "__main__":
    main()
