"""Score models on probe tasks, and compare an adapted model with its base.

`evaluate_models` gives one row per (model, task); `compare` is the one call `adapt(cfg)` makes at
its end. Embeddings go through `EmbeddingCache`, keyed by checkpoint content, so the base model of a
series of adaptations is embedded once; a model's uncached clips are embedded in one pass over an
`EmbedPool` (one actor start-up per model, not per task).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from sonar_ray import progress
from sonar_ray.eval.cache import DEFAULT_CACHE_DIR, EmbeddingCache, cache_key, checkpoint_digest
from sonar_ray.data.pool import EmbedPool
from sonar_ray.eval.embeddings import EmbeddingSpec, embed_clips
from sonar_ray.eval.metrics import adaptation_summary, paired_bootstrap
from sonar_ray.eval.probes import ProbeConfig, fit_probe
from sonar_ray.eval.tasks import ProbeTask, load_tasks, probe_data

COLUMNS = ["model", "domain", "task", "accuracy", "macro_f1", "mAP", "score", "score_std", "l2",
           "n_train", "n_valid", "n_test", "n_skipped"]


def _embed_tasks(name: str, checkpoint: str, tasks: list[ProbeTask], spec: EmbeddingSpec, pool: EmbedPool,
                 cache: EmbeddingCache) -> list[tuple[np.ndarray, list[str]]]:
    """Every task's (embeddings, errors); the tasks not in the cache are embedded in one pass over the pool."""
    digest = checkpoint_digest(checkpoint)
    keys = [cache_key(digest, spec.cache_fields(), list(task.rows["uri"])) for task in tasks]
    hits = [cache.get(key) for key in keys]
    missing = [i for i, hit in enumerate(hits) if hit is None]
    if missing:
        embeddings, errors = embed_clips(checkpoint, [u for i in missing for u in tasks[i].rows["uri"]], spec, pool,
                                         desc=f"embed {name}")
        start = 0
        for i in missing:
            stop = start + len(tasks[i].rows)
            hits[i] = (embeddings[start:stop], errors[start:stop])
            cache.put(keys[i], *hits[i])
            start = stop
    return hits


def _score_model(name: str, checkpoint: str, tasks: list[ProbeTask], spec: EmbeddingSpec, probe: ProbeConfig,
                 pool: EmbedPool, cache: EmbeddingCache) -> list[dict]:
    rows = []
    embedded = _embed_tasks(name, checkpoint, tasks, spec, pool, cache)
    for task, (embeddings, errors) in zip(progress.bar(tasks, desc=f"probe {name}", unit="task"), embedded):
        usable = np.array([e == "" for e in errors])
        result = fit_probe(probe_data(task, embeddings, usable), probe)
        rows.append({"model": name, "domain": task.domain, "task": task.name, **result.to_dict(),
                     "n_skipped": int((~usable).sum())})
    return rows


def evaluate_models(models: dict[str, str], tasks: list[ProbeTask], spec: EmbeddingSpec | None = None,
                    probe: ProbeConfig | None = None, cache_dir: str = DEFAULT_CACHE_DIR,
                    pool: EmbedPool | None = None, per_clip: bool = False) -> pd.DataFrame:
    """{name: checkpoint} x tasks -> one row per (model, task) with the probe's test metrics; clips are
    embedded on `pool` (default `EmbedPool()`). `per_clip` adds `test_correct` (ProbeResult's) for paired
    comparisons between models on the same test clips."""
    spec, probe, pool = spec or EmbeddingSpec(), probe or ProbeConfig(), pool or EmbedPool()
    cache = EmbeddingCache(cache_dir)
    rows = [r for name, ckpt in models.items() for r in _score_model(name, ckpt, tasks, spec, probe, pool, cache)]
    return pd.DataFrame(rows)[COLUMNS + (["test_correct"] if per_clip else [])]


def task_scores(table: pd.DataFrame, model: str) -> tuple[dict[str, float], dict[str, str]]:
    """A model's {domain/task: primary score} and {domain/task: domain} from an evaluation table."""
    sub = table[table["model"] == model]
    keys = sub["domain"] + "/" + sub["task"]
    return dict(zip(keys, sub["score"].astype(float))), dict(zip(keys, sub["domain"]))


def compare(base_ckpt: str, adapted_ckpt: str, corpus_root: str, domain: str, *, tasks: list[str] | None = None,
            spec: EmbeddingSpec | None = None, probe: ProbeConfig | None = None,
            cache_dir: str = DEFAULT_CACHE_DIR, pool: EmbedPool | None = None, prior_domain: str = "prior",
            other_domains: bool = False, split: str = "test", draws: int = 1000) -> dict:
    """Adaptability and forgetting of `adapted_ckpt` against `base_ckpt` on the corpus's probe tasks.

    Returns `metrics.adaptation_summary` (adaptability, adaptability_base, adaptability_gain,
    forgetting, forgetting_relative, prior_base, prior_adapted, other_domains, other_domains_mean),
    `split` (what was scored) and `per_task`: the evaluation table's rows for both models ("base",
    "adapted"), with per-clip `test_correct`. `tasks`
    ("domain" or "domain/task") defaults to the new domain's and the prior domain's tasks, all that
    adaptability and forgetting need; `other_domains` adds every other domain's (generality, at the cost
    of embedding their clips with both models: half the demo's evaluation time). Given `tasks` must
    include the prior-domain ones. `split`: the split scored (`load_tasks`; `valid` to choose settings).
    Adds paired 95 % intervals over the scored clips (`draws` bootstrap draws), `adaptability_gain_lo/hi`
    and `forgetting_lo/hi`, on the single-label tasks (NaN when there are none).
    """
    if tasks is None and not other_domains:
        tasks = [domain, prior_domain]
    table = evaluate_models({"base": base_ckpt, "adapted": adapted_ckpt}, load_tasks(corpus_root, tasks, split=split),
                            spec, probe, cache_dir, pool, per_clip=True)
    base, task_domain = task_scores(table, "base")
    adapted, _ = task_scores(table, "adapted")
    summary = adaptation_summary(base, adapted, task_domain, domain, prior_domain)
    for name, (d, sign) in {"adaptability_gain": (domain, 1), "forgetting": (prior_domain, -1)}.items():
        _, summary[f"{name}_lo"], summary[f"{name}_hi"] = paired_interval(table, d, sign, draws)
    return {**summary, "split": split, "per_task": table.to_dict(orient="records")}


def paired_interval(table: pd.DataFrame, domain: str, sign: int, draws: int) -> tuple[float, float, float]:
    """Estimate and 95 % interval of sign * (adapted − base), the mean over `domain`'s single-label tasks
    of the per-clip difference in correctness (clips resampled, paired); NaNs without such tasks."""
    rows = table[(table["domain"] == domain) & table["test_correct"].notna()]
    per_task = {m: dict(zip(sub["task"], sub["test_correct"])) for m, sub in rows.groupby("model")}
    shared = sorted(set(per_task.get("base", {})) & set(per_task.get("adapted", {})))
    if not shared:
        return float("nan"), float("nan"), float("nan")
    diff = [sign * (np.asarray(per_task["adapted"][t], float) - np.asarray(per_task["base"][t], float)) for t in shared]
    return paired_bootstrap([diff], draws=draws)
