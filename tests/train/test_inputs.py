"""A run's inputs: the demo's only when asked for (keyed by what produced them, so a stale cache is
never reused); any other run names every input it needs, or stops before any work."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from sonar_ray.config import parse_cli
from sonar_ray.demo import CORPUS_VERSION
from sonar_ray.demo import inputs as demo_inputs
from sonar_ray.train import inputs
from sonar_ray.train.config import TrainConfig
from sonar_ray.train.pretrain import PretrainConfig


def test_demo_corpus_is_cached_per_generator_version(tmp_path, monkeypatch):
    monkeypatch.setenv("SONAR_HOME", str(tmp_path))
    root = demo_inputs.demo_corpus("tiny")
    assert root == str(tmp_path / f"corpus-tiny-v{CORPUS_VERSION}")
    manifest = tmp_path / f"corpus-tiny-v{CORPUS_VERSION}" / "manifests" / "train.jsonl"
    stamp = manifest.stat().st_mtime_ns
    assert demo_inputs.demo_corpus("tiny") == root and manifest.stat().st_mtime_ns == stamp  # built once


def test_demo_base_model_folder_follows_corpus_and_recipe(tmp_path, monkeypatch):
    monkeypatch.setenv("SONAR_HOME", str(tmp_path))
    recipe = PretrainConfig(preset="tiny", iter1_steps=8)
    folder = demo_inputs.demo_base_dir("/corpus-a", recipe)
    assert folder.parent == tmp_path and folder == demo_inputs.demo_base_dir("/corpus-a", replace(recipe, output="x"))
    assert folder != demo_inputs.demo_base_dir("/corpus-b", recipe)
    assert folder != demo_inputs.demo_base_dir("/corpus-a", replace(recipe, iter1_steps=9))
    assert demo_inputs.demo_base_dir("/corpus-a", name="smoke").name.startswith("smoke-")
    (folder / "model.pt").parent.mkdir(parents=True)
    (folder / "model.pt").write_bytes(b"cached")  # present: returned without pre-training
    assert demo_inputs.demo_base_model("/corpus-a", recipe) == str(folder / "model.pt")


# --- demo data only when asked for ---------------------------------------------------------------------

REPO = Path(__file__).resolve().parents[2]


def test_a_run_given_its_own_data_stops_before_any_work_without_a_prior_set(tmp_path):
    """No Ray, no inspection, no demo corpus: one line naming --prior, exit 2, in seconds."""
    home, ray_tmp = tmp_path / "sonar-home", tmp_path / "ray"
    (tmp_path / "new").mkdir()
    env = dict(os.environ, SONAR_HOME=str(home), RAY_TMPDIR=str(ray_tmp))
    t0 = time.time()
    out = subprocess.run([sys.executable, str(REPO / "jobs" / "adapt.py"), "--domain", "speech",
                          "--data", str(tmp_path / "new"), "--base", str(tmp_path / "model.pt"),
                          "--probes", str(tmp_path), "--output", str(tmp_path / "out")],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)
    elapsed = time.time() - t0
    assert out.returncode == 2, out.stdout + out.stderr
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith("error: --prior is missing"), line
    assert elapsed < 30, elapsed  # imports only: a corpus build or a Ray start takes minutes here
    assert not home.exists() and not ray_tmp.exists()  # no demo corpus built, no Ray started
    assert not (tmp_path / "new" / ".sonar_cache").exists() and not (tmp_path / "out").exists()  # nothing inspected
    Path(line.rsplit("traceback: ", 1)[1].rstrip(")")).unlink()


@pytest.mark.parametrize("argv,missing", [
    (["--data", "new/"], "--prior"),
    (["--prior", "prior/"], "--data"),
    (["--data", "new/", "--prior", "prior/", "--base", "m.pt"], "--probes"),
    (["--data", "new/", "--prior", "prior/", "--probes", "c/"], "--base"),
    (["--data", "new/", "--method", "dcpt", "--no-evaluate"], "--base"),  # no replay: no prior needed
])
def test_a_missing_input_is_named_and_never_filled_with_demo_data(argv, missing, tmp_path, monkeypatch):
    monkeypatch.setenv("SONAR_HOME", str(tmp_path))
    with pytest.raises(ValueError, match=f"^{missing} is missing"):
        inputs.resolve(parse_cli(TrainConfig, argv))
    assert not any(tmp_path.iterdir())  # nothing built


@pytest.mark.parametrize("argv", [
    ["--data", "new/", "--base", "m.pt", "--probes", "c/", "--method", "dcpt"],
    ["--data", "new/", "--base", "m.pt", "--probes", "c/", "--replay-ratio", "0"],
    ["--data", "new/", "--prior", "p/", "--base", "m.pt", "--no-evaluate"],
    ["--data", "new/", "--prior", "p/", "--probes", "c/", "--method", "scratch"],
])
def test_an_input_a_run_does_not_use_may_be_left_out(argv, tmp_path, monkeypatch):
    monkeypatch.setenv("SONAR_HOME", str(tmp_path))
    cfg, _ = inputs.resolve(parse_cli(TrainConfig, argv))
    assert cfg.data == "new/" and not cfg.demo and not any(tmp_path.iterdir())  # no demo corpus built


def test_demo_inputs_only_for_the_bare_demo_command_or_demo_flag():
    assert inputs.uses_demo(parse_cli(TrainConfig, ["--domain", "music", "--method", "dcpt"]))
    assert inputs.uses_demo(parse_cli(TrainConfig, ["--demo", "--data", "new/"]))
    assert not inputs.uses_demo(parse_cli(TrainConfig, ["--base", "m.pt"]))


def test_a_demo_run_fills_only_what_was_not_given_and_records_it(tmp_path, monkeypatch):
    monkeypatch.setenv("SONAR_HOME", str(tmp_path))
    root = demo_inputs.demo_corpus("tiny")
    monkeypatch.setattr(demo_inputs, "demo_corpus", lambda **_: root)  # the tiny corpus stands in for the demo one
    cfg, _ = inputs.resolve(parse_cli(TrainConfig, ["--demo", "--data", "new/", "--method", "scratch",
                                                    "--output", str(tmp_path / "out")]))
    assert (cfg.data, cfg.prior, cfg.probes, cfg.base) == ("new/", f"{root}/manifests/train.jsonl", root, None)
    assert cfg.demo
