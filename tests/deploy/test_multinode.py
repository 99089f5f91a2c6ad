"""A two-node Ray cluster on 127.0.0.1: the `ray_head` node plus a second node joined with
`ray start --address`, and an adaptation submitted with `ray job submit` whose 2 Train workers
land on different nodes, as they would on a real cluster."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from conftest import free_port
from procs import stop_process_group
from fixtures_train import tiny_adapt_args

REPO = Path(__file__).resolve().parents[2]
RAY = str(Path(sys.executable).parent / "ray")
pytestmark = pytest.mark.slow

# Each node advertises 4 logical CPUs (ray_head's count) and each Train worker asks for 3: two workers
# cannot share a node, and each node keeps 1 CPU for Ray Data's tasks (no 2-CPU deadlock, PLATFORM.md).
NODE_CPUS, WORKER_CPUS = 4, 3


@pytest.fixture
def second_node(ray_head):
    """A worker node (`ray start --address ... --block`), stopped by PID."""
    temp_dir = tempfile.mkdtemp(prefix="sonar-node2-")  # short: Ray's socket paths must fit 107 chars
    proc = subprocess.Popen(
        [RAY, "start", "--block", f"--address={ray_head['gcs_address']}", "--node-ip-address=127.0.0.1",
         f"--num-cpus={NODE_CPUS}", f"--dashboard-agent-listen-port={free_port()}",
         f"--metrics-export-port={free_port()}", "--object-store-memory=200000000", f"--temp-dir={temp_dir}",
         "--disable-usage-stats"],
        env=dict(os.environ, RAY_AUTH_MODE="disabled"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    try:
        from ray.util.state import list_nodes

        deadline = time.time() + 90
        while len(list_nodes(address=ray_head["dashboard_url"], filters=[("state", "=", "ALIVE")])) < 2:
            assert proc.poll() is None and time.time() < deadline, "the second Ray node did not join"
            time.sleep(1)
        yield ray_head
    finally:
        stop_process_group(proc)
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_adaptation_job_spreads_its_workers_over_two_nodes(second_node, tiny_corpus, tiny_base, tmp_path):
    from ray.util.state import list_actors, list_nodes

    url = second_node["dashboard_url"]
    nodes = {n.node_id for n in list_nodes(address=url, filters=[("state", "=", "ALIVE")])}
    assert len(nodes) == 2
    out = tmp_path / "run"
    args = tiny_adapt_args(tiny_corpus, tiny_base, str(out), "--no-evaluate", "--cpus-per-worker", str(WORKER_CPUS))
    assert args[args.index("--num-workers") + 1] == "2"
    proc = subprocess.run([RAY, "job", "submit", f"--address={url}", "--", sys.executable,
                           str(REPO / "jobs" / "adapt.py"), *args],
                          env=dict(os.environ, RAY_AUTH_MODE="disabled"), capture_output=True, text=True, timeout=540)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]

    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 4 and summary["config"]["num_workers"] == 2
    assert (out / "model.pt").exists()
    workers = list_actors(address=url, filters=[("class_name", "=", "RayTrainWorker")], detail=True)
    assert len(workers) == 2, workers
    assert {w.node_id for w in workers} == nodes  # one worker on each node
