"""Score models on probe tasks, and compare an adapted model with its base.

`evaluate_models` gives one row per (model, task); `compare` is the one call `adapt(cfg)` makes at
its end. Embeddings go through `EmbeddingCache`, keyed by checkpoint content, so the base model of a
series of adaptations is embedded once.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from sonar_ray import progress
from sonar_ray.eval.cache import DEFAULT_CACHE_DIR, EmbeddingCache, cache_key, checkpoint_digest
from sonar_ray.eval.embeddings import ClipEmbedder, EmbeddingSpec, embed_clips
from sonar_ray.eval.metrics import adaptation_summary
from sonar_ray.eval.probes import ProbeConfig, fit_probe
from sonar_ray.eval.tasks import ProbeTask, load_tasks, probe_data

COLUMNS = ["model", "domain", "task", "accuracy", "macro_f1", "mAP", "score", "score_std", "l2",
           "n_train", "n_valid", "n_test", "n_skipped"]


def _score_model(name: str, checkpoint: str, tasks: list[ProbeTask], spec: EmbeddingSpec, probe: ProbeConfig,
                 cache: EmbeddingCache, use_ray: bool) -> list[dict]:
    digest = checkpoint_digest(checkpoint)
    embedder = None  # loaded on the first cache miss only
    rows = []
    for task in progress.bar(tasks, desc=f"evaluate {name}", unit="task"):
        uris = list(task.rows["uri"])
        key = cache_key(digest, spec.cache_fields(), uris)
        hit = cache.get(key)
        if hit is None:
            if not use_ray and embedder is None:
                embedder = ClipEmbedder(checkpoint, spec)
            hit = embed_clips(checkpoint, uris, spec, use_ray=use_ray, embedder=embedder)
            cache.put(key, *hit)
        embeddings, errors = hit
        usable = np.array([e == "" for e in errors])
        result = fit_probe(probe_data(task, embeddings, usable), probe)
        rows.append({"model": name, "domain": task.domain, "task": task.name, **result.to_dict(),
                     "n_skipped": int((~usable).sum())})
    return rows


def evaluate_models(models: dict[str, str], tasks: list[ProbeTask], spec: EmbeddingSpec | None = None,
                    probe: ProbeConfig | None = None, cache_dir: str = DEFAULT_CACHE_DIR,
                    use_ray: bool = False) -> pd.DataFrame:
    """{name: checkpoint} x tasks -> one row per (model, task) with the probe's test metrics."""
    spec, probe, cache = spec or EmbeddingSpec(), probe or ProbeConfig(), EmbeddingCache(cache_dir)
    rows = [r for name, ckpt in models.items() for r in _score_model(name, ckpt, tasks, spec, probe, cache, use_ray)]
    return pd.DataFrame(rows)[COLUMNS]


def task_scores(table: pd.DataFrame, model: str) -> tuple[dict[str, float], dict[str, str]]:
    """A model's {domain/task: primary score} and {domain/task: domain} from an evaluation table."""
    sub = table[table["model"] == model]
    keys = sub["domain"] + "/" + sub["task"]
    return dict(zip(keys, sub["score"].astype(float))), dict(zip(keys, sub["domain"]))


def compare(base_ckpt: str, adapted_ckpt: str, corpus_root: str, domain: str, *, tasks: list[str] | None = None,
            spec: EmbeddingSpec | None = None, probe: ProbeConfig | None = None,
            cache_dir: str = DEFAULT_CACHE_DIR, use_ray: bool = False, prior_domain: str = "prior",
            other_domains: bool = False) -> dict:
    """Adaptability and forgetting of `adapted_ckpt` against `base_ckpt` on the corpus's probe tasks.

    Returns `metrics.adaptation_summary` (adaptability, adaptability_base, adaptability_gain,
    forgetting, forgetting_relative, prior_base, prior_adapted, other_domains, other_domains_mean)
    plus `per_task`: the evaluation table's rows for both models ("base", "adapted"). `tasks`
    ("domain" or "domain/task") defaults to the new domain's and the prior domain's tasks, all that
    adaptability and forgetting need; `other_domains` adds every other domain's (generality, at the cost
    of embedding their clips with both models: half the demo's evaluation time). Given `tasks` must
    include the prior-domain ones.
    """
    if tasks is None and not other_domains:
        tasks = [domain, prior_domain]
    table = evaluate_models({"base": base_ckpt, "adapted": adapted_ckpt}, load_tasks(corpus_root, tasks),
                            spec, probe, cache_dir, use_ray)
    base, task_domain = task_scores(table, "base")
    adapted, _ = task_scores(table, "adapted")
    summary = adaptation_summary(base, adapted, task_domain, domain, prior_domain)
    return {**summary, "per_task": table.to_dict(orient="records")}
