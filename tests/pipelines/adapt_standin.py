"""Stand-in for the adaptation pipeline with the same flags and outputs, for watcher tests that are not
about training: `adapt(cfg)` stands in for `sonar_ray.train.adapt.adapt` (the inline runner's call), and
run as a script (the Ray Jobs runner's `python SCRIPT FLAGS`) it parses the flags as `jobs/adapt.py` does.

It really reads the manifest and decodes every listed object (skipping and reporting the ones that
fail, as the data layer does), fails when the base checkpoint is missing, refuses an output that
already holds a run unless --resume (as `fit` does: it marks a started run with `ray/`), dies once
after starting when $SONAR_STANDIN_FAIL_ONCE names a marker file not yet there, and writes model.pt,
tokenizer.pt, summary.json and bad_inputs.json. It does not train: the model is the base, and the
metrics are fixed (adaptability 0.5 as good as its base, forgetting 0.0) unless $SONAR_STANDIN_METRICS
(JSON) overrides some of them — promotion-gate tests force rejection that way or by config.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import soundfile as sf

from sonar_ray import storage
from sonar_ray.config import parse_cli
from sonar_ray.train.config import TrainConfig


def adapt(cfg: TrainConfig) -> None:
    if cfg.probes is None and cfg.evaluate:
        raise ValueError("--probes is missing")  # as the library's adapt(cfg)

    started = storage.join(cfg.output, "ray", "started")
    if storage.exists(started) and not cfg.resume:
        raise FileExistsError(f"{cfg.output} already holds a run: pass --resume to continue it")
    storage.write_bytes_atomic(started, b"")
    marker = os.environ.get("SONAR_STANDIN_FAIL_ONCE")
    if marker and not Path(marker).exists():
        Path(marker).touch()
        sys.exit(1)

    base = storage.read_bytes(cfg.base)  # FileNotFoundError -> the job fails, as adapt(cfg) would
    rows = [json.loads(line) for line in storage.read_bytes(cfg.data).decode().splitlines() if line.strip()]
    good, bad = 0, []
    for row in rows:
        fs, path = storage.filesystem(row["path"])
        try:
            with fs.open(path, "rb") as f:
                sf.read(f)
            good += 1
        except Exception as e:  # noqa: BLE001 - skipped and reported, like the data layer
            bad.append({"path": row["path"], "reason": f"{type(e).__name__}: {e}"})
    model, tokenizer = storage.join(cfg.output, "model.pt"), storage.join(cfg.output, "tokenizer.pt")
    storage.write_bytes_atomic(model, base)
    storage.write_bytes_atomic(tokenizer, base)
    report = {"total": len(bad), "counts": {}, "files": bad}  # the data layer's bad_inputs.json format
    storage.write_bytes_atomic(storage.join(cfg.output, "bad_inputs.json"), json.dumps(report).encode())
    metrics = {} if not cfg.evaluate else {
        "adaptability": 0.5, "adaptability_base": 0.5, "forgetting": 0.0, "prior_base": 0.6, "prior_adapted": 0.6,
        **json.loads(os.environ.get("SONAR_STANDIN_METRICS", "{}"))}
    summary = {"model": model, "tokenizer": tokenizer, "steps": cfg.max_steps,
               "config": {"domain": cfg.domain, "clips": good, "prior": cfg.prior, "probes": cfg.probes},
               "metrics": metrics}
    storage.write_bytes_atomic(storage.join(cfg.output, "summary.json"), json.dumps(summary).encode())
    print(f"stand-in adapted {cfg.domain} on {good} clips ({len(bad)} skipped)", file=sys.stderr)


if __name__ == "__main__":
    adapt(parse_cli(TrainConfig))
