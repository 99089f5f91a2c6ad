"""Checkpoints uploaded in the background (`CheckpointReporter`), on real Ray Train into a real S3 server:
every checkpoint reaches the bucket whole, the last one before `fit` returns, and --resume continues
from the last one uploaded."""

from __future__ import annotations

import json
import tempfile
from dataclasses import replace
from pathlib import Path

import pytest

from sonar_ray import storage
from sonar_ray.train import artifacts, driver
from sonar_ray.train.checkpoints import PROGRESS
from sonar_ray.train.config import TrainConfig
from sonar_ray.train.inputs import data_config

pytestmark = pytest.mark.slow


def checkpoint_steps(output: str, run: str) -> list[int]:
    """The step of each checkpoint in Ray's run folder, read back from its trainer state."""
    fs, path = storage.filesystem(storage.join(output, "ray", run))
    folders = [f["name"] for f in fs.ls(path, detail=True)
               if f["type"] == "directory" and f["name"].rsplit("/", 1)[-1].startswith("checkpoint_")]
    return sorted(int(artifacts.load_torch(f"s3://{f}/{artifacts.TRAINER_STATE}")["step"]) for f in folders)


def local_checkpoints() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob("sonar-checkpoint-*"))


def test_checkpoints_reach_the_bucket_and_resume_continues_from_the_last(s3_bucket, ray_local, tiny_corpus):
    before = local_checkpoints()
    cfg = TrainConfig(method="scratch", preset="tiny", num_codes=32, domain="speech", data=tiny_corpus,
                      prior=tiny_corpus, output=f"{s3_bucket}/run", replay_ratio=0.5, replay_policy="uniform",
                      batch_size=2, num_workers=2, max_steps=6, stop_after=3, checkpoint_every=2, log_every=1,
                      clip_seconds=0.5, evaluate=False, wandb=False)
    run = driver.run_name(cfg)
    first = driver.fit(cfg, {}, data_config(cfg))
    # Steps 2 and 3 (the last) saved, 1 reported metrics only. Every save waited for the one before (none
    # dropped), and the last was whole in the bucket when fit returned (it was exported from there).
    assert first.steps == 3 and checkpoint_steps(cfg.output, run) == [2, 3]
    assert storage.exists(first.model)
    assert json.loads(storage.read_bytes(storage.join(cfg.output, PROGRESS))) == {"safe_step": 3}

    second = driver.fit(replace(cfg, stop_after=6, resume=True), {}, data_config(cfg))
    rows = [json.loads(line) for line in storage.read_bytes(storage.join(cfg.output, "metrics.jsonl")).splitlines()]
    assert [r["step"] for r in rows] == [4, 5, 6]  # on from step 3's checkpoint: nothing trained twice
    assert second.steps == 6 and checkpoint_steps(cfg.output, run) == [4, 6]  # num_to_keep=2
    assert json.loads(storage.read_bytes(storage.join(cfg.output, PROGRESS))) == {"safe_step": 6}
    assert local_checkpoints() == before  # Ray deleted each local folder once it was uploaded
