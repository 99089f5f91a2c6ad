"""The Ray Dataset of training batches: one row per whole batch.

The sampler plans the batches lazily: the driver walks it once without planning (`JointSampler.skip`),
keeping only the sampler state at the start of each of at most PLAN_BLOCKS segments of the stream;
Ray workers restore a segment's state and plan its batches (`flat_map`), one row per batch, and the
transform decodes, resamples, crops and computes fbank in `map_batches` on CPU, one task per batch.
A row is a whole batch so that `streaming_split(n)` can only ever hand out complete batches: the
per-batch replay ratio stays exact on every worker. (Ray's `Dataset.mix` interleaves per block, not
per row, so it cannot keep a per-batch ratio.)
Resuming: the rows of batches [k, num_batches) are those of the uninterrupted stream from batch k.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import numpy as np

from sonar_ray.data.config import DataConfig
from sonar_ray.data.decode import SAMPLE_RATE, BadAudio, decode, fit_length
from sonar_ray.data.fetch import read_audio
from sonar_ray.data.manifest import clip_rows
from sonar_ray.data.prepare import PreparedData, prepare_data
from sonar_ray.data.sampler import JointSampler

log = logging.getLogger(__name__)

PLAN_BLOCKS = 16  # input blocks per dataset: the driver holds one sampler state per block, never a plan per batch


def make_sampler(cfg: DataConfig, prepared: PreparedData) -> JointSampler:
    return JointSampler(clip_rows(prepared.new), clip_rows(prepared.prior), prepared.shares, batch_size=cfg.batch_size,
                        replay_ratio=cfg.replay_ratio, clip_seconds=cfg.clip_seconds, seed=cfg.seed)


def load_batch(row: dict[str, np.ndarray], clip_seconds: float, retries: int) -> dict[str, np.ndarray]:
    """One planned batch (a 1-row Ray batch) -> fbank (1, B, T, 128), padding_mask (1, B, T), is_prior (1, B).

    A clip that passed inspection but fails now (e.g. a flaky read) is replaced by a clip of the same
    kind (new / prior) from this batch, so the ratio holds; `replaced` counts them.
    """
    from sonar_ray.audio.features import clip_features

    uris, starts, is_prior = row["uris"][0], row["starts"][0], np.asarray(row["is_prior"][0], dtype=bool)
    num = int(round(clip_seconds * SAMPLE_RATE))
    waves, lengths = np.zeros((len(uris), num), np.float32), np.zeros(len(uris), np.int64)
    ok = np.zeros(len(uris), dtype=bool)
    for i, (uri, start) in enumerate(zip(uris, starts)):
        try:  # reads only this crop's frames
            wave = read_audio(str(uri), lambda f: decode(f, start=float(start), seconds=clip_seconds), retries).wave
        except BadAudio as e:
            log.warning("replacing %s in batch %d: %s", uri, int(row["batch_index"][0]), e)
            continue
        waves[i], lengths[i] = fit_length(wave, num)
        ok[i] = True
    for i in np.flatnonzero(~ok):
        donors = np.flatnonzero(ok & (is_prior == is_prior[i]))
        if not len(donors):
            raise RuntimeError(f"batch {int(row['batch_index'][0])}: no readable {'prior' if is_prior[i] else 'new'} clip")
        waves[i], lengths[i] = waves[donors[0]], lengths[donors[0]]
    fbank, mask = clip_features(waves, lengths)  # (B, T, 128), (B, T)
    return {"batch_index": row["batch_index"], "fbank": fbank.numpy()[None], "padding_mask": mask.numpy()[None],
            "is_prior": is_prior[None], "replaced": np.array([int((~ok).sum())])}


def plan_segments(sampler: JointSampler, start_batch: int, stop_batch: int) -> list[dict]:
    """[start_batch, stop_batch) as at most PLAN_BLOCKS runs of consecutive batches, each with the
    sampler state (JSON) it starts from. Walks `sampler` to the last run's start without planning."""
    size = max(1, -(-(stop_batch - start_batch) // PLAN_BLOCKS))
    segments = []
    for start in range(start_batch, stop_batch, size):
        sampler.skip(start - sampler.batch)
        segments.append({"start": start, "stop": min(start + size, stop_batch),
                         "state": json.dumps(sampler.state_dict())})
    return segments


def plan_batches(segment: dict, sampler_ref, rank: int, num_ranks: int) -> Iterator[dict]:
    """On a Ray worker: one segment -> the rows of its batches with index % num_ranks == rank."""
    import ray

    sampler = ray.get(sampler_ref)  # a private copy: the initial sampler, shipped once per dataset
    sampler.load_state_dict(json.loads(segment["state"]))
    first = segment["start"] + (rank - segment["start"]) % num_ranks
    for index in range(first, segment["stop"], num_ranks):
        sampler.skip(index - sampler.batch)  # the other ranks' batches
        p = next(sampler)
        yield {"batch_index": p.index, "uris": p.uris, "starts": p.starts, "is_prior": p.is_prior}


def build_plan_dataset(sampler: JointSampler, start_batch: int, stop_batch: int, rank: int = 0, num_ranks: int = 1):
    """The planned batches [start_batch, stop_batch) of `sampler`'s stream with index % num_ranks ==
    rank, one row each, in index order; one block per row so that every batch is its own load task."""
    import ray

    sampler_ref = ray.put(sampler)  # before the walk: workers restore each segment's state anyway
    segments = plan_segments(sampler, start_batch, stop_batch)
    ds = ray.data.from_items(segments, override_num_blocks=max(1, len(segments)))
    ds.context.execution_options.preserve_order = True  # a single reader sees batches in index order
    return (ds.flat_map(plan_batches, fn_kwargs={"sampler_ref": sampler_ref, "rank": rank, "num_ranks": num_ranks})
            .repartition(target_num_rows_per_block=1))


def build_train_dataset(cfg: DataConfig, start_batch: int = 0, prepared: PreparedData | None = None,
                        stop_batch: int | None = None, rank: int = 0, num_ranks: int = 1):
    """Batches [start_batch, stop_batch or cfg.num_batches) of the joint stream as a Ray Dataset (one row
    per batch), of which only those with index % num_ranks == rank: one worker's own stream. The plan
    is always that of the whole stream, so consecutive segments join up exactly.

    Pass `prepared` (from `prepare_data(cfg)`) to reuse an inspection the caller already ran, e.g.
    to write its bad-input report.
    """
    from sonar_ray.data.backoff import IdleBackoff

    if start_batch < 0 or (stop_batch is not None and stop_batch < 0):
        raise ValueError(f"batch range [{start_batch}, {stop_batch}) must not be negative")
    stop = cfg.num_batches if stop_batch is None else min(stop_batch, cfg.num_batches)
    prepared = prepared or prepare_data(cfg)
    ds = build_plan_dataset(make_sampler(cfg, prepared), min(start_batch, stop), stop, rank, num_ranks)
    if IdleBackoff not in ds.context.custom_execution_callback_classes:
        ds.context.custom_execution_callback_classes.append(IdleBackoff)
    return ds.map_batches(load_batch, batch_size=1, fn_kwargs={"clip_seconds": cfg.clip_seconds,
                                                               "retries": cfg.read_retries})


def iter_train_batches(shard, first_index: int | None = None, stride: int = 1,
                       prefetch_batches: int = 2) -> Iterator[dict]:
    """Training-worker side: a dataset shard (`ray.train.get_dataset_shard`) -> dicts of torch tensors.

    `fbank` float32 (B, T, 128), `padding_mask` bool (B, T), `is_prior` bool (B,), `batch_index` int,
    `replaced` int (clips that failed at read time and were replaced by another of the batch).
    With `first_index`, exactly batches first_index, first_index + stride, ... come out: earlier ones
    are skipped (a restarted stream begins at the last safe point, which may lag the restored
    checkpoint), and a gap or a batch out of order is an error rather than a silently wrong run.
    """
    import torch

    expected = first_index
    for row in shard.iter_batches(batch_size=1, batch_format="numpy", prefetch_batches=prefetch_batches):
        index = int(row["batch_index"][0])
        if expected is not None:
            if index < expected:
                continue
            if index != expected:
                raise RuntimeError(f"training stream out of order: expected batch {expected}, got {index}")
            expected += stride
        yield {"fbank": torch.from_numpy(np.array(row["fbank"][0], dtype=np.float32)),  # own, writable copy
               "padding_mask": torch.from_numpy(np.asarray(row["padding_mask"][0], dtype=bool)),
               "is_prior": torch.from_numpy(np.asarray(row["is_prior"][0], dtype=bool)),
               "batch_index": int(row["batch_index"][0]), "replaced": int(row["replaced"][0])}
