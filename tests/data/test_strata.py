"""k-means on a bounded sample: centroids fitted on a seeded sample of the rows, every row then assigned
to its nearest centroid in chunks (a million prior clips x 768 used to be held as float64 twice)."""

import tracemalloc

import numpy as np
import pytest

from sonar_ray.data.config import DataConfig
from sonar_ray.data.strata import assign, fit_centroids, kmeans, sample_rows, stratum_relevance


def blobs(n: int, dim: int = 8, k: int = 4, spread: float = 0.6, seed: int = 0) -> np.ndarray:
    """Overlapping clusters: where the centroids lie decides many rows' labels."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((k, dim))
    return (centres[rng.integers(k, size=n)] + spread * rng.standard_normal((n, dim))).astype(np.float32)


def unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_more_rows_than_the_bound_fit_on_the_seeded_sample_and_every_row_goes_to_its_nearest_centroid():
    x, bound = blobs(3000), 500
    idx = sample_rows(len(x), bound, seed=3)
    assert len(idx) == bound and len(np.unique(idx)) == bound
    labels = kmeans(x, 4, seed=3, max_fit_rows=bound, chunk_rows=256)  # 3000 = 11 chunks + a partial one
    assert np.array_equal(labels, kmeans(x, 4, seed=3, max_fit_rows=bound, chunk_rows=256))  # deterministic
    # The sampled rows get exactly the strata that k-means on the sample alone gives them.
    assert np.array_equal(labels[idx], kmeans(x[idx], 4, seed=3, max_fit_rows=bound))
    # Every row: brute force (float64, all rows at once) against the centroids fitted on the sample.
    centroids = fit_centroids(unit(x[idx]).astype(np.float32), 4, seed=3)
    brute = np.argmax(unit(x) @ unit(centroids).T, axis=1)
    assert np.array_equal(labels, brute) and len(set(labels)) == 4
    # The sample matters: fitting on every row puts some rows elsewhere.
    assert not np.array_equal(labels, kmeans(x, 4, seed=3, max_fit_rows=len(x)))
    assert not np.array_equal(sample_rows(len(x), bound, seed=4), idx)


def test_at_most_the_bound_fits_on_every_row():
    x = blobs(400)
    assert np.array_equal(sample_rows(400, 400, seed=0), np.arange(400))
    assert np.array_equal(kmeans(x, 4, seed=0, max_fit_rows=400), kmeans(x, 4, seed=0))
    assert np.array_equal(assign(x, fit_centroids(unit(x).astype(np.float32), 4, 0), chunk_rows=7),
                          assign(x, fit_centroids(unit(x).astype(np.float32), 4, 0)))


def test_memory_stays_bounded_by_the_sample_and_the_chunk_not_the_rows():
    """200,000 x 64 float32 rows (51 MB): the old float64 copies alone peaked at 4x that."""
    x = blobs(200_000, dim=64, k=8)
    tracemalloc.start()
    try:
        labels = kmeans(x, 8, seed=0, max_fit_rows=2000, chunk_rows=4096)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(labels) == len(x) and len(set(labels)) == 8
    # The labels themselves (8 bytes a row, twice while relabelling) + a 2,000-row sample + a 4,096-row chunk.
    assert peak < x.nbytes / 4, f"peak {peak / 1e6:.1f} MB for {x.nbytes / 1e6:.1f} MB of rows"


def test_relevance_does_not_depend_on_the_chunk_size():
    rng = np.random.default_rng(0)
    prior, new = blobs(300, seed=1), blobs(120, seed=2)
    prior[7] = np.nan  # skipped, in whichever chunk it falls
    strata = rng.integers(3, size=300)
    np.testing.assert_allclose(stratum_relevance(prior, strata, new, 2, chunk_rows=13),
                               stratum_relevance(prior, strata, new, 2), atol=1e-6)


def test_the_sample_bound_is_a_checked_setting():
    assert DataConfig().strata_fit_rows == 50_000
    with pytest.raises(ValueError, match="strata_fit_rows"):
        DataConfig(strata_fit_rows=0)
