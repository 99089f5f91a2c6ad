"""Linear probes on frozen embeddings: one fixed, documented protocol.

Protocol (`fit_probe`):
1. Standardize every feature with the *train* split's mean and std (std floored at 1e-6).
2. Linear model on the standardized features: multinomial logistic regression (softmax, cross-entropy)
   for single-label tasks, one sigmoid per class (binary cross-entropy) for multi-label tasks.
   Loss = mean data loss + l2 / 2 * ||W||^2 (the bias is not penalised). Fit full-batch with L-BFGS
   (strong-Wolfe line search) in float64 from zero weights: the problem is convex and the start fixed,
   so a fit is a deterministic function of its data.
3. Choose l2 from `ProbeConfig.l2_grid` by the primary score on the `valid` split (accuracy, or mAP for
   multi-label); ties go to the stronger regularization. The `test` split is never used for a choice.
4. Refit on `train` with the chosen l2; score on `test`: accuracy and macro-F1 (single-label), mAP and
   macro-F1 at threshold 0.5 (multi-label).
5. Spread: with `repeats > 1`, each repeat r fits on a class-stratified bootstrap resample of the train
   split drawn from seed `seed + r` (steps 1-4 each time) and the report gives mean and std over repeats.
   With `repeats == 1` the exact train split is used and the seed plays no role.
"""

from __future__ import annotations

import dataclasses
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch


@dataclass
class ProbeConfig:
    l2_grid: list[float] = field(default_factory=lambda: [1e-4, 1e-3, 1e-2, 1e-1, 1.0])  # candidate L2 strengths
    max_iter: int = 200  # L-BFGS iterations per fit
    repeats: int = 1  # >1: bootstrap resamples of the train split, report mean and std
    seed: int = 0  # seed of the first bootstrap resample (unused when repeats == 1)


@dataclass
class ProbeData:
    """Embeddings and labels of one task, split as the manifest says.

    Single-label: `y_*` are int class indices (N,). Multi-label: `y_*` are {0,1} matrices (N, C).
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_valid: np.ndarray
    y_valid: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: list[str]

    @property
    def multilabel(self) -> bool:
        return self.y_train.ndim == 2


@dataclass
class ProbeResult:
    accuracy: float  # NaN for multi-label tasks
    macro_f1: float
    mAP: float  # NaN for single-label tasks
    score: float  # primary score: accuracy (single-label) or mAP (multi-label)
    score_std: float  # std of the primary score over repeats (0 with one repeat)
    l2: float  # chosen L2 strength (the first repeat's when repeats > 1)
    n_train: int
    n_valid: int
    n_test: int
    repeats: int
    # Per test clip, 1 where the probe fit on the exact train split is right (single-label; None for
    # multi-label, whose mAP is not a per-clip mean): what a paired bootstrap between models resamples.
    test_correct: list[int] | None = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# ---- metrics -------------------------------------------------------------------------------


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(np.mean(y_true == y_pred))


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean per-class F1 over the classes that occur in `y_true` or `y_pred` (scikit-learn's choice)."""
    scores = []
    for c in np.union1d(y_true, y_pred):
        tp = np.sum((y_pred == c) & (y_true == c))
        denom = np.sum(y_pred == c) + np.sum(y_true == c)
        scores.append(2.0 * tp / denom)
    return float(np.mean(scores))


def multilabel_macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean per-class F1 for {0,1} matrices (N, C), over classes with any positive or prediction."""
    tp = np.sum((y_pred == 1) & (y_true == 1), axis=0)
    denom = np.sum(y_pred, axis=0) + np.sum(y_true, axis=0)
    present = denom > 0
    return float(np.mean(2.0 * tp[present] / denom[present]))


def average_precision(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Area under the precision-recall curve as a step sum: sum_k (R_k - R_{k-1}) P_k."""
    order = np.argsort(-scores, kind="stable")
    hits = y_true[order].astype(np.float64)
    # Tied scores form one threshold: evaluate precision/recall only at the last of each tie.
    last_of_tie = np.r_[scores[order][1:] != scores[order][:-1], True]
    tp = np.cumsum(hits)[last_of_tie]
    n_pred = (np.arange(len(hits)) + 1)[last_of_tie]
    precision, recall = tp / n_pred, tp / hits.sum()
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def mean_average_precision(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Macro mAP over the classes that have at least one positive in `y_true`."""
    aps = [average_precision(y_true[:, c], scores[:, c]) for c in range(y_true.shape[1]) if y_true[:, c].any()]
    return float(np.mean(aps))


# ---- the linear model ----------------------------------------------------------------------


@dataclass
class Standardizer:
    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray) -> "Standardizer":
        return cls(mean=x.mean(0), std=np.maximum(x.std(0), 1e-6))

    def __call__(self, x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy((x - self.mean) / self.std).to(torch.float64)


@contextmanager
def _one_thread():
    """Probe problems are small: intra-op threads only add synchronisation, which cost 100x on a
    loaded 2-core machine (measured). Restores the caller's setting."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


class LinearProbe:
    """Standardize + linear layer, fit by full-batch L-BFGS (see the module docstring)."""

    def __init__(self, l2: float, multilabel: bool, max_iter: int = 200):
        self.l2, self.multilabel, self.max_iter = l2, multilabel, max_iter

    def fit(self, x: np.ndarray, y: np.ndarray, num_classes: int) -> "LinearProbe":
        self.scaler = Standardizer.fit(x)
        xt = self.scaler(x)  # (N, F)
        self.weight = torch.zeros(x.shape[1], num_classes, dtype=torch.float64, requires_grad=True)
        self.bias = torch.zeros(num_classes, dtype=torch.float64, requires_grad=True)
        target = torch.from_numpy(y).to(torch.float64 if self.multilabel else torch.long)
        opt = torch.optim.LBFGS([self.weight, self.bias], lr=1.0, max_iter=self.max_iter,
                                tolerance_grad=1e-7, tolerance_change=1e-10, history_size=20,
                                line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            logits = xt @ self.weight + self.bias  # (N, C)
            if self.multilabel:
                data_loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
            else:
                data_loss = torch.nn.functional.cross_entropy(logits, target)
            loss = data_loss + 0.5 * self.l2 * self.weight.pow(2).sum()
            loss.backward()
            return loss

        with _one_thread():
            opt.step(closure)
        return self

    @torch.no_grad()
    def decision(self, x: np.ndarray) -> np.ndarray:
        return (self.scaler(x) @ self.weight + self.bias).numpy()  # (N, C) logits

    def predict(self, x: np.ndarray) -> np.ndarray:
        logits = self.decision(x)
        return (logits > 0).astype(np.int64) if self.multilabel else logits.argmax(1)


def score(probe: LinearProbe, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """All metrics of a fitted probe on one split; `score` is the primary one."""
    if probe.multilabel:
        m = {"accuracy": float("nan"), "macro_f1": multilabel_macro_f1(y, probe.predict(x)),
             "mAP": mean_average_precision(y, probe.decision(x))}
        return {**m, "score": m["mAP"]}
    pred = probe.predict(x)
    m = {"accuracy": accuracy(y, pred), "macro_f1": macro_f1(y, pred), "mAP": float("nan")}
    return {**m, "score": m["accuracy"]}


# ---- the protocol --------------------------------------------------------------------------


def _select_and_fit(x_tr, y_tr, data: ProbeData, cfg: ProbeConfig) -> tuple[LinearProbe, float]:
    num_classes = len(data.classes)
    best_l2, best = None, -np.inf
    for l2 in sorted(cfg.l2_grid, reverse=True):  # strongest first, so ties keep the stronger one
        probe = LinearProbe(l2, data.multilabel, cfg.max_iter).fit(x_tr, y_tr, num_classes)
        s = score(probe, data.x_valid, data.y_valid)["score"]
        if s > best:
            best_l2, best = l2, s
    return LinearProbe(best_l2, data.multilabel, cfg.max_iter).fit(x_tr, y_tr, num_classes), best_l2


def _bootstrap(y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indices of a class-stratified bootstrap resample (multi-label: plain bootstrap)."""
    if y.ndim == 2:
        return rng.integers(0, len(y), len(y))
    return np.concatenate([rng.choice(np.flatnonzero(y == c), size=int(np.sum(y == c)), replace=True)
                           for c in np.unique(y)])


def fit_probe(data: ProbeData, cfg: ProbeConfig | None = None) -> ProbeResult:
    """Run the protocol of the module docstring on one task's embeddings."""
    cfg = cfg or ProbeConfig()
    if len(data.x_valid) == 0 or len(data.x_test) == 0 or len(data.x_train) == 0:
        raise ValueError("a probe needs non-empty train, valid and test splits")
    runs, chosen, correct = [], [], None
    for r in range(cfg.repeats):
        idx = (np.arange(len(data.y_train)) if cfg.repeats == 1
               else _bootstrap(data.y_train, np.random.default_rng(cfg.seed + r)))
        probe, l2 = _select_and_fit(data.x_train[idx], data.y_train[idx], data, cfg)
        runs.append(score(probe, data.x_test, data.y_test))
        chosen.append(l2)
        if r == 0 and not data.multilabel and cfg.repeats == 1:
            correct = (probe.predict(data.x_test) == data.y_test).astype(int).tolist()
    mean = {k: float(np.mean([run[k] for run in runs])) for k in runs[0]}
    return ProbeResult(**mean, score_std=float(np.std([run["score"] for run in runs])), l2=chosen[0],
                       n_train=len(data.x_train), n_valid=len(data.x_valid), n_test=len(data.x_test),
                       repeats=cfg.repeats, test_correct=correct)


def encode_labels(labels: Sequence) -> tuple[np.ndarray, list[str]]:
    """All of one task's manifest labels -> (targets, sorted class names).

    A list-valued label anywhere makes the task multi-label: targets are then a {0,1} matrix (N, C),
    otherwise int class indices (N,). Encode every split together so they share one class order.
    """
    multilabel = any(isinstance(v, (list, tuple)) for v in labels)
    sets = [[str(c) for c in v] if isinstance(v, (list, tuple)) else [str(v)] for v in labels]
    classes = sorted({c for s in sets for c in s})
    index = {c: i for i, c in enumerate(classes)}
    if not multilabel:
        return np.array([index[s[0]] for s in sets], dtype=np.int64), classes
    y = np.zeros((len(sets), len(classes)), dtype=np.int64)
    for i, s in enumerate(sets):
        y[i, [index[c] for c in s]] = 1
    return y, classes
