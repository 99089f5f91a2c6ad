"""Resume on real Ray Train: after a killed worker every batch of the stream is trained exactly once
(each worker has its own ordered stream, Ray Train restores the registered checkpoint, progress.json
lags it by one), and --resume refuses a changed configuration, naming the difference."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import pytest

from sonar_ray.train import artifacts, driver
from sonar_ray.train.config import TrainConfig
from sonar_ray.train.inputs import data_config
from sonar_ray.train.checkpoints import CheckpointReporter


def recording_loop(config: dict) -> None:
    """Stand-in for `train_loop_per_worker` with its stream call and its checkpoint / progress.json
    protocol (`CheckpointReporter`), but no model: what it "trains" is the list of batch ids, kept in
    the trainer state."""
    import ray.train
    import torch.distributed as dist

    from sonar_ray.config import from_dict
    from sonar_ray.data import iter_train_batches

    cfg = from_dict(TrainConfig, config["train"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    trained, step, checkpoint = [], 0, ray.train.get_checkpoint()
    if checkpoint is not None:
        state = artifacts.load_torch(str(Path(checkpoint.to_directory()) / artifacts.TRAINER_STATE))
        trained, step = state["trained"], state["step"]
    reporter = CheckpointReporter(rank, config["output"])
    for batch in iter_train_batches(ray.train.get_dataset_shard(f"train_{rank}"), step * world + rank, world):
        if step >= cfg.end_step:
            break
        for hook in config["step_hooks"]:  # the driver's fault injection (SONAR_INJECT_FAILURE_AT_STEP)
            hook(step, rank)
        ids = [None] * world
        dist.all_gather_object(ids, batch["batch_index"])
        trained, step = trained + ids, step + 1
        if step % cfg.checkpoint_every == 0 or step == cfg.end_step:
            state = {"step": step, "trained": trained}
            reporter.report({"step": step}, step,
                            write=lambda d: artifacts.save_torch(state, str(d / artifacts.TRAINER_STATE)))
    reporter.close()


@pytest.mark.slow
def test_after_a_killed_worker_every_batch_is_trained_once_and_resume_refuses_changes(
        s3_server, ray_local, tiny_corpus, tmp_path, monkeypatch):
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray workers cannot import tests/
    monkeypatch.setattr(driver, "train_loop_per_worker", recording_loop)
    monkeypatch.setenv("SONAR_INJECT_FAILURE_AT_STEP", "3")
    cfg = TrainConfig(method="scratch", domain="speech", data=tiny_corpus, prior=tiny_corpus, output=str(tmp_path / "run"),
                      replay_ratio=0.5, replay_policy="uniform", batch_size=4, num_workers=2, max_steps=6,
                      checkpoint_every=2, clip_seconds=1.0, evaluate=False, wandb=False)
    summary = driver.fit(cfg, {}, data_config(cfg))
    assert (tmp_path / "run" / ".injected_failure").exists()  # rank 0 really died at step 3
    latest = max(p for p in (tmp_path / "run" / "ray").glob("*/checkpoint_*") if p.is_dir())
    state = artifacts.load_torch(str(latest / artifacts.TRAINER_STATE))
    assert summary.steps == 6 and state["trained"] == list(range(12))  # each batch once, none lost

    with pytest.raises(ValueError, match=r"--replay-ratio 0.5 -> 0.25"):
        driver.fit(replace(cfg, replay_ratio=0.25, resume=True), {}, data_config(cfg))
    with pytest.raises(ValueError, match=r"--lr 0.0002 -> 0.001; --num-workers 2 -> 1"):
        driver.fit(replace(cfg, lr=1e-3, num_workers=1, resume=True), {}, data_config(cfg))
