"""The Ray Data stream of training batches on the tiny corpus: contract, exact ratio on every shard
of `streaming_split(2)`, determinism and resume, local and S3.

Ray tests ask for `s3_server` before `ray_local` (workers inherit the cluster's start environment).
"""

import dataclasses
import threading

import numpy as np
import pytest
import torch

from sonar_ray.data import DataConfig, build_train_dataset, iter_train_batches, prepare_data

NUM_BATCHES = 6


def config(root: str, tmp_path, **kw) -> DataConfig:
    base = dict(new_uri=root, new_domain="speech", prior_uri=root, prior_domain="prior", replay_ratio=0.25,
                batch_size=8, num_batches=NUM_BATCHES, clip_seconds=1.0, num_strata=3, temperature=0.2,
                max_oversample=2.0, cache_uri=str(tmp_path / "cache"), seed=7)
    return DataConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def stream_cfg(tiny_corpus, tmp_path_factory):
    return config(tiny_corpus, tmp_path_factory.mktemp("stream"))


def test_without_replay_no_prior_set_is_needed(s3_server, ray_local, tiny_corpus, tmp_path):
    """DCPT given no --prior: nothing to inspect or replay, every batch all new-domain clips."""
    from sonar_ray.data.stream import make_sampler

    cfg = config(tiny_corpus, tmp_path, prior_uri="", replay_ratio=0.0, policy="uniform")
    prepared = prepare_data(cfg)
    assert len(prepared.new) == 6 and prepared.prior.empty and len(prepared.shares) == 0 and prepared.replay == {}
    sampler = make_sampler(cfg, prepared)
    plans = [next(sampler) for _ in range(3)]
    assert all(len(p.uris) == cfg.batch_size and not any(p.is_prior) for p in plans)
    assert {u for p in plans for u in p.uris} <= set(prepared.new["uri"])


def test_batches_follow_the_contract_and_resume_reproduces_the_stream(s3_server, ray_local, stream_cfg):
    prepared = prepare_data(stream_cfg)
    assert len(prepared.new) == 6 and len(prepared.prior) == 6 and prepared.bad.empty
    assert prepared.shares.sum() == pytest.approx(1) and np.isfinite(prepared.shares).all()
    replay = prepared.replay  # what summary.json reports
    assert replay["strata_shares"] == [round(float(s), 4) for s in prepared.shares]
    assert 1.0 <= replay["max_oversampling"] <= 2.0 + 1e-6 and 1.0 <= replay["effective_strata"] <= len(prepared.shares)
    assert sum(replay["strata_sizes"]) == len(prepared.prior)
    full = list(iter_train_batches(build_train_dataset(stream_cfg, prepared=prepared).iterator()))
    assert [b["batch_index"] for b in full] == list(range(NUM_BATCHES))
    for b in full:
        assert b["fbank"].dtype == torch.float32 and b["fbank"].shape == (8, 98, 128)
        assert b["padding_mask"].dtype == torch.bool and b["padding_mask"].shape == (8, 98)
        assert b["is_prior"].dtype == torch.bool and int(b["is_prior"].sum()) == round(0.25 * 8)
        assert torch.isfinite(b["fbank"]).all()
    assert not torch.equal(full[0]["fbank"], full[1]["fbank"])
    resumed = list(iter_train_batches(build_train_dataset(stream_cfg, start_batch=4, prepared=prepared).iterator()))
    assert [b["batch_index"] for b in resumed] == [4, 5]
    for a, b in zip(full[4:], resumed):
        assert all(torch.equal(a[k], b[k]) for k in ("fbank", "padding_mask", "is_prior"))
    # A paused run (--stop-after) streams a prefix; its continuation starts where the prefix ended.
    head = list(iter_train_batches(build_train_dataset(stream_cfg, stop_batch=2, prepared=prepared).iterator()))
    middle = list(iter_train_batches(build_train_dataset(stream_cfg, start_batch=2, stop_batch=4,
                                                         prepared=prepared).iterator()))
    assert [b["batch_index"] for b in head + middle] == [0, 1, 2, 3]
    for a, b in zip(full, head + middle):
        assert torch.equal(a["fbank"], b["fbank"])


def test_a_worker_stream_skips_what_its_checkpoint_trained_and_refuses_a_gap(s3_server, ray_local, stream_cfg):
    prepared = prepare_data(stream_cfg)
    rank1 = build_train_dataset(stream_cfg, prepared=prepared, rank=1, num_ranks=2)  # batches 1, 3, 5
    # restored at step 1 of 2 workers: worker 1's next batch is 3; the stream began earlier (progress lag)
    assert [b["batch_index"] for b in iter_train_batches(rank1.iterator(), first_index=3, stride=2)] == [3, 5]
    with pytest.raises(RuntimeError, match="expected batch 2, got 3"):
        list(iter_train_batches(rank1.iterator(), first_index=2, stride=2))


def test_streaming_split_keeps_the_exact_ratio_in_every_batch_of_every_shard(s3_server, ray_local, stream_cfg):
    shards = build_train_dataset(dataclasses.replace(stream_cfg, replay_ratio=0.5)).streaming_split(2, equal=True)
    seen: dict[int, list] = {0: [], 1: []}

    def consume(rank):
        for b in iter_train_batches(shards[rank]):
            seen[rank].append((b["batch_index"], int(b["is_prior"].sum()), len(b["is_prior"])))

    threads = [threading.Thread(target=consume, args=(r,)) for r in (0, 1)]
    [t.start() for t in threads]
    [t.join(timeout=300) for t in threads]
    assert seen[0] and seen[1]
    assert sorted(i for r in seen.values() for i, _, _ in r) == list(range(NUM_BATCHES))
    assert all(prior == 4 and size == 8 for r in seen.values() for _, prior, size in r)


def test_short_clips_are_padded_and_masked(s3_server, ray_local, stream_cfg, tmp_path):
    cfg = config(stream_cfg.new_uri, tmp_path, clip_seconds=3.0, num_batches=1, policy="uniform")
    batch = next(iter_train_batches(build_train_dataset(cfg).iterator()))
    assert batch["fbank"].shape == (8, 298, 128)
    masked = batch["padding_mask"].sum(1)
    assert (masked > 0).all()  # tiny files last 1-2 s: every 3 s clip is partly padding
    assert not batch["padding_mask"][:, :90].any()  # and at least ~1 s is real


def test_relevance_stream_from_s3(tiny_corpus_s3, ray_local, tmp_path):
    cfg = config(tiny_corpus_s3, tmp_path, num_batches=2, cache_uri=None, new_domain="music")
    prepared = prepare_data(cfg)
    assert set(prepared.prior["stratum"]) == set(range(len(prepared.shares)))
    batches = list(iter_train_batches(build_train_dataset(cfg, prepared=prepared).iterator()))
    assert len(batches) == 2 and all(int(b["is_prior"].sum()) == 2 for b in batches)
    assert np.isfinite(np.stack(prepared.new["embedding"])).all()


def test_a_clip_unreadable_at_read_time_is_replaced_and_counted(s3_server, ray_local, stream_cfg, tmp_path):
    from sonar_ray.data.stream import make_sampler

    prepared = prepare_data(stream_cfg)
    gone = prepared.new["uri"].iloc[0]
    new = prepared.new.copy()
    new.loc[0, "uri"] = str(tmp_path / "deleted-after-inspection.wav")  # passed inspection, gone by training
    broken = dataclasses.replace(prepared, new=new)
    sampler = make_sampler(stream_cfg, broken)
    expected = [sum(u == new.loc[0, "uri"] for u in next(sampler).uris) for _ in range(2)]
    batches = list(iter_train_batches(build_train_dataset(stream_cfg, prepared=broken, stop_batch=2).iterator()))
    assert [b["replaced"] for b in batches] == expected and sum(expected) > 0, (gone, expected)
    assert all(torch.isfinite(b["fbank"]).all() for b in batches)
