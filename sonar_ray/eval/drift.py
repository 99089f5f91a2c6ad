"""How far an adapted BEATs model moved from its base: representations (linear CKA per encoder layer on the
same clips) and weights (relative change of the parameters both share).
"""

from __future__ import annotations

import numpy as np
import torch

from sonar_ray.eval.embeddings import encode_all_layers, masked_mean

BATCH_SIZE = 16


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA (Kornblith et al. 2019) of (N, D1) and (N, D2) features of the same N clips, in [0, 1].

    Invariant to orthogonal transforms and isotropic scaling of either side. In float64: the terms are
    fourth powers of the features, which lose too much precision in float32.
    """
    if x.ndim != 2 or y.ndim != 2 or len(x) != len(y):
        raise ValueError(f"need (N, D1) and (N, D2) features of the same clips, got {x.shape} and {y.shape}")
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    x = x - x.mean(0)
    y = y - y.mean(0)
    cross = np.linalg.norm(y.T @ x) ** 2
    return float(cross / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)))


def layer_embeddings(model, waves: list[np.ndarray], batch_size: int = BATCH_SIZE) -> list[np.ndarray]:
    """Clips -> one (N, D) array per encoder layer: each layer's output mean-pooled over the valid patches."""
    was_training = model.training
    model.eval()
    per_layer: list[list[np.ndarray]] = []
    try:
        for start in range(0, len(waves), batch_size):
            _, layer_results, padded = encode_all_layers(model, waves[start:start + batch_size])
            pooled = [masked_mean(h, padded).double().cpu().numpy() for h in layer_results]
            per_layer = per_layer or [[] for _ in pooled]
            for out, p in zip(per_layer, pooled):
                out.append(p)
    finally:
        model.train(was_training)
    return [np.concatenate(chunks) for chunks in per_layer]


def cka_per_layer(base, model, waves: list[np.ndarray]) -> list[float]:
    """Linear CKA between `base` and `model` at every encoder layer, on the same clips."""
    return [linear_cka(b, m) for b, m in zip(layer_embeddings(base, waves), layer_embeddings(model, waves))]


def module_prefix(name: str) -> str:
    """Parameter name -> its top-level module: up to the first index ('encoder.layers.0'), else the module path."""
    parts = name.split(".")
    for i, part in enumerate(parts):
        if part.isdigit():
            return ".".join(parts[:i + 1])
    return ".".join(parts[:-1]) or name


def relative_weight_change(base_state: dict[str, torch.Tensor], model_state: dict[str, torch.Tensor]) -> dict:
    """||θ - θ0|| / ||θ0|| over the float parameters both states have with the same shape, overall and per module.

    -> {"total": float, "per_module": {prefix: float}, "skipped": [names whose shapes differ, e.g. a grown head]}.
    """
    diff_sq: dict[str, float] = {}
    base_sq: dict[str, float] = {}
    skipped = []
    for name, theta0 in base_state.items():
        theta = model_state.get(name)
        if theta is None or not theta0.is_floating_point():
            continue
        if theta.shape != theta0.shape:
            skipped.append(name)
            continue
        theta0 = theta0.detach().double().cpu()
        prefix = module_prefix(name)
        diff_sq[prefix] = diff_sq.get(prefix, 0.0) + float(((theta.detach().double().cpu() - theta0) ** 2).sum())
        base_sq[prefix] = base_sq.get(prefix, 0.0) + float((theta0 ** 2).sum())
    per_module = {p: _ratio(diff_sq[p], base_sq[p]) for p in diff_sq}
    return {"total": _ratio(sum(diff_sq.values()), sum(base_sq.values())), "per_module": per_module,
            "skipped": skipped}


def _ratio(diff_sq: float, base_sq: float) -> float:
    # A parameter block that starts at zero (e.g. a bias) and moved has no finite relative change.
    if base_sq == 0.0:
        return 0.0 if diff_sq == 0.0 else float("inf")
    return (diff_sq / base_sq) ** 0.5
