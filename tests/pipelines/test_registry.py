"""The promotion gate and the registry command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from sonar_ray.pipelines.registry import GateConfig, Registry, promotion_gate, version_id
from watch_helpers import standin_watcher, upload

GATE = GateConfig(max_forgetting=0.05, adaptability_tolerance=0.01)


def _m(forgetting=0.0, adaptability=0.6, base=0.6, prior_adapted=0.6):
    return {"forgetting": forgetting, "adaptability": adaptability, "adaptability_base": base,
            "prior_adapted": prior_adapted}


@pytest.mark.parametrize("metrics,root_prior,ok,why", [
    (_m(0.02), None, True, "not worse"),
    (_m(0.02, 0.595), 0.62, True, "not worse"),
    (_m(0.08, 0.9), None, False, "max_forgetting"),
    (_m(0.0, 0.5), None, False, "its base's"),
    (_m(0.0, 0.30, base=0.60), None, False, "its base's"),  # a first version, against the root checkpoint
    (_m(0.04, prior_adapted=0.52), 0.60, False, "against the root"),  # each step small, the sum not
    (_m(float("nan")), None, False, "non-finite"),
    (_m(0.0, float("nan")), None, False, "non-finite"),
    ({"forgetting": 0.0, "adaptability": 0.6}, None, False, "missing"),
    (_m(0.0), float("nan"), False, "non-finite"),
])
def test_promotion_gate(metrics, root_prior, ok, why):
    passed, reason = promotion_gate(metrics, root_prior, GATE)
    assert passed is ok and why in reason


def test_the_gate_bounds_forgetting_against_the_root_over_promotions(watch_cfg, monkeypatch):
    registry = Registry(watch_cfg.registry)
    steps = [{"forgetting": 0.04, "prior_base": 0.60, "prior_adapted": 0.56},   # 0.04 <= 0.05: promoted
             {"forgetting": 0.04, "prior_base": 0.56, "prior_adapted": 0.52}]   # 0.04 again, 0.08 from the root
    for i, metrics in enumerate(steps):
        monkeypatch.setenv("SONAR_STANDIN_METRICS", json.dumps(metrics))
        upload(watch_cfg.incoming, "birds", [f"{i}.wav"], seed=i)
        standin_watcher(watch_cfg).poll()
    v1, v2 = registry.versions("birds")
    assert v1.status == "promoted" and v2.status == "rejected" and "against the root 0.08" in v2.reason
    assert registry.pointer("birds").version == v1.version


def test_a_first_version_worse_than_the_root_is_not_promoted(watch_cfg, monkeypatch):
    monkeypatch.setenv("SONAR_STANDIN_METRICS", json.dumps({"adaptability": 0.30, "adaptability_base": 0.60}))
    upload(watch_cfg.incoming, "birds", ["a.wav"])
    standin_watcher(watch_cfg).poll()
    (v,) = Registry(watch_cfg.registry).versions("birds")
    assert v.status == "rejected" and "its base's 0.6000" in v.reason


def test_version_id_is_deterministic_in_the_object_set():
    a = version_id("birds", "p", [("x.wav", "1"), ("y.wav", "2")])
    assert a == version_id("birds", "p", [("y.wav", "2"), ("x.wav", "1")])
    assert a != version_id("birds", "p", [("x.wav", "1"), ("y.wav", "3")])  # rewritten object
    assert a != version_id("birds", "q", [("x.wav", "1"), ("y.wav", "2")])
    assert a.startswith("birds-")


def _cli(registry: str, *args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "sonar_ray.registry", "--registry", registry, *args],
                         capture_output=True, text=True, env=dict(os.environ), timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_cli_lists_shows_rolls_back_and_promotes(watch_cfg):
    upload(watch_cfg.incoming, "birds", ["a.wav"])
    standin_watcher(watch_cfg).poll()
    upload(watch_cfg.incoming, "birds", ["b.wav"], seed=2)
    standin_watcher(watch_cfg).poll()
    v1, v2 = Registry(watch_cfg.registry).versions("birds")
    listing = _cli(watch_cfg.registry, "list").splitlines()
    assert [line.split()[:3] for line in listing] == [[v1.version, "promoted", f"parent=-"],
                                                     ["*", v2.version, "promoted"]]
    shown = json.loads(_cli(watch_cfg.registry, "show", v2.version))
    assert shown["parent"] == v1.version and shown["current"] is True and shown["consumed"][0][0] == "birds/b.wav"

    assert v1.version in _cli(watch_cfg.registry, "rollback", "birds")
    registry = Registry(watch_cfg.registry)
    assert registry.pointer("birds").version == v1.version
    assert registry.get(v2.version).reason == "rolled back by operator"

    _cli(watch_cfg.registry, "promote", v2.version, "--reason", "re-checked")
    assert registry.pointer("birds").version == v2.version
    assert registry.get(v2.version).status == "promoted"
