"""Trains the replication's runs with the library pipeline (`adapt(cfg)`, `pretrain(cfg)`, in-process
on one Ray) and scores every model with the frozen linear-probe protocol. Resumable: a run whose
`run.json` exists, or an evaluation whose scores are cached under `work`, is not redone."""

from __future__ import annotations

import json
import time

import pandas as pd

from benchmarks.replication.protocol import ReplicateConfig, Run, probe_tasks
from sonar_ray import storage
from sonar_ray.train.adapt import adapt
from sonar_ray.train.pretrain import PretrainConfig, pretrain


def read_json(uri: str) -> dict | None:
    return json.loads(storage.read_bytes(uri)) if storage.exists(uri) else None


def write_json(uri: str, obj) -> None:
    storage.write_bytes_atomic(uri, json.dumps(obj, indent=2, default=float).encode())


def log(msg: str) -> None:
    print(f"[replicate {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def finished(run: Run) -> dict | None:
    """The record of a run trained before (its run.json), else None."""
    return read_json(storage.join(run.output, "run.json"))


def train(run: Run) -> dict:
    """Train one run in-process and record its compute in run.json."""
    cfg = run.config
    log(f"train {run.id}")
    t0 = time.time()
    if isinstance(cfg, PretrainConfig):  # iteration 1, tokenizer, iteration 2 from random init
        base = pretrain(cfg)
        steps = cfg.iter1_steps + cfg.iter2_steps
        rec = {"model": base.model, "steps": steps,
               "samples_seen": steps * cfg.batch_size * cfg.num_workers + cfg.tokenizer_steps * cfg.batch_size}
    else:
        s = adapt(cfg)
        rec = {"model": s.model, "steps": s.steps, "samples_seen": s.samples_seen, "train_seconds": s.wall_seconds,
               "base": cfg.base, "health": s.health,  # held-out masked prediction, before/after, new and prior
               "final_metrics": {k: v for k, v in s.final_metrics.items() if k.startswith(("loss", "acc", "code"))}}
    job_seconds = round(time.time() - t0, 1)
    rec = {"id": run.id, "method": run.method, "domain": run.domain, "seed": run.seed, **rec,
           "job_seconds": job_seconds, "worker_seconds": round(job_seconds * cfg.num_workers, 1)}
    write_json(storage.join(run.output, "run.json"), rec)
    log(f"trained {run.id}: {job_seconds}s, {rec['samples_seen']} samples")
    return rec


def random_init_model(cfg: ReplicateConfig, base: str) -> str:
    """Reference: the base architecture with random weights (seed 0) — what pre-training must beat."""
    import torch

    from sonar_ray.models import beats

    out = storage.join(cfg.work, "runs", "random_init", "model.pt")
    if not storage.exists(out):
        torch.manual_seed(0)
        beats.save_checkpoint(beats.BEATs(beats.load_checkpoint(base).cfg), out)
    return out


class Evaluator:
    """Every probe task's score on `eval_split` for one model, with each test clip's outcome (the paired
    intervals resample them); cached per run under work."""

    def __init__(self, cfg: ReplicateConfig, corpus: str):
        from sonar_ray.eval.probes import ProbeConfig

        self.cfg, self.tasks, self.probe = cfg, probe_tasks(corpus, cfg.eval_split), ProbeConfig(repeats=cfg.probe_repeats)
        self._drift_waves: dict[str, list] = {}

    def __call__(self, run_id: str, model: str) -> pd.DataFrame:
        from sonar_ray.eval import evaluate_models

        uri = storage.join(self.cfg.work, f"eval-{self.cfg.eval_split}", run_id + ".json")
        rows = read_json(uri)
        if rows is None:
            log(f"evaluate {run_id}")
            table = evaluate_models({run_id: model}, self.tasks, probe=self.probe,
                                    cache_dir=storage.join(self.cfg.work, "embeddings"), per_clip=True)
            rows = table.to_dict(orient="records")
            write_json(uri, rows)
        return pd.DataFrame(rows)

    def drift(self, run_id: str, model: str, base: str, domain: str) -> dict:
        """How far `model` moved from `base`: linear CKA per encoder layer on held-out clips (the test clips
        of `domain`'s and the prior's probe tasks, never trained on) and relative weight change; cached."""
        from sonar_ray.eval import drift
        from sonar_ray.models.beats import load_checkpoint

        uri = storage.join(self.cfg.work, "drift", run_id + ".json")
        found = read_json(uri)
        if found is not None:
            return found
        base_model, adapted = load_checkpoint(base), load_checkpoint(model)
        out = {"base": base, **drift.relative_weight_change(base_model.state_dict(), adapted.state_dict())}
        for name in (domain, "prior"):
            out[f"cka_{name}"] = drift.cka_per_layer(base_model, adapted, self._held_out_waves(name))
        write_json(uri, out)
        return out

    def _held_out_waves(self, domain: str) -> list:
        """Up to `drift_clips` test clips of the domain's probe tasks, decoded once per domain."""
        from sonar_ray.data.decode import BadAudio, decode
        from sonar_ray.data.fetch import fetch_bytes

        if domain not in self._drift_waves:
            uris = [u for t in self.tasks if t.domain == domain
                    for u in t.rows.loc[t.rows["split"].isin(("test", "held_out")), "uri"]][:self.cfg.drift_clips]
            waves = []
            for u in uris:
                try:
                    waves.append(decode(fetch_bytes(u)).wave)
                except BadAudio:
                    continue
            self._drift_waves[domain] = waves
        return self._drift_waves[domain]
