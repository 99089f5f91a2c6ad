"""The watcher's inline runner with the real pipeline: the library's adapt(cfg) trains and evaluates
in the watcher's process, and the promotion gate decides on the real metrics."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from sonar_ray import storage
from sonar_ray.pipelines.registry import GateConfig, Registry, promotion_gate
from sonar_ray.pipelines.watch import WatchConfig, Watcher


@pytest.mark.slow
def test_inline_watcher_adapts_for_real_and_gates_on_the_real_metrics(tiny_corpus, tiny_base, tmp_path):
    incoming = tmp_path / "incoming" / "speech"
    incoming.mkdir(parents=True)
    for clip in sorted((Path(tiny_corpus) / "audio" / "speech").rglob("*.wav"))[:4]:
        shutil.copy(clip, incoming / clip.name)
    # The tiny runs' settings (fixtures_train.TINY_RUN) as a deployment's --adapt-config file.
    run_config = tmp_path / "adapt.yaml"
    run_config.write_text(yaml.safe_dump({"clip_seconds": 1.0, "batch_size": 4, "num_workers": 2, "log_every": 1,
                                          "checkpoint_every": 2, "wandb": False}))
    cfg = WatchConfig(incoming=str(tmp_path / "incoming"), registry=str(tmp_path / "registry"), base=tiny_base,
                      prior=tiny_corpus, probes=tiny_corpus, once=True, inline=True, max_steps=2,
                      adapt_config=str(run_config), settle_seconds=0.0, lease_ttl=600.0)
    report = Watcher(cfg).poll()

    registry = Registry(cfg.registry)
    (v,) = registry.versions("speech")
    assert report.started == [v.version] and v.status in ("promoted", "rejected"), v.reason
    summary = json.loads(storage.read_bytes(storage.join(v.output, "summary.json")))
    assert summary["steps"] == 2
    assert (summary["config"]["prior"], summary["config"]["probes"]) == (tiny_corpus, tiny_corpus)
    assert summary["data"]["new_clips"] + sum(summary["data"]["skipped"].values()) == 4
    passes, _ = promotion_gate(v.metrics, None, GateConfig(cfg.max_forgetting, cfg.adaptability_tolerance))
    assert v.status == ("promoted" if passes else "rejected")
    assert (registry.pointer("speech").version == v.version) == passes
