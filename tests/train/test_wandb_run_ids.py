"""wandb run ids: one per run, kept in the output folder, reused only when that run is continued."""

from __future__ import annotations

from pathlib import Path

from sonar_ray.train.metrics import WANDB_ID_FILE, MetricsLogger, wandb_run_id


def _offline_run_ids(local_dir: Path) -> set[str]:
    # wandb offline writes <dir>/wandb/wandb/offline-run-<time>-<id>/run-<id>.wandb
    return {p.stem.removeprefix("run-") for p in (local_dir / "wandb").rglob("run-*.wandb")}


def _log_one_step(local_dir: Path, run_id: str) -> None:
    logger = MetricsLogger(str(local_dir), total_steps=1, use_wandb=True, project="sonar-ray-test",
                           run_name=run_id, config={"seed": 0})
    logger.log(1, {"loss": 1.0})
    logger.close()


def test_fresh_runs_get_distinct_ids_and_resume_reuses_its_own(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    a, b = tmp_path / "a", tmp_path / "b"
    id_a = wandb_run_id(str(a), "sonar-speech", resume=False)
    id_b = wandb_run_id(str(b), "sonar-speech", resume=False)  # same method and domain: another seed / trial
    assert id_a != id_b and id_a.startswith("sonar-speech-")
    assert (a / WANDB_ID_FILE).read_text() == id_a
    assert wandb_run_id(str(a), "sonar-speech", resume=True) == id_a  # --resume: the same W&B run

    # Real wandb (offline): the run and its continuation are two sessions of one W&B run id.
    _log_one_step(a, id_a)
    _log_one_step(a, wandb_run_id(str(a), "sonar-speech", resume=True))
    assert _offline_run_ids(a) == {id_a} and len(list((a / "wandb").rglob("run-*.wandb"))) == 2

    # A fresh run in a used folder (the driver refuses one without --resume) would never reuse the id.
    assert wandb_run_id(str(a), "sonar-speech", resume=False) != id_a
