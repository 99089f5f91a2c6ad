"""The promotion gate and the registry command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from sonar_ray.pipelines.registry import GateConfig, Registry, promotion_gate, version_id
from sonar_ray.pipelines.watch import Watcher
from watch_helpers import upload

GATE = GateConfig(max_forgetting=0.05, adaptability_tolerance=0.01)


@pytest.mark.parametrize("metrics,parent,ok,why", [
    ({"forgetting": 0.02, "adaptability": 0.6}, {"adaptability": 0.6}, True, "not worse"),
    ({"forgetting": 0.02, "adaptability": 0.595}, {"adaptability": 0.6}, True, "not worse"),
    ({"forgetting": 0.08, "adaptability": 0.9}, {"adaptability": 0.6}, False, "max_forgetting"),
    ({"forgetting": 0.0, "adaptability": 0.5}, {"adaptability": 0.6}, False, "parent's"),
    ({"forgetting": 0.0, "adaptability": 0.1}, {}, True, "not worse"),  # root parent: no adaptability to beat
])
def test_promotion_gate(metrics, parent, ok, why):
    passed, reason = promotion_gate(metrics, parent, GATE)
    assert passed is ok and why in reason


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
    Watcher(watch_cfg).poll()
    upload(watch_cfg.incoming, "birds", ["b.wav"], seed=2)
    Watcher(watch_cfg).poll()
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
