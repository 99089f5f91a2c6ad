"""`make setup` picks the right torch build and the tested pins on CPU and GPU machines."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def _setup_commands(tmp_path: Path, gpu: bool) -> list[str]:
    """The commands `make setup` would run (make -n), with or without an nvidia-smi on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "nvidia-smi"
    if gpu:
        fake.write_text("#!/bin/sh\nexit 0\n")
        fake.chmod(0o755)
    path = os.pathsep.join([str(bin_dir)] + [p for p in os.environ["PATH"].split(os.pathsep)
                                             if not (Path(p) / "nvidia-smi").exists()])
    env = {k: v for k, v in os.environ.items() if k not in ("GPU", "CONSTRAINTS", "TORCH_INDEX")}
    proc = subprocess.run(["make", "-n", "setup", f"VENV={tmp_path / 'venv'}"], cwd=REPO, env={**env, "PATH": path},
                          capture_output=True, text=True, check=True)
    return [line for line in proc.stdout.splitlines() if "pip install" in line and "--upgrade pip" not in line]


def test_cpu_machine_takes_torch_from_the_cpu_index_with_the_tested_pins(tmp_path):
    torch_line, project_line = _setup_commands(tmp_path, gpu=False)
    assert f"--extra-index-url {CPU_INDEX}" in torch_line and "--no-deps" in torch_line
    assert "-c constraints/cpu.txt" in torch_line and torch_line.split()[-3] == "torch"
    # The rest comes from the ordinary indexes only (the CPU index hosts torch, not the project's deps).
    assert "-c constraints/cpu.txt" in project_line and CPU_INDEX not in project_line and '-e ".[dev]"' in project_line


def test_gpu_machine_keeps_the_pins_and_pypis_cuda_torch(tmp_path):
    (project_line,) = _setup_commands(tmp_path, gpu=True)
    assert "-c constraints/gpu.txt" in project_line and CPU_INDEX not in project_line
    gpu = [l for l in (REPO / "constraints" / "gpu.txt").read_text().splitlines() if l and not l.startswith("#")]
    assert gpu == ["-c cpu.txt"]  # the same tested pins, torch==2.13.0 included


def test_the_pins_are_the_versions_the_tests_run_with():
    pins = [Requirement(l) for l in (REPO / "constraints" / "cpu.txt").read_text().splitlines()
            if l.strip() and not l.startswith("#")]
    assert "torch==2.13.0" in {str(p) for p in pins}
    for pin in pins:
        (spec,) = pin.specifier
        installed = importlib.metadata.version(pin.name).split("+")[0]  # 2.13.0+cpu is torch==2.13.0
        assert installed == spec.version, f"{pin}: this environment has {installed}"
