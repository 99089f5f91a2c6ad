"""Session fixtures for training: a tiny base model pre-trained (all three BEATs stages) on the tiny corpus.

Imported by tests/conftest.py so every test package (train, pipelines, tuning, benchmarks) shares it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

# Flags that make a real run take seconds on 2 cores: the 2-layer preset, 1-s crops, a few steps.
TINY_RUN = ["--clip-seconds", "1.0", "--batch-size", "4", "--num-workers", "2", "--log-every", "1",
            "--no-wandb"]


def tiny_adapt_args(corpus: str, base: str, output: str, *extra: str) -> list[str]:
    """Arguments of jobs/adapt.py for a tiny real run on the tiny corpus."""
    return ["--domain", "speech", "--data", corpus, "--prior", corpus, "--probes", corpus, "--base", base,
            "--output", output, "--max-steps", "4", "--checkpoint-every", "2", *TINY_RUN, *extra]


@pytest.fixture(scope="session")
def tiny_base(tiny_corpus, tmp_path_factory, ray_local) -> str:
    """Path of model.pt of a tiny base model (tokenizer.pt and predictor.pt beside it)."""
    from sonar_ray.config import parse_cli
    from sonar_ray.train.pretrain import PretrainConfig, pretrain

    out = tmp_path_factory.mktemp("base")
    cfg = parse_cli(PretrainConfig, ["--data", tiny_corpus, "--output", str(out), "--preset", "tiny",
                                     "--iter1-steps", "4", "--tokenizer-steps", "4", "--iter2-steps", "4",
                                     "--tokenizer-codes", "64", "--batch-size", "4", "--clip-seconds", "1.0",
                                     "--no-wandb", "--no-gates"])  # 4 steps cannot pass the health gates
    model = pretrain(cfg).model
    assert Path(model).exists()
    return model


# What Ray prints on its own when its logs reach the console: controller chatter, every worker line
# (twice with 2 workers), report reprs, Ray Data's per-dataset banners.
RAY_NOISE = ("PlacementGroupCleaner", "Failed to query Ray Train Controller", "TrainingReport(", "(RayTrainWorker pid=",
             "(TrainController pid=", "(SplitCoordinator pid=", "Execution plan of Dataset", "Token authentication")


def assert_readable_console(text: str, max_lines: int = 40) -> None:
    """A job's console: no Ray noise, at most `max_lines` lines (a progress bar's updates share its line)."""
    noise = [marker for marker in RAY_NOISE if marker in text]
    assert not noise, f"Ray noise on the console: {noise}\n{text[-3000:]}"
    lines = text.count("\n")
    assert lines <= max_lines, f"{lines} console lines:\n{text}"
