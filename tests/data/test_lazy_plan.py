"""The lazily planned stream: the rows Ray workers plan from segment states are exactly those of a
plain sequential walk of the sampler, for any batch range, rank and number of ranks."""

import re

import numpy as np
import pytest

from sonar_ray.data.manifest import ClipRow
from sonar_ray.data.sampler import JointSampler
from sonar_ray.data.stream import PLAN_BLOCKS, build_plan_dataset, plan_segments

NUM_BATCHES = 53  # several batches per segment, and a short last one


def make_sampler() -> JointSampler:
    # small pools, so the walk crosses many epochs of every cycle
    new = [ClipRow(f"new/{i}", 1.0 + i % 4) for i in range(11)]
    prior = [ClipRow(f"prior/{i}", 0.5 + i % 3, "prior", i % 3) for i in range(7)]
    return JointSampler(new, prior, np.array([0.5, 0.3, 0.2]), batch_size=6, replay_ratio=0.5, clip_seconds=1.0,
                        seed=3)


@pytest.fixture(scope="module")
def sequential() -> list[dict]:
    sampler = make_sampler()
    return [{"batch_index": p.index, "uris": p.uris, "starts": p.starts, "is_prior": p.is_prior}
            for p in (next(sampler) for _ in range(NUM_BATCHES))]


@pytest.mark.parametrize("start,stop,rank,num_ranks", [(0, NUM_BATCHES, 0, 1), (0, NUM_BATCHES, 1, 2),
                                                       (7, 44, 2, 3), (5, 40, 7, 8), (20, 21, 0, 1), (9, 9, 0, 2)])
def test_workers_plan_exactly_the_sequential_stream(ray_local, sequential, start, stop, rank, num_ranks):
    rows = list(build_plan_dataset(make_sampler(), start, stop, rank, num_ranks).iter_rows())
    expected = [r for r in sequential[start:stop] if r["batch_index"] % num_ranks == rank]
    assert [r["batch_index"] for r in rows] == [r["batch_index"] for r in expected]
    for got, want in zip(rows, expected):
        assert list(got["uris"]) == want["uris"] and list(got["is_prior"]) == want["is_prior"]
        assert list(got["starts"]) == want["starts"]  # bit-identical floats


def test_the_driver_keeps_at_most_plan_blocks_states_and_every_batch_is_its_own_block(ray_local):
    for num in (1, PLAN_BLOCKS - 1, 10 * PLAN_BLOCKS, 10 * PLAN_BLOCKS + 1):
        segments = plan_segments(make_sampler(), 3, 3 + num)
        assert len(segments) <= PLAN_BLOCKS
        assert {s["stop"] - s["start"] for s in segments[:-1]} <= {-(-num // PLAN_BLOCKS)}  # ceil(num / 16) each
        assert segments[0]["start"] == 3 and segments[-1]["stop"] == 3 + num
        assert all(a["stop"] == b["start"] for a, b in zip(segments, segments[1:]))
    planned = build_plan_dataset(make_sampler(), 0, 2 * PLAN_BLOCKS + 1).materialize()
    inputs = re.search(r"FromItems: \d+ tasks executed, (\d+) blocks produced", planned.stats())
    assert inputs and int(inputs.group(1)) <= PLAN_BLOCKS, planned.stats()
    assert planned.num_blocks() == planned.count() == 2 * PLAN_BLOCKS + 1  # one load task per batch

