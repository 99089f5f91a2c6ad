"""Shared test infrastructure: real servers on loopback, a real local Ray, the BEATs fixtures.

Every server started here listens on 127.0.0.1 only and is stopped when its fixture ends.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from procs import stop_process_group

# Before anything imports ray / wandb.
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("TQDM_DISABLE", "1")

REPO = Path(__file__).resolve().parents[1]
# The official BEATs reference outputs, copied into the repository so parity runs on a plain clone.
FIXTURES = Path(os.environ.get("SONAR_FIXTURES", REPO / "tests" / "fixtures" / "beats"))
# The official code itself (for same-machine bit-exact checks); not redistributed, so optional.
REFERENCE = Path(os.environ.get("SONAR_REFERENCE", REPO.parent / "shared" / "reference"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    if not (FIXTURES / "expected.pt").exists():
        pytest.skip(f"BEATs reference fixtures not found at {FIXTURES} (set SONAR_FIXTURES)")
    return FIXTURES


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    if not (REFERENCE / "official.py").exists():
        pytest.skip(f"official BEATs reference code not found at {REFERENCE} (set SONAR_REFERENCE): "
                    "same-machine bit-exact checks need it; the stored-fixture parity tests still ran")
    return REFERENCE


@pytest.fixture(scope="session")
def s3_server():
    """A real S3-compatible server (moto) on 127.0.0.1; yields its endpoint URL.

    Sets the standard AWS_* variables for the whole session so that boto3, s3fs, pyarrow
    and Ray Data (workers inherit the driver's environment) all reach it.
    """
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield endpoint
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture
def s3_bucket(s3_server, request):
    """A fresh, empty bucket named after the test; yields 's3://<bucket>'."""
    import boto3

    name = "t-" + "".join(c if c.isalnum() else "-" for c in request.node.name.lower())[:50].strip("-")
    boto3.client("s3").create_bucket(Bucket=name)
    yield f"s3://{name}"


@pytest.fixture(scope="session")
def ray_local(s3_server):
    """One embedded local Ray cluster shared by the tests that need it.

    Depends on `s3_server`: Ray workers keep the environment the cluster started with, so the
    AWS_* variables of the test S3 server must be set before Ray starts.
    """
    import ray

    from sonar_ray.cluster import init_ray

    init_ray()
    yield ray
    ray.shutdown()


@pytest.fixture
def ray_head(tmp_path):
    """A real head node (`ray start --head --block`) on 127.0.0.1 with the Jobs API.

    Stopped by PID (never a machine-wide `ray stop`), and the stale-cluster file it leaves
    is removed so later `ray.init()` calls don't try to reach it.
    """
    port, dash = free_port(), free_port()
    env = dict(os.environ, RAY_AUTH_MODE="disabled")
    ray_bin = str(Path(sys.executable).parent / "ray")
    proc = subprocess.Popen(
        [ray_bin, "start", "--head", "--block", f"--port={port}", "--node-ip-address=127.0.0.1",
         "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}", f"--dashboard-agent-listen-port={free_port()}",
         f"--metrics-export-port={free_port()}", "--num-cpus=4",
         "--disable-usage-stats", f"--temp-dir={tmp_path / 'ray'}" if len(str(tmp_path)) < 60 else "--temp-dir=/tmp/ray-test"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{dash}"
    try:
        from ray.job_submission import JobSubmissionClient

        # Ready = a no-op job runs to completion (the dashboard answers before its job agent does).
        deadline = time.time() + 120
        job = None
        while True:
            try:
                client = JobSubmissionClient(url)
                job = job or client.submit_job(entrypoint="true")
                if client.get_job_status(job).is_terminal():
                    break
            except Exception:
                pass
            if time.time() > deadline or proc.poll() is not None:
                raise RuntimeError("ray head node did not come up")
            time.sleep(1)
        yield {"gcs_address": f"127.0.0.1:{port}", "dashboard_url": url}
    finally:
        stop_process_group(proc)
        stale = Path("/tmp/ray/ray_current_cluster")
        if stale.exists() and str(port) in stale.read_text():
            stale.unlink()


from fixtures_corpus import tiny_corpus, tiny_corpus_s3  # noqa: E402,F401  (shared corpus fixtures)
from fixtures_train import tiny_base  # noqa: E402,F401  (shared pre-trained tiny base model)
