"""Connecting to Ray the same way from a laptop, a test, and `ray job submit`."""

from __future__ import annotations

import logging
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


DRIVER_LOG = "sonar-driver.log"  # Ray's driver-side messages, beside the workers' logs of the session
RAY_LOGGERS = ("ray", "ray.data", "py.warnings")  # ray.train, ray.tune, ... propagate to "ray"; ray.data does not


def verbose() -> bool:
    """SONAR_VERBOSE=1: Ray's messages and every worker's output on the console again (debugging)."""
    return bool(os.environ.get("SONAR_VERBOSE"))


class _DriverLog(logging.Handler):
    """Holds records until the Ray session's log folder exists (ray.init creates it), then writes there."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.pending: list[logging.LogRecord] = []
        self.file: logging.FileHandler | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if self.file is None:
            self.pending.append(record)
        else:
            self.file.emit(record)

    def open(self, path: str) -> None:
        self.file = logging.FileHandler(path)
        self.file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        for record in self.pending:
            self.file.emit(record)
        self.pending.clear()


def _route_ray_logging() -> _DriverLog:
    """Ray's loggers keep only errors on the console; everything from INFO up goes to the driver log.
    Python warnings (e.g. Ray's deprecation notices) go there too."""
    logging.captureWarnings(True)
    handler = _DriverLog()
    for name in RAY_LOGGERS:
        logger = logging.getLogger(name)
        for h in list(logger.handlers):
            if isinstance(h, _DriverLog):  # an earlier session's (ray.shutdown, then init_ray again)
                logger.removeHandler(h)
            else:
                h.setLevel(logging.ERROR)
        logger.addHandler(handler)
    return handler


def init_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Join the cluster at `address` / $RAY_ADDRESS (set by `ray job submit`), else start a local one.

    A local cluster advertises at least LOCAL_MIN_CPUS logical CPUs so that a 2-worker trainer and
    its Ray Data pipeline both get scheduled on a 2-core machine. `address="local"` avoids joining a
    stale cluster recorded in /tmp/ray/ray_current_cluster.

    Console: workers' output stays in the session's log files (log_to_driver=False), so neither
    Ray's controller chatter nor the workers' lines (once per worker) reach the console or a job's
    log; the one line printed here says where they are. Progress comes from sonar_ray.progress.
    """
    import ray

    if ray.is_initialized():
        return
    quiet_data_progress()
    import ray.data  # noqa: F401  (configures Ray Data's loggers, which _route_ray_logging then quiets)

    driver_log = None if verbose() else _route_ray_logging()
    address = address or os.environ.get("RAY_ADDRESS")
    if address and address != "local":
        ray.init(address=address, log_to_driver=verbose())
    else:
        # Each ray.train.report waits up to one controller health check (2 s by default): on a local
        # cluster a short interval is cheap and saves seconds per report (set before Ray starts).
        os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5")
        cpus = num_cpus or max(LOCAL_MIN_CPUS, os.cpu_count() or 1)
        ray.init(address="local", num_cpus=cpus, include_dashboard=False, log_to_driver=verbose(),
                 configure_logging=True, logging_level="INFO" if driver_log else "WARNING")
    if driver_log is not None:
        logs = ray._private.worker._global_node.get_logs_dir_path()
        driver_log.open(os.path.join(logs, DRIVER_LOG))
        print(f"[ray] full logs: {logs} ({DRIVER_LOG}; worker-*.out/err on each node)", flush=True)


def require_gpus(needed: float, what: str) -> None:
    """Fail now when the cluster lacks the GPUs `what` asks for: Ray would wait forever for actors no
    node can host. (An autoscaling cluster counts only the nodes it has up at this moment.)"""
    import ray

    have = ray.cluster_resources().get("GPU", 0.0)
    if needed > have:
        raise ValueError(f"{what} needs {needed:g} GPUs; the Ray cluster has {have:g}")
