"""The watcher through the real Ray Jobs API (a `ray start --head` node) and the S3 server."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sonar_ray import storage
from sonar_ray.pipelines.registry import Registry
from watch_helpers import STANDIN, upload

REPO = Path(__file__).resolve().parents[2]


def _watch_cmd(s3_bucket: str, dashboard: str, base: str, script: str, *extra: str,
               lease_ttl: float = 3, prior: str = "", probes: str = "") -> list[str]:
    """A short TTL lets a second watcher take over a killed one's lease within the test; tests with a
    single watcher that trains for real pass a long one, since a loaded CI machine can delay a
    renewal by more than ttl/3 and the watcher then (rightly) stops writing."""
    return [sys.executable, str(REPO / "jobs" / "watch.py"), "--incoming", f"{s3_bucket}/incoming/",
            "--registry", f"{s3_bucket}/registry/", "--base", base, "--ray-address", dashboard,
            "--prior", prior or f"{s3_bucket}/prior/manifests/train.jsonl", "--probes", probes or f"{s3_bucket}/eval/",
            "--python", sys.executable, "--adapt-script", script, "--once", "--lease-ttl", str(lease_ttl), *extra]


def _reports(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def _adapt_jobs(dashboard: str) -> list[str]:
    from ray.job_submission import JobSubmissionClient

    return sorted(j.submission_id for j in JobSubmissionClient(dashboard).list_jobs()
                  if (j.submission_id or "").startswith("sonar-adapt-"))


@pytest.mark.slow
def test_watcher_killed_after_submission_resumes_without_a_duplicate(s3_bucket, ray_head):
    dashboard = ray_head["dashboard_url"]
    base = f"{s3_bucket}/models/prior/model.pt"
    storage.write_bytes_atomic(base, b"base-checkpoint")
    upload(f"{s3_bucket}/incoming", "birds", ["a.wav", "b.wav"])
    cmd = _watch_cmd(s3_bucket, dashboard, base, STANDIN, "--wait")

    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not _adapt_jobs(dashboard):
        assert first.poll() is None and time.time() < deadline, first.communicate()[1][-3000:]
        time.sleep(0.2)
    first.send_signal(signal.SIGKILL)  # right after submission, before any outcome is recorded
    first.wait()
    (vid,) = [v.version for v in Registry(f"{s3_bucket}/registry/").versions("birds")]

    second = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-3000:]
    reports = _reports(second.stdout)
    assert not any(r["started"] or r["resubmitted"] for r in reports)
    assert reports[-1]["finished"] == {vid: "promoted"}
    assert _adapt_jobs(dashboard) == [f"sonar-adapt-{vid}-1"]

    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and _reports(again.stdout)[-1]["started"] == []
    assert _adapt_jobs(dashboard) == [f"sonar-adapt-{vid}-1"]

    # A restarted head lists no jobs: the finished run is still recognised from its outputs.
    from sonar_ray.pipelines.runner import RayJobsRunner

    output = Registry(f"{s3_bucket}/registry/").get(vid).output
    forgotten = RayJobsRunner(dashboard, sys.executable, STANDIN).status(f"sonar-adapt-{vid}-forgotten", output)
    assert forgotten is not None and forgotten.state == "SUCCEEDED"


@pytest.mark.slow
@pytest.mark.timeout(1200)  # two real adaptations through the Jobs API: ~5 min each on a loaded 2-core machine
def test_real_adaptation_job_creates_a_promoted_version(s3_bucket, ray_head, tmp_path):
    """The lead's jobs/adapt.py through the Jobs API on demo audio: one promoted version, then a child.
    The watcher forwards the tiny corpus as the prior set and the probes (no demo data is filled in)."""
    if not (REPO / "jobs" / "adapt.py").exists():
        pytest.skip("jobs/adapt.py is not there yet")
    beats = pytest.importorskip("sonar_ray.models.beats")
    pytest.importorskip("sonar_ray.demo")
    demo = tmp_path / "demo"
    subprocess.run([sys.executable, "-m", "sonar_ray.demo", "--scale", "tiny", "--out", str(demo)],
                   check=True, timeout=600)
    domain = "bioacoustics"
    clips = sorted((demo / "audio" / domain).rglob("*.wav"))
    assert len(clips) >= 4
    base = f"{s3_bucket}/models/prior/model.pt"
    beats.save_checkpoint(beats.BEATs(beats.BEATsConfig.preset("tiny")), base)
    for clip in clips[:2]:
        storage.write_bytes_atomic(f"{s3_bucket}/incoming/{domain}/{clip.name}", clip.read_bytes())
    cmd = _watch_cmd(s3_bucket, ray_head["dashboard_url"], base, str(REPO / "jobs" / "adapt.py"),
                     "--wait", "--max-steps", "2", "--max-forgetting", "1e9", "--adaptability-tolerance", "1e9",
                     lease_ttl=120, prior=str(demo / "manifests" / "train.jsonl"), probes=str(demo))

    first = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    registry = Registry(f"{s3_bucket}/registry/")
    (v1,) = registry.versions(domain)
    assert v1.status == "promoted", v1.reason
    assert {"adaptability", "forgetting"} <= set(v1.metrics) and storage.exists(v1.checkpoint)
    ran = json.loads(storage.read_bytes(storage.join(v1.output, "summary.json")))["config"]
    assert (ran["prior"], ran["probes"]) == (str(demo / "manifests" / "train.jsonl"), str(demo))

    for clip in clips[2:4]:
        storage.write_bytes_atomic(f"{s3_bucket}/incoming/{domain}/{clip.name}", clip.read_bytes())
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    _, v2 = registry.versions(domain)
    assert v2.parent == v1.version and v2.base == v1.checkpoint
    assert sorted(k for k, _ in v2.consumed) == sorted(f"{domain}/{c.name}" for c in clips[2:4])
