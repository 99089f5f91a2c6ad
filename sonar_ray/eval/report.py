"""Evaluation reports: per-model summary, Markdown / CSV / Parquet tables, PNG plots."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pandas as pd

from sonar_ray import storage
from sonar_ray.eval.metrics import adaptation_summary
from sonar_ray.eval.suite import task_scores

# Below this many test clips a task's score moves by ~0.1 between model seeds (SCIENCE-NOTES.md).
MIN_RELIABLE_TEST_CLIPS = 100


def noise_warning(table: pd.DataFrame) -> str:
    """One line naming the tasks too small to call differences of ~0.1 real ("" if none)."""
    small = table.loc[table["n_test"] < MIN_RELIABLE_TEST_CLIPS, ["domain", "task"]].drop_duplicates()
    if small.empty:
        return ""
    names = ", ".join(small["domain"] + "/" + small["task"])
    return (f"Warning: fewer than {MIN_RELIABLE_TEST_CLIPS} test clips in {names}: differences of ~0.1 can be "
            f"probe noise; use more clips, --repeats and several training seeds before calling one real.")


def summarize(table: pd.DataFrame, domain: str | None, base: str | None, prior_domain: str = "prior") -> pd.DataFrame:
    """One row per model: mean primary score per domain; with `domain` and `base` also adaptability
    (score on `domain`), forgetting (abs and relative, vs `base` on the prior tasks) and the mean over
    the other new domains."""
    per_domain = table.groupby(["model", "domain"], sort=False)["score"].mean().unstack("domain")
    rows = []
    for model in table["model"].unique():
        row = {"model": model, **{f"mean_{d}": per_domain.loc[model, d] for d in per_domain.columns}}
        if domain is not None and base is not None:
            base_scores, task_domain = task_scores(table, base)
            s = adaptation_summary(base_scores, task_scores(table, model)[0], task_domain, domain, prior_domain)
            row.update({k: s[k] for k in ("adaptability", "adaptability_gain", "forgetting", "forgetting_relative",
                                          "other_domains_mean")})
        rows.append(row)
    return pd.DataFrame(rows)


def _fmt(v) -> str:
    if isinstance(v, float):
        return "–" if math.isnan(v) else f"{v:.3f}"
    return str(v)


def markdown(df: pd.DataFrame) -> str:
    lines = ["| " + " | ".join(df.columns) + " |", "|" + "|".join("---" for _ in df.columns) + "|"]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def per_task_plot(table: pd.DataFrame) -> bytes:
    """Grouped bars: one group per task, one bar per model, error bars = std over probe repeats."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = table.assign(key=table["domain"] + "/" + table["task"])
    keys = list(dict.fromkeys(table["key"]))
    models = list(table["model"].unique())
    width = 0.8 / len(models)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(keys) * max(1, len(models)) / 2), 4))
    for m, model in enumerate(models):
        sub = table[table["model"] == model].set_index("key")
        ax.bar(np.arange(len(keys)) + (m - (len(models) - 1) / 2) * width, sub.loc[keys, "score"], width,
               yerr=sub.loc[keys, "score_std"], label=model, capsize=2)
    ax.set_xticks(np.arange(len(keys)), keys, rotation=30, ha="right")
    ax.set_ylabel("test score (accuracy; mAP if multi-label)")
    ax.set_ylim(0, 1)
    ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    return buf.getvalue()


def tradeoff_plot(summary: pd.DataFrame, domain: str) -> bytes:
    """Adaptability (x) against forgetting (y), one point per model; lower right is better."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4))
    ax.scatter(summary["adaptability"], summary["forgetting"])
    for row in summary.itertuples(index=False):
        ax.annotate(row.model, (row.adaptability, row.forgetting), textcoords="offset points", xytext=(4, 4))
    ax.axhline(0.0, color="grey", lw=0.8)
    ax.set_xlabel(f"adaptability: mean test score on {domain} tasks")
    ax.set_ylabel("forgetting: base − model on prior tasks")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    return buf.getvalue()


def write_report(table: pd.DataFrame, summary: pd.DataFrame, output: str, domain: str | None,
                 meta: dict) -> dict[str, str]:
    """Write tables, plots and a JSON summary under `output`; returns {what: uri}."""
    out = {name: storage.join(output, name) for name in
           ("results.csv", "results.parquet", "summary.csv", "report.md", "summary.json", "per_task.png")}
    storage.write_bytes_atomic(out["results.csv"], table.to_csv(index=False).encode())
    buf = io.BytesIO()
    table.to_parquet(buf, index=False)
    storage.write_bytes_atomic(out["results.parquet"], buf.getvalue())
    storage.write_bytes_atomic(out["summary.csv"], summary.to_csv(index=False).encode())
    md = (f"# Linear-probe evaluation\n\n{noise_warning(table)}\n\n## Summary\n\n{markdown(summary)}\n\n"
          f"## Per task\n\n{markdown(table)}\n")
    storage.write_bytes_atomic(out["report.md"], md.encode())
    payload = {**meta, "summary": summary.to_dict(orient="records"), "results": table.to_dict(orient="records")}
    storage.write_bytes_atomic(out["summary.json"], json.dumps(payload, indent=2, default=float).encode())
    storage.write_bytes_atomic(out["per_task.png"], per_task_plot(table))
    if "adaptability" in summary.columns:
        out["tradeoff.png"] = storage.join(output, "tradeoff.png")
        storage.write_bytes_atomic(out["tradeoff.png"], tradeoff_plot(summary, domain))
    return out
