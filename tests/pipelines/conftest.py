"""Fixtures for the watcher tests: a bucket-or-folder root and an inline watcher config on it."""

from __future__ import annotations

import pytest

from sonar_ray import storage
from sonar_ray.pipelines.watch import WatchConfig


@pytest.fixture(params=["local", "s3"])
def root(request, tmp_path) -> str:
    """A local folder or a fresh bucket on the test S3 server."""
    if request.param == "local":
        return str(tmp_path)
    return request.getfixturevalue("s3_bucket")


@pytest.fixture
def watch_cfg(root) -> WatchConfig:
    """Inline watcher config on `root` with a base checkpoint in place (`standin_watcher` runs it with the
    stand-in adaptation)."""
    base = storage.join(root, "models", "prior", "model.pt")
    storage.write_bytes_atomic(base, b"base-checkpoint")
    return WatchConfig(incoming=storage.join(root, "incoming"), registry=storage.join(root, "registry"),
                       base=base, prior=storage.join(root, "prior", "manifests", "train.jsonl"),
                       probes=storage.join(root, "eval"), once=True, inline=True, lease_ttl=60.0,
                       settle_seconds=0.0)
