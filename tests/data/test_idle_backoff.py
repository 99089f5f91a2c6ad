"""A training stream that is ahead of its consumer must wait, not spin its scheduling loop."""

from __future__ import annotations

import time

import numpy as np

from sonar_ray.data.backoff import IDLE_SLEEP_S, IdleBackoff

BLOCKS, STEP_S = 12, 0.1


def test_a_stream_ahead_of_its_consumer_waits_instead_of_spinning(ray_local, monkeypatch):
    import ray
    from ray.data import ExecutionResources

    steps, on_step = [], IdleBackoff.on_execution_step
    # Counted in this process, where the executor runs (the class itself still pickles by reference).
    monkeypatch.setattr(IdleBackoff, "on_execution_step", lambda self, ex: (steps.append(1), on_step(self, ex)))

    ds = ray.data.from_items([{"i": i} for i in range(BLOCKS)], override_num_blocks=BLOCKS)
    ds.context.execution_options.resource_limits = ExecutionResources(object_store_memory=8 * 2**20)
    ds.context.custom_execution_callback_classes = [IdleBackoff]  # this dataset's own context
    ds = ds.map_batches(lambda row: {"x": np.zeros((1, 2**19), np.float32)}, batch_size=1)  # 2 MB batches
    started, got = time.perf_counter(), 0
    for _ in ds.iter_batches(batch_size=1, prefetch_batches=1):
        time.sleep(STEP_S)  # a training step: the stream is soon ahead and backpressured
        got += 1
    wall = time.perf_counter() - started
    assert got == BLOCKS
    # Idle steps sleep IDLE_SLEEP_S; the others each dispatch or take something (a few per batch).
    # A spinning loop runs hundreds of steps per second here.
    assert len(steps) <= wall / IDLE_SLEEP_S + 6 * BLOCKS, (len(steps), wall)


def test_training_streams_carry_the_backoff(s3_server, ray_local, tiny_corpus):
    from sonar_ray.data import DataConfig, build_train_dataset

    cfg = DataConfig(new_uri=tiny_corpus, new_domain="speech", prior_uri=tiny_corpus, replay_ratio=0.5, batch_size=4,
                     num_batches=4, clip_seconds=1.0, policy="uniform")
    ds = build_train_dataset(cfg, rank=1, num_ranks=2)
    assert IdleBackoff in ds.context.custom_execution_callback_classes
    assert len(list(ds.iter_batches(batch_size=1))) == 2  # and the stream still runs: batches 1 and 3
