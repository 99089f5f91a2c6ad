"""Connecting to Ray the same way from a laptop, a test, and `ray job submit`."""

from __future__ import annotations

import os

# Small machines: Ray Data read tasks and Train workers must not starve each other
# (see PLATFORM.md: 2 workers at 1 CPU + a Dataset deadlocks on 2 cores).
LOCAL_MIN_CPUS = 4


def quiet_data_progress() -> None:
    """Ray Data's per-operator progress bars flood job logs; SONAR_PROGRESS=1 brings them back.

    Call it in every process that creates a Dataset (the driver, and Ray Train's controller, which
    builds the training stream on each worker-group start).
    """
    from ray.data import DataContext

    DataContext.get_current().enable_progress_bars = bool(os.environ.get("SONAR_PROGRESS"))


def init_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Join the cluster at `address` / $RAY_ADDRESS (set by `ray job submit`), else start a local one.

    A local cluster advertises at least LOCAL_MIN_CPUS logical CPUs so that a 2-worker trainer and
    its Ray Data pipeline both get scheduled on a 2-core machine. `address="local"` avoids joining a
    stale cluster recorded in /tmp/ray/ray_current_cluster.
    """
    import ray

    if ray.is_initialized():
        return
    quiet_data_progress()
    address = address or os.environ.get("RAY_ADDRESS")
    if address and address != "local":
        ray.init(address=address, log_to_driver=True)
        return
    # Each ray.train.report waits up to one controller health check (2 s by default): on a local
    # cluster a short interval is cheap and saves seconds per report (set before Ray starts).
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5")
    cpus = num_cpus or max(LOCAL_MIN_CPUS, os.cpu_count() or 1)
    ray.init(address="local", num_cpus=cpus, include_dashboard=False, log_to_driver=True,
             configure_logging=True, logging_level="WARNING")
