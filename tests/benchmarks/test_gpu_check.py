"""The prepared GPU check runs its model-only part end to end (CPU dry run, tiny preset)."""

from __future__ import annotations

import json

import pytest
import torch

from benchmarks import gpu_check


def test_gpu_check_dry_run_counts_flops_and_times_sonar_steps(tmp_path):
    out = tmp_path / "figures.json"
    figures = gpu_check.main(["--device", "cpu", "--preset", "tiny", "--batch-size", "2", "--clip-seconds", "2",
                              "--steps", "1", "--pipeline-steps", "0", "--peak-tflops", "1", "--out", str(out)])
    assert json.loads(out.read_text()) == figures
    assert figures["flops_per_step"] > 0 and figures["model_clips_per_s"] > 0
    assert figures["mfu"] == pytest.approx(figures["flops_per_step"] / figures["model_step_s"] / 1e12)


def test_gpu_check_refuses_cuda_without_a_gpu():
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    with pytest.raises(SystemExit, match="no CUDA device"):
        gpu_check.main(["--pipeline-steps", "0"])
