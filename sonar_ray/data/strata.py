"""Strata of the prior set, their relevance to the new domain, and the replay share of each.

Strata: seeded k-means over clip embeddings (or a given `stratum` column). Embeddings are centred
on the prior set's mean first, so cosines measure where a clip lies *within* the prior set rather
than the direction every audio embedding shares.

Relevance of stratum s: r_s = max_m cos(centroid_s, new_centroid_m) over M new-domain centroids
(k-means modes of the new domain, so a stratum close to one mode of it counts).

Share of replay slots of stratum s with n_s of the N prior clips:

    share_s = (n_s / N) * clip(c * exp(r_s / T), lo, hi),   c such that the shares sum to 1,

i.e. each clip is replayed f_s = clip(...) times as often as under uniform replay, never more than
`hi` (max_oversample) and never less than `lo` (min_oversample) times. Clips whose embedding is not
finite take no part in centroids (prepare_data skips them as bad input).
"""

from __future__ import annotations

import numpy as np


def _normalize(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def finite_rows(x: np.ndarray) -> np.ndarray:
    """(N,) bool: rows of `x` (N, D) with every entry finite."""
    return np.isfinite(np.asarray(x, dtype=np.float64)).all(axis=1)


def kmeans(x: np.ndarray, k: int, seed: int, iters: int = 50) -> np.ndarray:
    """Cosine k-means (k-means++ init, Lloyd steps) on rows of `x`; returns labels 0..k'-1 (empty clusters dropped)."""
    x = np.asarray(x, dtype=np.float64)
    if not finite_rows(x).all():
        raise ValueError("kmeans needs finite embeddings (skip clips whose embedding is NaN/inf first)")
    x = _normalize(x)
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


def stratum_relevance(prior_emb: np.ndarray, strata: np.ndarray, new_emb: np.ndarray,
                      new_modes: int, seed: int = 0) -> np.ndarray:
    """(S,) r_s = max over the new domain's k-means modes of cos(centroid_s, mode), in prior-centred space."""
    prior_emb, new_emb = np.asarray(prior_emb, np.float64), np.asarray(new_emb, np.float64)
    ok_prior, ok_new = finite_rows(prior_emb), finite_rows(new_emb)
    if not ok_new.any():
        raise ValueError("no new-domain clip has a finite embedding")
    centre = prior_emb[ok_prior].mean(0)  # (D,)
    prior_emb, new_emb, strata = prior_emb[ok_prior] - centre, new_emb[ok_new] - centre, np.asarray(strata)[ok_prior]
    num = int(np.asarray(strata).max()) + 1
    if any(not (strata == s).any() for s in range(num)):
        raise ValueError("every stratum needs at least one clip with a finite embedding")
    centroids = _normalize(np.stack([_normalize(prior_emb[strata == s]).mean(0) for s in range(num)]))  # (S, D)
    modes = kmeans(new_emb, new_modes, seed)  # (Nn,) mode of each new clip
    mode_centroids = _normalize(np.stack([_normalize(new_emb[modes == m]).mean(0) for m in range(modes.max() + 1)]))
    return (centroids @ mode_centroids.T).max(axis=1)  # (S,)


def oversampling_shares(sizes: np.ndarray, relevance: np.ndarray, temperature: float,
                        min_oversample: float, max_oversample: float) -> np.ndarray:
    """(S,) shares (n_s/N) * clip(c * exp(r_s/T), lo, hi) summing to 1; c found by bisection (the sum grows with c)."""
    if not min_oversample <= 1.0 <= max_oversample:
        raise ValueError(f"need min_oversample <= 1 <= max_oversample, got {min_oversample}, {max_oversample}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    uniform = np.asarray(sizes, np.float64) / np.sum(sizes)  # (S,)
    relevance = np.asarray(relevance, np.float64)
    if not np.isfinite(relevance).all():
        raise ValueError(f"stratum relevance must be finite, got {relevance}")
    weight = np.exp((relevance - relevance.max()) / temperature)  # (S,) in (0, 1]

    def total(log_c: float) -> float:
        return float(uniform @ np.clip(np.exp(log_c) * weight, min_oversample, max_oversample))

    lo, hi = np.log(min_oversample) if min_oversample > 0 else -800.0, np.log(max_oversample) - np.log(weight.min())
    for _ in range(200):  # total(lo) <= 1 <= total(hi)
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if total(mid) < 1.0 else (lo, mid)
    shares = uniform * np.clip(np.exp(hi) * weight, min_oversample, max_oversample)
    return shares / shares.sum()


def replay_diagnostics(shares: np.ndarray, sizes: np.ndarray) -> dict:
    """What summary.json reports: effective number of strata exp(H(shares)), the largest per-clip
    oversampling factor versus uniform replay (share_s / (n_s / N)), and the share per stratum."""
    shares, sizes = np.asarray(shares, np.float64), np.asarray(sizes, np.float64)
    p = shares[shares > 0]
    return {"effective_strata": round(float(np.exp(-(p * np.log(p)).sum())), 3),
            "max_oversampling": round(float((shares / (sizes / sizes.sum())).max()), 3),
            "strata_shares": [round(float(s), 4) for s in shares],
            "strata_sizes": [int(n) for n in sizes]}
