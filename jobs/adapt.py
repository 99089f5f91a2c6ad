r"""Adapt a BEATs model to a new domain with SONAR (default) or the DCPT baseline.

    python jobs/adapt.py --domain speech                      # demo corpus + demo base model
    python jobs/adapt.py --domain music --method dcpt --max-steps 300
    ray job submit --address http://HEAD:8265 -- python jobs/adapt.py --domain speech \
        --data s3://bucket/incoming/speech/ --prior s3://bucket/prior/ --probes s3://bucket/eval/ \
        --base s3://bucket/models/base/model.pt --output s3://bucket/runs/speech-001 --num-workers 8 --use-gpu

The demo corpus and demo base model are used only by the bare demo command (none of --data, --prior,
--probes, --base given) or with --demo; any other run names each input it needs (--prior unless
--replay-ratio 0 or --method dcpt, --probes unless --no-evaluate, --base unless --method scratch) or
stops at once with one line naming the missing flag. --method dcpt and scratch fix the knobs they do
not use (replay, distillation, codebook) to off; giving one of them another value is an error.

Reads top to bottom: config -> data -> model + loop (Ray Train) -> evaluation -> report.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from sonar_ray import storage
from sonar_ray.cluster import init_ray
from sonar_ray.config import parse_cli, run_job, to_dict
from sonar_ray.data import prepare_data, write_bad_input_report
from sonar_ray.train import inputs
from sonar_ray.train.config import TrainConfig
from sonar_ray.train.driver import check_inputs, fit


def main(argv: list[str] | None = None) -> dict:
    t0 = time.time()
    # --- config: flags / --config file, then the demo defaults for anything not given
    cfg, paths = inputs.resolve(parse_cli(TrainConfig, argv, description=__doc__))
    print(f"[adapt] {cfg.method} on {cfg.domain!r}: base={cfg.base} -> {cfg.output}", flush=True)
    check_inputs(cfg, paths)  # fail on a missing / incompatible starting model before any work
    init_ray(cfg.ray_address)  # before Ray Data starts one of its own (which would let Ray's logs onto the console)

    # --- data: inspect every file once (cached), report what was skipped
    data_cfg = inputs.data_config(cfg)
    prepared = prepare_data(data_cfg)
    bad = write_bad_input_report(cfg.output, prepared.bad)
    print(f"[adapt] data: {len(prepared.new)} new clips, {len(prepared.prior)} prior clips in "
          f"{len(prepared.shares)} strata, {bad['total']} skipped {bad['counts']}", flush=True)

    # --- model + loop: Ray Train workers run sonar_ray.train.loop.train_loop_per_worker
    run = fit(cfg, paths, data_cfg, prepared)

    # --- evaluation: frozen linear probes, adapted vs base
    metrics = {}
    if cfg.evaluate and cfg.base and cfg.probes:
        from sonar_ray.eval.suite import compare

        metrics = compare(cfg.base, run.model, cfg.probes, cfg.domain, other_domains=cfg.eval_other_domains)
        metrics.pop("per_task", None)

    # --- report
    summary = {**asdict(run), "config": to_dict(cfg), "metrics": metrics,
               "data": {"new_clips": len(prepared.new), "prior_clips": len(prepared.prior),
                        **prepared.replay, "skipped": bad["counts"]},
               "total_seconds": round(time.time() - t0, 1)}
    storage.write_bytes_atomic(storage.join(cfg.output, "summary.json"), json.dumps(summary, indent=2).encode())
    print_summary(summary)
    return summary


def print_summary(s: dict) -> None:
    """The run in a short table: probe scores base vs adapted, then compute, losses, data, outputs."""
    cfg, first, last, m = s["config"], s["first_metrics"], s["final_metrics"], s["metrics"]
    rows = []
    if m:
        rows += [("probes", "base", "adapted", "change"),
                 (f"{cfg['domain']} (adaptability)", f"{m['adaptability_base']:.3f}", f"{m['adaptability']:.3f}",
                  f"{m['adaptability'] - m['adaptability_base']:+.3f}"),
                 ("prior tasks", f"{m['prior_base']:.3f}", f"{m['prior_adapted']:.3f}",
                  f"{m['prior_adapted'] - m['prior_base']:+.3f}  (forgetting {m['forgetting']:+.3f}, "
                  f"relative {m['forgetting_relative']:+.1%})")]
    health = s.get("health") or {}
    if health.get("after"):
        rows += [("held-out masked prediction", "base", "adapted", "change")]
        for src, after in health["after"].items():
            before = health["before"].get(src, {})
            for key, label in (("info_gain", "information gain (nats)"), ("masked_accuracy", "masked accuracy")):
                was = f"{before[key]:.3f}" if key in before else "-"
                change = f"{after[key] - before[key]:+.3f}" if key in before else ""
                rows.append((f"{src}: {label}", was, f"{after[key]:.3f}", change))
    rows += [("losses", "first step", "last step", "change")]
    rows += [(k, f"{first[k]:.3f}", f"{last[k]:.3f}", f"{last[k] - first[k]:+.3f}")
             for k in ("loss_mlm", "loss_tok", "loss_model") if k in last and k in first]
    width = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = ["", f"== {cfg['method']} adaptation to {cfg['domain']!r} " + "=" * 40]
    lines += [f"{r[0]:<{width[0]}}  {r[1]:>{width[1]}}  {r[2]:>{width[2]}}  {r[3]}".rstrip() for r in rows]
    lines += [f"steps {s['steps']} ({s['samples_seen']} clips), train {s['wall_seconds']:.0f} s, "
              f"total {s['total_seconds']:.0f} s; data {s['data']['new_clips']} new + {s['data']['prior_clips']} "
              f"prior clips, skipped {s['data']['skipped'] or 'none'}",
              f"outputs: {s['output']} (model.pt, tokenizer.pt, predictor.pt, summary.json, metrics.jsonl, "
              "bad_inputs.json)", ""]
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    run_job(main, "adapt")
