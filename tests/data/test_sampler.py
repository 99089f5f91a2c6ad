"""Joint sampler and strata: exact ratio per batch, determinism, stratum shares, resume."""

import numpy as np
import pytest

from sonar_ray.data.sampler import JointSampler
from sonar_ray.data.strata import kmeans, relevance_shares


def make_sampler(shares=(0.5, 0.3, 0.2), batch_size=10, replay_ratio=0.3, seed=0):
    strata = np.repeat(np.arange(len(shares)), [5, 7, 3][: len(shares)])
    return JointSampler([f"new/{i}" for i in range(13)], np.full(13, 3.0),
                        [f"prior/{s}/{i}" for i, s in enumerate(strata)], np.full(len(strata), 0.5), strata,
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


def test_relevance_shares_match_the_formula_and_keep_the_minimum():
    prior = np.array([[1, 0], [1, 0.1], [0, 1], [0.1, 1], [-1, 0], [-1, -0.1]], dtype=float)
    strata = np.array([0, 0, 1, 1, 2, 2])
    new = np.array([[1, 0.05], [1, 0.0]])
    shares = relevance_shares(prior, strata, new, temperature=0.5, min_share=0.05)
    unit = lambda v: v / np.linalg.norm(v)  # noqa: E731
    rows = lambda m: m / np.linalg.norm(m, axis=1, keepdims=True)  # noqa: E731  (cosine geometry: unit clips)
    cos = np.array([unit(rows(prior)[strata == s].mean(0)) @ unit(rows(new).mean(0)) for s in range(3)])
    soft = np.exp(cos / 0.5) / np.exp(cos / 0.5).sum()
    np.testing.assert_allclose(shares, 0.05 + (1 - 0.15) * soft)
    assert shares.sum() == pytest.approx(1.0) and shares.argmax() == 0 and shares.min() >= 0.05
    cold = relevance_shares(prior, strata, new, temperature=0.01, min_share=0.1)
    assert cold[1:] == pytest.approx([0.1, 0.1], abs=1e-6)  # a sharp softmax leaves only the floor
    with pytest.raises(ValueError):
        relevance_shares(prior, strata, new, temperature=0.5, min_share=0.4)


def test_kmeans_recovers_separated_clusters_deterministically():
    rng = np.random.default_rng(0)
    centers = np.eye(4)[:3] * 10
    x = np.concatenate([c + rng.standard_normal((30, 4)) for c in centers])
    labels = kmeans(x, 3, seed=0)
    assert np.array_equal(labels, kmeans(x, 3, seed=0))
    for block in labels.reshape(3, 30):
        assert len(set(block)) == 1
    assert len(set(labels)) == 3
