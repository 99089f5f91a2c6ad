"""Continual-learning metrics, named as the field names them.

Two views of the same idea:
- Sequential streams: an accuracy matrix `R[i, j]` = score on task j after training stage i
  (stage i learns task i; square, T x T). Average accuracy, backward transfer (Lopez-Paz & Ranzato,
  2017), forgetting (Chaudhry et al., 2018) and forward transfer are read off it.
- One adaptation step (base -> adapted on one domain): adaptability = the adapted model's score on the
  adapted domain's tasks; forgetting = base score minus adapted score on the prior-domain tasks,
  absolute and relative to the base score (positive = the adapted model lost ability).

Every function refuses (ValueError) to report forgetting or transfer when an entry it needs was not
evaluated (NaN / missing), rather than averaging over whatever happens to be there.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np


class NotEvaluatedError(ValueError):
    """A metric needs a score that was never measured."""


def _require(values: np.ndarray, what: str) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if np.isnan(values).any():
        raise NotEvaluatedError(f"{what}: not every required task was evaluated (NaN entries)")
    return values


def _square(R) -> np.ndarray:
    R = np.asarray(R, dtype=np.float64)
    if R.ndim != 2 or R.shape[0] != R.shape[1]:
        raise ValueError(f"accuracy matrix must be square (stages x tasks), got shape {R.shape}")
    return R


def accuracy_matrix(scores: Mapping[tuple[int, int], float], num_tasks: int) -> np.ndarray:
    """{(stage, task): score} -> R (T, T), NaN where a pair was not evaluated."""
    R = np.full((num_tasks, num_tasks), np.nan)
    for (i, j), s in scores.items():
        R[i, j] = s
    return R


def average_accuracy(R, stage: int | None = None) -> float:
    """Mean score after `stage` (default: the last) over the tasks seen so far (0..stage)."""
    R = _square(R)
    k = R.shape[0] - 1 if stage is None else stage
    return float(_require(R[k, : k + 1], f"average accuracy at stage {k}").mean())


def backward_transfer(R) -> float:
    """BWT = mean_{j < T-1} (R[T-1, j] - R[j, j]); negative = forgetting."""
    R = _square(R)
    T = R.shape[0]
    if T < 2:
        raise ValueError("backward transfer needs at least two stages")
    final = _require(R[T - 1, : T - 1], "backward transfer")
    learned = _require(np.diag(R)[: T - 1], "backward transfer")
    return float(np.mean(final - learned))


def forgetting_per_task(R, stage: int | None = None) -> np.ndarray:
    """f_j at `stage` k = max_{l < k} R[l, j] - R[k, j] for each prior task j < k (Chaudhry et al.)."""
    R = _square(R)
    k = R.shape[0] - 1 if stage is None else stage
    if k < 1:
        raise ValueError("forgetting needs at least one earlier stage")
    # Task j is seen from stage j on: its best earlier score is over stages j..k-1.
    needed = np.array([R[l, j] for j in range(k) for l in range(j, k + 1)])
    _require(needed, f"forgetting at stage {k}")
    return np.array([R[j:k, j].max() - R[k, j] for j in range(k)])


def forgetting(R, stage: int | None = None) -> float:
    """Average forgetting at `stage` (default: the last) over its prior tasks."""
    return float(forgetting_per_task(R, stage).mean())


def forgetting_per_stage(R) -> list[float]:
    """Average forgetting after each stage 1..T-1."""
    return [forgetting(R, k) for k in range(1, _square(R).shape[0])]


def forward_transfer(R, baseline) -> float:
    """FWT = mean_{j >= 1} (R[j-1, j] - b_j), b = scores of a reference model (e.g. random init)."""
    R = _square(R)
    T = R.shape[0]
    if T < 2:
        raise ValueError("forward transfer needs at least two stages")
    before = _require(np.array([R[j - 1, j] for j in range(1, T)]), "forward transfer")
    b = _require(np.asarray(baseline, dtype=np.float64)[1:T], "forward transfer baseline")
    return float(np.mean(before - b))


# ---- one adaptation step -------------------------------------------------------------------


def adaptation_summary(base: Mapping[str, float], adapted: Mapping[str, float],
                       task_domain: Mapping[str, str], domain: str, prior_domain: str = "prior") -> dict:
    """Adaptability and forgetting of one adapted model against its base.

    `base` / `adapted`: {task key: primary score}; `task_domain`: {task key: domain}. Every prior-domain
    task must be scored for both models, else forgetting is refused. Other new domains are reported as
    means of adapted-model scores (with the base's for reference), to show generality.
    """
    by_domain: dict[str, list[str]] = {}
    for task, d in task_domain.items():
        by_domain.setdefault(d, []).append(task)

    def mean(scores: Mapping[str, float], tasks: list[str], what: str) -> float:
        return float(_require(np.array([scores.get(t, np.nan) for t in tasks]), what).mean())

    prior = sorted(by_domain.get(prior_domain, []))
    if not prior:
        raise NotEvaluatedError(f"forgetting: no {prior_domain!r}-domain task was evaluated")
    new = sorted(by_domain.get(domain, []))
    if not new:
        raise NotEvaluatedError(f"adaptability: no {domain!r}-domain task was evaluated")
    prior_base = mean(base, prior, "forgetting (base model)")
    prior_adapted = mean(adapted, prior, "forgetting (adapted model)")
    forgetting_abs = prior_base - prior_adapted
    out = {
        "domain": domain,
        "adaptability": mean(adapted, new, "adaptability"),
        "adaptability_base": mean(base, new, "adaptability (base model)"),
        "forgetting": forgetting_abs,
        "forgetting_relative": forgetting_abs / prior_base if prior_base else float("nan"),
        "prior_base": prior_base,
        "prior_adapted": prior_adapted,
        "other_domains": {},
    }
    out["adaptability_gain"] = out["adaptability"] - out["adaptability_base"]
    for d in sorted(set(by_domain) - {domain, prior_domain}):
        tasks = sorted(by_domain[d])
        out["other_domains"][d] = {"adapted": mean(adapted, tasks, d), "base": mean(base, tasks, d)}
    others = [v["adapted"] for v in out["other_domains"].values()]
    out["other_domains_mean"] = float(np.mean(others)) if others else float("nan")
    return out


# ---- intervals and verdicts ------------------------------------------------------------------

def paired_bootstrap(per_clip: list[list[np.ndarray]], draws: int = 2000, level: float = 0.95,
                     seed: int = 0) -> tuple[float, float, float]:
    """Estimate and percentile interval of the mean over seeds of the mean over tasks of the mean over
    test clips of a per-clip quantity, e.g. `correct_model - correct_base` (a paired score difference).

    `per_clip[s][t]` holds seed s's values on task t's test clips; every seed is scored on the same
    clips, so one draw resamples each task's clips once (the same indices for every seed: the pairing
    survives) and the seeds with replacement. Both sources of noise, test clips and training seeds,
    end up in the interval."""
    arrays = [[np.asarray(task, dtype=np.float64) for task in seed_tasks] for seed_tasks in per_clip]
    if not arrays or not arrays[0]:
        raise NotEvaluatedError("paired_bootstrap: no seeds or no tasks")
    sizes = [len(task) for task in arrays[0]]
    if any([len(task) for task in seed_tasks] != sizes for seed_tasks in arrays) or 0 in sizes:
        raise ValueError(f"paired_bootstrap: every seed needs the same non-empty test clips per task, got sizes "
                         f"{[[len(t) for t in s] for s in arrays]}")
    values = [np.stack([seed_tasks[t] for seed_tasks in arrays]) for t in range(len(sizes))]  # per task: (S, N_t)
    estimate = float(np.mean([v.mean() for v in values]))
    rng = np.random.default_rng(seed)
    n_seeds, stats = len(arrays), np.empty(draws)
    for d in range(draws):
        seeds = rng.integers(0, n_seeds, n_seeds)
        stats[d] = np.mean([v[seeds][:, rng.integers(0, v.shape[1], v.shape[1])].mean() for v in values])
    tail = (1.0 - level) / 2 * 100
    lo, hi = np.percentile(stats, [tail, 100 - tail])
    return estimate, float(lo), float(hi)


def verdict(interval: tuple[float, float, float], above: float = 0.0) -> str:
    """`holds` when the whole interval lies above `above`, `fails` when it lies at or below it, else
    `undecided`: a claim is neither confirmed nor refuted by noise the size of the effect."""
    _, lo, hi = interval
    return "holds" if lo > above else "fails" if hi <= above else "undecided"
