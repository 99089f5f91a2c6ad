"""Probe tasks from a corpus's labeled manifest (`<root>/manifests/probes.jsonl`).

A task is all rows sharing (domain, task); its key is "domain/task". Rows carry `split` in
train|valid|test and a `label` (a list-valued label makes the task multi-label).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from sonar_ray import storage
from sonar_ray.data.manifest import PROBE_MANIFEST, read_manifest
from sonar_ray.eval.probes import ProbeData, encode_labels

SPLITS = ("train", "valid", "test")
# Which split a probe is scored on: `test` for reported numbers; `valid` to choose among models or
# settings (a sweep, protocol design) without ever reading a test label.
EVAL_SPLITS = ("test", "valid")


@dataclass
class ProbeTask:
    domain: str
    name: str
    rows: pd.DataFrame  # uri, label, split (+ the manifest's other columns), in manifest order

    @property
    def key(self) -> str:
        return f"{self.domain}/{self.name}"


def _selected(domain: str, task: str, select: list[str]) -> bool:
    return not select or domain in select or f"{domain}/{task}" in select


def load_tasks(corpus_root: str, select: list[str] | None = None, split: str = "test") -> list[ProbeTask]:
    """Every task in the probe manifest, or those named in `select` ("domain" or "domain/task"),
    scored on `split` (EVAL_SPLITS; see `score_on_valid`)."""
    if split not in EVAL_SPLITS:
        raise ValueError(f"split {split!r}: expected one of {EVAL_SPLITS}")
    select = list(select or [])
    df = read_manifest(storage.join(corpus_root, PROBE_MANIFEST), root=corpus_root)
    missing = {"domain", "task", "label", "split"} - set(df.columns)
    if missing:
        raise ValueError(f"probe manifest lacks columns {sorted(missing)}")
    bad = sorted(set(df["split"]) - set(SPLITS))
    if bad:
        raise ValueError(f"probe manifest has unknown splits {bad}; expected {SPLITS}")
    tasks = [ProbeTask(str(d), str(t), rows.reset_index(drop=True))
             for (d, t), rows in df.groupby(["domain", "task"], sort=True) if _selected(str(d), str(t), select)]
    known = {t.key for t in tasks} | {t.domain for t in tasks}
    unknown = [s for s in select if s not in known]
    if unknown:
        raise ValueError(f"--tasks {unknown} match nothing in {corpus_root}; tasks: {sorted(t.key for t in tasks)}")
    return [score_on_valid(t) for t in tasks] if split == "valid" else tasks


def score_on_valid(task: ProbeTask) -> ProbeTask:
    """The task with valid playing test and every 4th train clip of each class choosing L2 (a class with
    2-3 train clips gives its last one); the test rows stay (same rows, same embedding cache keys) as
    `held_out`, which no probe reads."""
    rows = task.rows.copy()
    train = rows["split"] == "train"
    by_class = rows[train].groupby(rows.loc[train, "label"].astype(str))
    rank, size = by_class.cumcount().to_numpy(), by_class["split"].transform("size").to_numpy()
    choose = (rank % 4 == 3) | ((size >= 2) & (size < 4) & (rank == size - 1))
    rows["split"] = rows["split"].map({"train": "train", "valid": "test", "test": "held_out"})
    rows.loc[rows.index[train][choose], "split"] = "valid"
    return ProbeTask(task.domain, task.name, rows)


def probe_data(task: ProbeTask, embeddings: np.ndarray, usable: np.ndarray) -> ProbeData:
    """Split a task's embeddings (N, D) by the manifest, dropping rows where `usable` is False."""
    y, classes = encode_labels(list(task.rows["label"]))
    split = task.rows["split"].to_numpy()
    parts = [(embeddings[(split == s) & usable], y[(split == s) & usable]) for s in SPLITS]
    return ProbeData(*parts[0], *parts[1], *parts[2], classes=classes)
