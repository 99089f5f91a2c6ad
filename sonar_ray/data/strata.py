"""Strata of the prior set, their relevance to the new domain, and the replay share of each.

Strata: seeded k-means over clip embeddings (or a given `stratum` column). Embeddings are centred
on the prior set's mean first, so cosines measure where a clip lies *within* the prior set rather
than the direction every audio embedding shares. Centroids are fitted on a bounded seeded sample and
every clip is then assigned in chunks, so a million-clip prior set never needs a float64 copy.

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


MAX_FIT_ROWS = 50_000  # k-means fits its centroids on at most this many rows (a seeded random sample beyond)
CHUNK_ROWS = 8192  # rows cast, normalised and compared with the centroids at a time (8192 x 768 float32 = 25 MB)


def _normalize(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _chunks(n: int, chunk_rows: int):
    return (slice(i, min(i + chunk_rows, n)) for i in range(0, n, chunk_rows))


def finite_rows(x: np.ndarray, chunk_rows: int = CHUNK_ROWS) -> np.ndarray:
    """(N,) bool: rows of `x` (N, D) with every entry finite."""
    x = np.asarray(x)
    out = np.empty(len(x), dtype=bool)
    for s in _chunks(len(x), chunk_rows):
        out[s] = np.isfinite(np.asarray(x[s], dtype=np.float64)).all(axis=1)
    return out


def sample_rows(n: int, max_rows: int, seed: int) -> np.ndarray:
    """Sorted indices of the rows k-means fits on: all `n`, or a seeded sample of `max_rows` of them."""
    if n <= max_rows:
        return np.arange(n)
    return np.sort(np.random.default_rng([1, seed]).choice(n, max_rows, replace=False))  # not k-means++'s stream


def _units(x: np.ndarray, centre: np.ndarray | None) -> np.ndarray:
    """Rows of `x` minus `centre`, scaled to unit length, in float32."""
    x = np.asarray(x, dtype=np.float32)
    return _normalize(x if centre is None else x - np.asarray(centre, dtype=np.float32))


def assign(x: np.ndarray, centroids: np.ndarray, centre: np.ndarray | None = None,
           chunk_rows: int = CHUNK_ROWS) -> np.ndarray:
    """(N,) nearest of the unit `centroids` (K, D) by cosine for every row of `x` (minus `centre`), a chunk at a time."""
    centroids = np.asarray(centroids, dtype=np.float32)
    labels = np.empty(len(x), dtype=np.int64)
    for s in _chunks(len(x), chunk_rows):
        labels[s] = np.argmax(_units(x[s], centre) @ centroids.T, axis=1)  # (chunk,)
    return labels


def fit_centroids(x: np.ndarray, k: int, seed: int, iters: int = 50) -> np.ndarray:
    """(k', D) unit centroids of cosine k-means (k-means++ init, Lloyd steps) on the unit rows `x`, k' = min(k, N)."""
    k = min(k, len(x))
    rng = np.random.default_rng(seed)
    centers = [x[rng.integers(len(x))]]
    for _ in range(1, k):
        d = np.clip(2 - 2 * (x @ np.asarray(centers).T).max(axis=1), 0, None).astype(np.float64)  # (N,) to nearest
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
    return centers


def kmeans(x: np.ndarray, k: int, seed: int, iters: int = 50, *, centre: np.ndarray | None = None,
           max_fit_rows: int = MAX_FIT_ROWS, chunk_rows: int = CHUNK_ROWS) -> np.ndarray:
    """Cosine k-means on rows of `x` (minus `centre`); returns labels 0..k'-1 (clusters no row is nearest to dropped).

    Centroids are fitted in float32 on at most `max_fit_rows` rows (a seeded random sample when there are
    more: `sample_rows`), then every row goes to its nearest centroid `chunk_rows` at a time, so memory
    beyond `x` itself stays ~ (max_fit_rows + chunk_rows) x D float32 for any N. With N <= max_fit_rows
    this is plain k-means on every row.
    """
    x = np.asarray(x)
    if not finite_rows(x, chunk_rows).all():
        raise ValueError("kmeans needs finite embeddings (skip clips whose embedding is NaN/inf first)")
    centroids = fit_centroids(_units(x[sample_rows(len(x), max_fit_rows, seed)], centre), k, seed, iters)
    labels = assign(x, centroids, centre, chunk_rows)
    used = np.bincount(labels, minlength=len(centroids)) > 0  # (k',) O(N) relabelling, unlike np.unique's sorts
    return (np.cumsum(used) - 1)[labels]


def _unit_means(x: np.ndarray, labels: np.ndarray, num: int, centre: np.ndarray, chunk_rows: int) -> np.ndarray:
    """(num, D) per label s >= 0: the direction of the mean of the unit rows (x - centre) labelled s, chunked."""
    sums = np.zeros((num, x.shape[1]))
    for s in _chunks(len(x), chunk_rows):
        keep = labels[s] >= 0  # -1: a row that takes no part (non-finite embedding)
        z = _normalize(np.asarray(x[s][keep], dtype=np.float64) - centre)  # (chunk', D)
        onehot = np.zeros((num, len(z)))
        onehot[labels[s][keep], np.arange(len(z))] = 1.0
        sums += onehot @ z  # (num, D)
    return _normalize(sums)  # the direction of a sum is that of the mean


def stratum_relevance(prior_emb: np.ndarray, strata: np.ndarray, new_emb: np.ndarray,
                      new_modes: int, seed: int = 0, *, max_fit_rows: int = MAX_FIT_ROWS,
                      chunk_rows: int = CHUNK_ROWS) -> np.ndarray:
    """(S,) r_s = max over the new domain's k-means modes of cos(centroid_s, mode), in prior-centred space.

    Memory beyond the inputs stays bounded: every pass over the rows goes a chunk at a time.
    """
    prior_emb, new_emb = np.asarray(prior_emb), np.asarray(new_emb)
    ok_prior, ok_new = finite_rows(prior_emb, chunk_rows), finite_rows(new_emb, chunk_rows)
    if not ok_new.any():
        raise ValueError("no new-domain clip has a finite embedding")
    centre = sum(np.asarray(prior_emb[s][ok_prior[s]], dtype=np.float64).sum(0)
                 for s in _chunks(len(prior_emb), chunk_rows)) / ok_prior.sum()  # (D,)
    strata = np.where(ok_prior, np.asarray(strata), -1)
    num = int(strata.max()) + 1
    if (np.bincount(strata[ok_prior], minlength=num) == 0).any():
        raise ValueError("every stratum needs at least one clip with a finite embedding")
    centroids = _unit_means(prior_emb, strata, num, centre, chunk_rows)  # (S, D)
    new_emb = new_emb if ok_new.all() else new_emb[ok_new]
    modes = kmeans(new_emb, new_modes, seed, centre=centre, max_fit_rows=max_fit_rows, chunk_rows=chunk_rows)
    mode_centroids = _unit_means(new_emb, modes, int(modes.max()) + 1, centre, chunk_rows)  # (M, D)
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
