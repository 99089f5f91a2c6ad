"""The adaptation pipeline, as one library call: `adapt(cfg) -> AdaptResult`.

What `jobs/adapt.py`, the sweep's trials (`sonar_ray.tuning`), the replication (`benchmarks/replication`)
and the watcher's inline runner all run: resolve inputs -> check them -> inspect the data (bad-input
report) -> Ray Train fit -> frozen-probe evaluation against the base -> `<output>/summary.json`.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass

from sonar_ray import storage
from sonar_ray.cluster import init_ray
from sonar_ray.data import bad_input_report, prepare_data
from sonar_ray.train import inputs
from sonar_ray.train.config import TrainConfig
from sonar_ray.train.driver import check_inputs, fit

SUMMARY = "summary.json"


@dataclass
class AdaptResult:
    """One adaptation; its fields, in order, are the keys of `<output>/summary.json`."""

    output: str
    model: str              # model.pt (official BEATs format)
    tokenizer: str          # tokenizer.pt
    predictor: str          # predictor.pt (the label predictor the next adaptation distils from)
    steps: int
    samples_seen: int
    wall_seconds: float     # Ray Train fit
    worker_seconds: float   # wall time x workers
    final_metrics: dict     # last metrics.jsonl row
    first_metrics: dict     # first metrics.jsonl row
    health: dict | None     # held-out masked prediction {"before"|"after": {"new"|"prior": ...}}
    config: TrainConfig     # what ran (method presets and inputs filled in)
    metrics: dict           # frozen-probe evaluation vs the base (adaptability, forgetting, ...); {} without it
    data: dict              # new_clips, prior_clips, replay strata statistics, skipped {reason: n}
    total_seconds: float

    def summary(self) -> dict:
        return asdict(self)  # the config as a plain dict, as run_config.json holds it


def adapt(cfg: TrainConfig) -> AdaptResult:
    """Adapt `cfg.base` to `cfg.domain`; writes model files, metrics.jsonl, bad_inputs.json, summary.json."""
    t0 = time.time()
    # --- config: demo inputs only for a demo run, else every needed input named (one-line error)
    cfg, paths = inputs.resolve(cfg)
    print(f"[adapt] {cfg.method} on {cfg.domain!r}: base={cfg.base} -> {cfg.output}", flush=True)
    check_inputs(cfg, paths)  # fail on a missing / incompatible starting model before any work
    init_ray(cfg.ray_address)  # before Ray Data starts one of its own (which would let Ray's logs onto the console)
    cfg.embed_pool.check_cluster("adapt")  # the evaluation pass comes after training: fail before it, not there

    # --- data: inspect every file once (cached), count what was skipped
    data_cfg = inputs.data_config(cfg)
    prepared = prepare_data(data_cfg)
    bad = bad_input_report(prepared.bad)  # driver.fit writes it as bad_inputs.json
    print(f"[adapt] data: {len(prepared.new)} new clips, {len(prepared.prior)} prior clips in "
          f"{len(prepared.shares)} strata, {bad['total']} skipped {bad['counts']}", flush=True)

    # --- model + loop: Ray Train workers run sonar_ray.train.loop.train_loop_per_worker
    run = fit(cfg, paths, data_cfg, prepared)

    # --- evaluation: frozen linear probes, adapted vs base
    metrics = {}
    if cfg.evaluate and cfg.base and cfg.probes:
        from sonar_ray.eval.suite import compare

        metrics = compare(cfg.base, run.model, cfg.probes, cfg.domain, other_domains=cfg.eval_other_domains,
                          split=cfg.eval_split, pool=cfg.embed_pool)
        metrics.pop("per_task", None)

    # --- report
    result = AdaptResult(**asdict(run), config=cfg, metrics=metrics,
                         data={"new_clips": len(prepared.new), "prior_clips": len(prepared.prior),
                               **prepared.replay, "skipped": bad["counts"]},
                         total_seconds=round(time.time() - t0, 1))
    storage.write_bytes_atomic(storage.join(cfg.output, SUMMARY), json.dumps(result.summary(), indent=2).encode())
    return result


def summary_table(r: AdaptResult) -> str:
    """The run in a short table: probe scores base vs adapted, held-out health, losses, data, outputs."""
    first, last, m = r.first_metrics, r.final_metrics, r.metrics
    rows = []
    if m:
        rows += [(f"probes ({m.get('split', 'test')} split)", "base", "adapted", "change"),
                 (f"{r.config.domain} (adaptability)", f"{m['adaptability_base']:.3f}", f"{m['adaptability']:.3f}",
                  f"{m['adaptability'] - m['adaptability_base']:+.3f}"),
                 ("prior tasks", f"{m['prior_base']:.3f}", f"{m['prior_adapted']:.3f}",
                  f"{m['prior_adapted'] - m['prior_base']:+.3f}  (forgetting {m['forgetting']:+.3f}, "
                  f"relative {m['forgetting_relative']:+.1%})")]
    health = r.health or {}
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
    width = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = ["", f"== {r.config.method} adaptation to {r.config.domain!r} " + "=" * 40]
    lines += [f"{row[0]:<{width[0]}}  {row[1]:>{width[1]}}  {row[2]:>{width[2]}}  {row[3]}".rstrip() for row in rows]
    lines += [f"steps {r.steps} ({r.samples_seen} clips), train {r.wall_seconds:.0f} s, "
              f"total {r.total_seconds:.0f} s; data {r.data['new_clips']} new + {r.data['prior_clips']} "
              f"prior clips, skipped {r.data['skipped'] or 'none'}",
              f"outputs: {r.output} (model.pt, tokenizer.pt, predictor.pt, summary.json, metrics.jsonl, "
              "bad_inputs.json)", ""]
    return "\n".join(lines)
