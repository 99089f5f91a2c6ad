"""Strata of the prior set and their relevance to the new domain.

Strata: seeded k-means over clip embeddings (or a given `stratum` column). Relevance of stratum s:
softmax_s(cos(centroid_s, new_centroid) / T). Share of replay slots for stratum s:
min_share + (1 - S * min_share) * relevance_s, so every stratum keeps at least `min_share`.
"""

from __future__ import annotations

import numpy as np


def _normalize(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def kmeans(x: np.ndarray, k: int, seed: int, iters: int = 50) -> np.ndarray:
    """Cosine k-means (k-means++ init, Lloyd steps) on rows of `x`; returns labels 0..k'-1 (empty clusters dropped)."""
    x = _normalize(np.asarray(x, dtype=np.float64))
    k = min(k, len(x))
    rng = np.random.default_rng(seed)
    centers = [x[rng.integers(len(x))]]
    for _ in range(1, k):
        d = np.clip(2 - 2 * (x @ np.asarray(centers).T).max(axis=1), 0, None)  # (N,) squared distance to nearest
        centers.append(x[rng.choice(len(x), p=d / d.sum())] if d.sum() > 0 else x[rng.integers(len(x))])
    centers = np.asarray(centers)
    labels = np.zeros(len(x), dtype=np.int64)
    for _ in range(iters):
        new = np.argmax(x @ centers.T, axis=1)  # (N,) nearest by cosine
        if _ and np.array_equal(new, labels):
            break
        labels = new
        for c in range(k):
            if (labels == c).any():
                centers[c] = _normalize(x[labels == c].mean(0))
    return np.unique(labels, return_inverse=True)[1]


def relevance_shares(prior_emb: np.ndarray, strata: np.ndarray, new_emb: np.ndarray,
                     temperature: float, min_share: float) -> np.ndarray:
    """Replay share per stratum (index = stratum id 0..S-1), summing to 1."""
    num = int(strata.max()) + 1
    if num * min_share > 1:
        raise ValueError(f"min_share={min_share} x {num} strata exceeds 1")
    prior_emb, new_emb = _normalize(prior_emb), _normalize(new_emb)
    centroids = _normalize(np.stack([prior_emb[strata == s].mean(0) for s in range(num)]))  # (S, D)
    new_centroid = _normalize(new_emb.mean(0))  # (D,)
    logits = centroids @ new_centroid / temperature  # (S,)
    relevance = np.exp(logits - logits.max())
    relevance /= relevance.sum()
    return min_share + (1 - num * min_share) * relevance
