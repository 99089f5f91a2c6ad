"""Joint sampler and strata: exact ratio per batch, determinism, stratum shares, resume."""

import numpy as np
import pytest

from sonar_ray.data.manifest import ClipRow
from sonar_ray.data.sampler import JointSampler
from sonar_ray.data.strata import kmeans, oversampling_shares, replay_diagnostics, stratum_relevance


def make_sampler(shares=(0.5, 0.3, 0.2), batch_size=10, replay_ratio=0.3, seed=0):
    strata = np.repeat(np.arange(len(shares)), [5, 7, 3][: len(shares)])
    return JointSampler([ClipRow(f"new/{i}", 3.0) for i in range(13)],
                        [ClipRow(f"prior/{s}/{i}", 0.5, "prior", int(s)) for i, s in enumerate(strata)],
                        np.asarray(shares), batch_size=batch_size, replay_ratio=replay_ratio, clip_seconds=1.0, seed=seed)


@pytest.mark.parametrize("batch_size,ratio", [(10, 0.3), (8, 0.5), (7, 0.25), (4, 0.0), (4, 1.0)])
def test_every_batch_has_exactly_round_ratio_times_b_prior_clips(batch_size, ratio):
    sampler = make_sampler(batch_size=batch_size, replay_ratio=ratio)
    for plan in (next(sampler) for _ in range(50)):
        assert len(plan.uris) == batch_size
        assert sum(plan.is_prior) == round(ratio * batch_size)
        assert all(u.startswith("prior/") == p for u, p in zip(plan.uris, plan.is_prior))


def test_same_seed_same_stream_other_seed_other_stream():
    a, b, c = make_sampler(seed=1), make_sampler(seed=1), make_sampler(seed=2)
    stream_a = [next(a) for _ in range(20)]
    assert stream_a == [next(b) for _ in range(20)]
    assert stream_a != [next(c) for _ in range(20)]


def test_new_clips_are_all_seen_once_per_epoch_and_crops_stay_inside_files():
    sampler = make_sampler(batch_size=13, replay_ratio=0.0)
    plan = next(sampler)
    assert sorted(plan.uris) == sorted(f"new/{i}" for i in range(13))
    assert all(0 <= s <= 2.0 for s in plan.starts)  # 3 s files, 1 s clips


def test_stratum_counts_follow_the_shares_within_one_slot():
    shares = np.array([0.55, 0.3, 0.15])
    sampler = make_sampler(shares=shares, batch_size=10, replay_ratio=0.3)
    counts, slots = np.zeros(3), 0
    for plan in (next(sampler) for _ in range(200)):
        for uri, prior in zip(plan.uris, plan.is_prior):
            if prior:
                counts[int(uri.split("/")[1])] += 1
                slots += 1
        assert np.all(np.abs(counts - shares * slots) <= 1.0)


def test_resume_from_state_continues_exactly_where_it_stopped():
    import json

    sampler = make_sampler()
    [next(sampler) for _ in range(17)]
    state = json.loads(json.dumps(sampler.state_dict()))  # survives a checkpoint round trip
    expected = [next(sampler) for _ in range(30)]
    resumed = make_sampler()
    resumed.load_state_dict(state)
    assert [next(resumed) for _ in range(30)] == expected
    assert expected[0].index == 17


@pytest.mark.parametrize("n", [0, 1, 3, 13, 100])
def test_skip_advances_exactly_as_next(n):
    """`skip` passes over batches without planning them; it must land on the very same state."""
    skipped, walked = make_sampler(), make_sampler()
    skipped.skip(n)
    [next(walked) for _ in range(n)]
    assert skipped.state_dict() == walked.state_dict()
    assert [next(skipped) for _ in range(20)] == [next(walked) for _ in range(20)]


def test_shares_follow_stratum_size_when_relevance_is_equal():
    """Equal relevance means uniform replay per clip: a 1-clip stratum must not get as much as a 40-clip one."""
    shares = oversampling_shares(np.array([40, 1, 9]), np.zeros(3), temperature=0.5, min_oversample=0.25,
                                 max_oversample=4.0)
    np.testing.assert_allclose(shares, [0.8, 0.02, 0.18])


def test_per_clip_oversampling_is_capped_and_floored_and_shares_sum_to_one():
    sizes, relevance = np.array([13, 60, 80, 90]), np.array([0.9, 0.1, -0.2, -0.5])
    shares = oversampling_shares(sizes, relevance, temperature=0.05, min_oversample=0.25, max_oversample=3.0)
    factor = shares / (sizes / sizes.sum())
    assert shares.sum() == pytest.approx(1.0)
    assert factor.max() == pytest.approx(3.0) and factor.min() == pytest.approx(0.25)
    assert np.all(np.diff(factor) <= 1e-12)  # more relevant strata never get less per clip
    uniform = oversampling_shares(sizes, relevance, temperature=0.05, min_oversample=0.25, max_oversample=1.0)
    np.testing.assert_allclose(uniform, sizes / sizes.sum())  # a cap of 1 is uniform replay
    d = replay_diagnostics(shares, sizes)
    assert d["max_oversampling"] == pytest.approx(3.0, abs=1e-3) and len(d["strata_shares"]) == 4
    assert 1.0 <= d["effective_strata"] <= 4.0
    assert replay_diagnostics(uniform, sizes)["effective_strata"] == pytest.approx(np.exp(-(uniform * np.log(uniform)).sum()), abs=1e-3)
    with pytest.raises(ValueError, match="max_oversample"):
        oversampling_shares(sizes, relevance, temperature=0.5, min_oversample=0.25, max_oversample=0.5)


def _directions(rng, axes, n, dim=6, noise=0.05):
    """n points around the mean direction of `axes` (unit basis vectors), plus a common offset every clip shares."""
    centre = np.eye(dim)[axes].sum(0)
    return 5.0 + centre + noise * rng.standard_normal((n, dim))


def test_relevance_sees_every_mode_of_the_new_domain():
    """New domain with two modes (axes 0 and 1); prior strata near mode 0, near mode 1, between them, elsewhere.
    One new-domain centroid ranks the in-between stratum first; max over modes ranks the true neighbours first."""
    rng = np.random.default_rng(0)
    new = np.concatenate([_directions(rng, [0], 20), _directions(rng, [1], 20)])
    prior = np.concatenate([_directions(rng, [0], 10), _directions(rng, [1], 10), _directions(rng, [0, 1], 10),
                            _directions(rng, [3], 10), _directions(rng, [4], 10)])
    strata = np.repeat(np.arange(5), 10)
    one = stratum_relevance(prior, strata, new, new_modes=1)
    two = stratum_relevance(prior, strata, new, new_modes=2)
    assert one.argmax() == 2
    assert two[:2].min() > two[2] > two[3:].max()


def test_a_non_finite_embedding_neither_poisons_the_shares_nor_sends_replay_to_stratum_0():
    rng = np.random.default_rng(1)
    prior = np.concatenate([_directions(rng, [3], 10), _directions(rng, [0], 10), _directions(rng, [4], 10)])
    strata = np.repeat(np.arange(3), 10)
    new = _directions(rng, [0], 10)
    prior[4] = np.inf  # an absurdly loud clip in stratum 0
    prior[5] = np.nan
    new[2] = np.inf
    relevance = stratum_relevance(prior, strata, new, new_modes=2)
    shares = oversampling_shares(np.bincount(strata), relevance, temperature=0.5, min_oversample=0.25, max_oversample=4.0)
    assert np.isfinite(shares).all() and shares.argmax() == 1
    with pytest.raises(ValueError, match="finite"):
        kmeans(prior, 3, seed=0)


def test_kmeans_recovers_separated_clusters_deterministically():
    rng = np.random.default_rng(0)
    centers = np.eye(4)[:3] * 10
    x = np.concatenate([c + rng.standard_normal((30, 4)) for c in centers])
    labels = kmeans(x, 3, seed=0)
    assert np.array_equal(labels, kmeans(x, 3, seed=0))
    for block in labels.reshape(3, 30):
        assert len(set(block)) == 1
    assert len(set(labels)) == 3
