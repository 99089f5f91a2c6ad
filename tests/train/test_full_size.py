"""The full-size BEATs configuration (90 M parameters) through the real job: SONAR (teacher, both
distillation levels, codebook re-anchoring and growth) for 2 steps on 2 CPU Ray Train workers.

The starting point is untrained (benchmarks/start.py): this checks that every mechanism runs at full
size and that the result is an official-format 90 M checkpoint, not what the model learns.
"""

from __future__ import annotations

import math

import pytest
import torch

from benchmarks.start import write_start
from fixtures_train import tiny_adapt_args
from jobs import adapt
from sonar_ray.models import beats, tokenizer as tokenizer_lib

pytestmark = pytest.mark.slow


def test_sonar_runs_two_steps_on_the_90m_config_with_two_workers(tiny_corpus, tmp_path, ray_local):
    base = write_start(tmp_path / "base", "base")
    run = adapt.main(tiny_adapt_args(tiny_corpus, str(base), str(tmp_path / "sonar"), "--max-steps", "2",
                                     "--checkpoint-every", "2", "--codebook-grow", "4", "--no-evaluate"))
    assert run.steps == 2 and run.config.num_workers == 2
    for key in ("loss_mlm", "loss_model", "loss_tok"):
        assert math.isfinite(run.final_metrics[key]), (key, run.final_metrics)

    model = beats.load_checkpoint(run.model)
    assert model.cfg == beats.BEATsConfig.preset("base")
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(90.3e6, rel=0.01)
    start = beats.load_checkpoint(str(base))
    moved = [not torch.equal(a, b) for a, b in zip(model.state_dict().values(), start.state_dict().values())]
    assert any(moved)  # two optimizer steps changed the weights
    # Growth fires only where new patches quantize worse than prior ones, which random weights leave to chance.
    assert tokenizer_lib.load_checkpoint(run.tokenizer).cfg.quant_n in (1024, 1024 + 4)
