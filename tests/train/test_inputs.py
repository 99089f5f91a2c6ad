"""The demo's cached inputs are keyed by what produced them, so a stale cache is never reused."""

from __future__ import annotations

from dataclasses import replace

from sonar_ray.demo import CORPUS_VERSION
from sonar_ray.train import inputs
from sonar_ray.train.pretrain import PretrainConfig


def test_demo_corpus_is_cached_per_generator_version(tmp_path, monkeypatch):
    monkeypatch.setenv("SONAR_HOME", str(tmp_path))
    root = inputs.demo_corpus("tiny")
    assert root == str(tmp_path / f"corpus-tiny-v{CORPUS_VERSION}")
    manifest = tmp_path / f"corpus-tiny-v{CORPUS_VERSION}" / "manifests" / "train.jsonl"
    stamp = manifest.stat().st_mtime_ns
    assert inputs.demo_corpus("tiny") == root and manifest.stat().st_mtime_ns == stamp  # built once


def test_demo_base_model_folder_follows_corpus_and_recipe(tmp_path, monkeypatch):
    monkeypatch.setenv("SONAR_HOME", str(tmp_path))
    recipe = PretrainConfig(preset="tiny", iter1_steps=8)
    folder = inputs.demo_base_dir("/corpus-a", recipe)
    assert folder.parent == tmp_path and folder == inputs.demo_base_dir("/corpus-a", replace(recipe, output="x"))
    assert folder != inputs.demo_base_dir("/corpus-b", recipe)
    assert folder != inputs.demo_base_dir("/corpus-a", replace(recipe, iter1_steps=9))
    assert inputs.demo_base_dir("/corpus-a", name="smoke").name.startswith("smoke-")
    (folder / "model.pt").parent.mkdir(parents=True)
    (folder / "model.pt").write_bytes(b"cached")  # present: returned without pre-training
    assert inputs.demo_base_model("/corpus-a", recipe) == str(folder / "model.pt")
