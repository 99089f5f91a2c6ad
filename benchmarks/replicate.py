"""Replicate the paper's claim at demo scale: SONAR gains on a new domain and keeps prior ability,
DCPT forgets, retraining from scratch costs ~10x more. Every model is trained by the library pipeline
the jobs run (`pretrain(cfg)`, `adapt(cfg)`, in-process on one Ray) and scored by the library's frozen
linear-probe protocol (sonar_ray.eval).

    python benchmarks/replicate.py --config benchmarks/replicate_configs/demo.yaml   # round 2, 2 CPU cores
    python benchmarks/replicate.py --smoke                                           # minutes (CI)
    python benchmarks/replicate.py --config benchmarks/replicate_configs/cluster.yaml --ray-address auto

Pipeline (each step skipped when its outputs exist, so an interrupted run continues where it stopped):
1. corpus: the demo corpus of `corpus_scale` under `work` (or `--corpus`);
2. base: pre-training on the prior domain (or `--base`: an existing, e.g. official, checkpoint);
3. single-domain table: per domain in `domains`, per seed: every method of `methods` (DCPT, SONAR,
   SONAR ablations) adapted from the base, and `scratch` (pre-training on prior + new); with `tuned`
   (a tuning/sweep.py recommended.json), also `sonar_tuned`: sonar with the sweep's knobs, the confirmation
   on test of what the sweep chose on valid;
4. sequential stream: `sequence` adapted in order with each of `sequence_methods`; stage 0 is the
   single-domain run of the same method and seed;
5. evaluation: every model on every probe task; `eval_split: valid` scores on the valid split (with a
   quarter of train choosing L2) for protocol design, `test` is the final table;
6. report: results-<split>.json under `work`, a Markdown page and PNG plots (`page`); every claim of
   benchmarks/replication/claims.py decided from paired intervals over test clips and seeds.

The pieces: benchmarks/replication/protocol.py (config, arms, the plan of typed run configs),
runner.py (training, evaluation and distance from the base, resumable), claims.py (decision rules and
verdicts), report.py (tables, plots, page).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing

from benchmarks.replication import report  # noqa: E402
from benchmarks.replication.protocol import SCRATCH, ReplicateConfig, base_run, plan  # noqa: E402
from benchmarks.replication.runner import Evaluator, finished, log, random_init_model, train  # noqa: E402
from sonar_ray import storage  # noqa: E402
from sonar_ray.cluster import init_ray  # noqa: E402
from sonar_ray.config import parse_cli  # noqa: E402

CONFIGS = REPO / "benchmarks" / "replicate_configs"


def main(argv: list[str] | None = None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = "python benchmarks/replicate.py " + " ".join(argv)
    if "--smoke" in argv:  # CI: the smoke config, any other flags still override it
        argv = ["--config", str(CONFIGS / "smoke.yaml"), *[a for a in argv if a != "--smoke"]]
    cfg = parse_cli(ReplicateConfig, argv, description=__doc__)
    if not storage.is_remote(cfg.work):  # Ray workers run elsewhere: local paths must be absolute
        cfg.work = str(Path(cfg.work).resolve())
    t0 = time.time()
    corpus = cfg.corpus or storage.join(cfg.work, f"corpus-{cfg.corpus_scale}")
    if not storage.exists(storage.join(corpus, "manifests", "probes.jsonl")):
        from sonar_ray.demo import generate_corpus

        log(f"generating the {cfg.corpus_scale} demo corpus in {corpus}")
        generate_corpus(corpus, cfg.corpus_scale, seed=0)
    init_ray(cfg.ray_address)
    evaluate = Evaluator(cfg, corpus)

    # --- references: the base model (pre-trained here unless given) and its random-init twin
    if cfg.base:
        base = {"id": "base", "method": "base", "model": cfg.base, "samples_seen": None, "worker_seconds": None}
    else:
        run = base_run(cfg, corpus)
        base = finished(run) or (train(run) if cfg.train else None)
        if base is None:
            raise FileNotFoundError(f"no base model in {run.output}: run with --train or pass --base")
    records = {"base": base, "random_init": {"id": "random_init", "method": "random_init", "samples_seen": 0,
                                             "worker_seconds": 0, "model": random_init_model(cfg, base["model"])}}
    frames = [evaluate(name, rec["model"]) for name, rec in records.items()]

    # --- the plan: train what is not finished, evaluate everything; the page always shows every finished run
    todo, missing = plan(cfg, corpus, base["model"]), []
    for k, run in enumerate(todo, 1):
        rec, fresh = finished(run), False
        if rec is None and cfg.train:
            log(f"run {k}/{len(todo)} ({time.time() - t0:.0f}s so far)")
            rec, fresh = train(run), True
        if rec is None:
            missing.append(run.id)
            continue
        if run.method != SCRATCH:  # a from-scratch model never started at the base
            rec = {**rec, "drift": evaluate.drift(run.id, rec["model"], base["model"], run.domain)}
        records[run.id] = rec
        frames.append(evaluate(run.id, rec["model"]))
        if fresh:
            pending = missing + [r.id for r in todo[k:]]
            report.report(cfg, records, pd.concat(frames, ignore_index=True), command, pending)

    # --- report
    results = report.report(cfg, records, pd.concat(frames, ignore_index=True), command, missing)
    for domain, found in results["checks"].items():
        for c in found:
            log(f"{domain}: {c['verdict'].upper()}: {c['claim']} — {c['evidence']}")
    log(f"finished in {time.time() - t0:.0f}s; {len(missing)} planned runs missing; page {cfg.page}")
    return results


if __name__ == "__main__":
    main()
