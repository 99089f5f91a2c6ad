"""The bucket watcher: poll arrivals, plan versions, run adaptations, gate promotions.

Crash safety comes from ordering. For each new version the watcher first writes its manifest and its
record (status `running`, deterministic id and Ray submission id), and only then submits. Whatever
point a watcher dies at, the next poll finds the record and asks the runner about that submission id:
unknown → submit it now, in flight → wait, finished → record the outcome. Objects named by any record
are consumed, so they are never planned twice; objects not yet named by one are never lost.
"""

from __future__ import annotations

import json
import logging
import math
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from sonar_ray import storage
from sonar_ray.pipelines.inventory import ObjectInfo, PoisonArrival, arrival_rows, list_incoming, probe_hours
from sonar_ray.pipelines.lease import Lease, LeaseLost
from sonar_ray.pipelines.registry import GateConfig, Registry, Version, promotion_gate, version_id
from sonar_ray.pipelines.runner import FINISHED, AdaptRequest, InlineRunner, RayJobsRunner, Runner

log = logging.getLogger(__name__)


@dataclass
class WatchConfig:
    """Watch `<incoming>/<domain>/...` and adapt each domain's current model on new arrivals."""

    incoming: str = ""           # s3:// prefix or local folder with one sub-folder per domain
    registry: str = ""           # s3:// prefix or local folder holding the lineage registry
    base: str = ""               # checkpoint a domain without a current version is adapted from
    prior: str = ""              # prior (replay) audio of every adaptation: folder/prefix or manifest URI
    probes: str = ""             # corpus root with manifests/probes.jsonl the promotion gate scores on
    interval: float = 300.0      # seconds between polls when looping
    once: bool = False           # one poll, then exit (cron / Kubernetes CronJob)
    wait: bool = False           # with --once: poll until it held the lease and nothing is in flight
    min_new_clips: int = 1       # adapt a domain only once this many new clips arrived ...
    min_new_hours: float = 0.0   # ... and this many hours (reads audio headers when > 0)
    settle_seconds: float = 10.0  # local files changed more recently are left for a later poll (copy in progress)
    ray_address: str = ""        # Jobs API address; "" = $RAY_ADDRESS or http://127.0.0.1:8265
    inline: bool = False         # run adaptations in this process (the library's adapt(cfg)) instead of as Ray jobs
    python: str = "python"       # interpreter on the cluster that runs the adaptation job
    adapt_script: str = "jobs/adapt.py"  # the adaptation job, relative to working_dir on the cluster
    working_dir: str = ""        # shipped as the job's runtime_env working_dir when set
    adapt_config: str = ""       # --config FILE for the adaptation ("" = its defaults)
    max_steps: int = 0           # --max-steps for the adaptation (0 = its default)
    evaluate: bool = True        # without evaluation there are no metrics: versions wait for a manual promote
    max_forgetting: float = 0.05  # promotion gate: forgetting against the parent and against the root <= this
    adaptability_tolerance: float = 0.0  # gate: adaptability may be this much below its base's
    max_attempts: int = 3        # a failed adaptation is retried until this many attempts, then reported
    lease_ttl: float = 600.0     # seconds; a poll renews its lease every ttl/3
    holder: str = ""             # lease holder name ("" = host:pid)

    def __post_init__(self):
        positive = {"interval": self.interval, "lease_ttl": self.lease_ttl}
        at_least = {"min_new_clips": (self.min_new_clips, 0), "min_new_hours": (self.min_new_hours, 0),
                    "max_steps": (self.max_steps, 0), "max_attempts": (self.max_attempts, 1),
                    "settle_seconds": (self.settle_seconds, 0)}
        for name, value in positive.items():
            if not value > 0:  # also rejects NaN
                raise ValueError(f"--{name.replace('_', '-')} must be > 0, got {value}")
        for name, (value, low) in at_least.items():
            if not value >= low:
                raise ValueError(f"--{name.replace('_', '-')} must be >= {low}, got {value}")
        for name in ("max_forgetting", "adaptability_tolerance"):  # negative bounds are strict gates, not errors
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"--{name.replace('_', '-')} must be a finite number, got {getattr(self, name)}")


@dataclass
class PollReport:
    acted: bool = True                     # False: another watcher holds the lease
    started: list[str] = field(default_factory=list)
    resubmitted: list[str] = field(default_factory=list)
    finished: dict[str, str] = field(default_factory=dict)   # version -> final status
    in_flight: list[str] = field(default_factory=list)
    waiting: dict[str, dict] = field(default_factory=dict)   # domain -> {"clips", "hours"} below thresholds
    failed: dict[str, str] = field(default_factory=dict)     # version -> reason, attempts exhausted
    quarantined: dict[str, str] = field(default_factory=dict)  # incoming key -> why it can never be used
    errors: dict[str, str] = field(default_factory=dict)     # domain -> error that stopped its poll (others went on)

    def to_json(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True)


def code_version() -> str:
    """The git commit of this checkout (with '+dirty'), else the installed package version."""
    repo = Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        from importlib.metadata import version

        return version("sonar-ray")


class _KeepAlive:
    """Renews the lease every ttl/3 from a background thread while a poll runs (inline runs are long).

    A storage error is retried every ttl/10 while the lease still has a third of its TTL left; after
    that (or when someone else holds the lease) `lost` is set and the watcher stops writing."""

    def __init__(self, lease: Lease):
        self.lease, self.lost = lease, threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.lease.ttl_s / 3):
            while True:
                try:
                    self.lease.renew()
                    break
                except LeaseLost:
                    self.lost.set()
                    return
                except Exception as e:  # noqa: BLE001 - a storage hiccup: retry while the lease lasts
                    if self.lease.remaining() < self.lease.ttl_s / 3:
                        log.error("could not renew lease %s before it ran low (%s): stopping", self.lease.uri, e)
                        self.lost.set()
                        return
                    log.warning("renewing lease %s failed (%s); retrying", self.lease.uri, e)
                    if self._stop.wait(self.lease.ttl_s / 10):
                        return

    def __enter__(self) -> "_KeepAlive":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


class Watcher:
    def __init__(self, cfg: WatchConfig, runner: Runner | None = None):
        for name in ("incoming", "registry", "base", "prior"):
            if not getattr(cfg, name):
                raise ValueError(f"--{name} is required")
        if cfg.evaluate and not cfg.probes:
            raise ValueError("--probes is required: the promotion gate scores adaptations on them "
                             "(--no-evaluate: versions wait for a manual promote)")
        self.cfg = cfg
        self.registry = Registry(cfg.registry, fence=self._check_lease)  # every registry write checks the lease
        self.runner = runner or (InlineRunner() if cfg.inline else
                                 RayJobsRunner(cfg.ray_address, cfg.python, cfg.adapt_script, cfg.working_dir))
        self.lease = Lease(self.registry.lease_uri, cfg.lease_ttl, cfg.holder or None)
        self.gate = GateConfig(cfg.max_forgetting, cfg.adaptability_tolerance)
        self._keepalive: _KeepAlive | None = None

    # --- the poll ---
    def poll(self) -> PollReport:
        """One pass over every domain, under the registry lease; a no-op if another watcher holds it."""
        report = PollReport()
        if not self.lease.acquire():
            report.acted = False
            return report
        try:
            with _KeepAlive(self.lease) as self._keepalive:
                arrivals: dict[str, list[ObjectInfo]] = {}
                for o in list_incoming(self.cfg.incoming, self.cfg.settle_seconds):
                    arrivals.setdefault(o.domain, []).append(o)
                for domain in sorted(set(arrivals) | set(self.registry.domains())):
                    self._check_lease()
                    try:
                        self._poll_domain(domain, arrivals.get(domain, []), report)
                    except LeaseLost:
                        raise
                    except Exception as e:  # noqa: BLE001 - one domain's trouble must not stall the others
                        log.exception("poll of domain %s failed", domain)
                        report.errors[domain] = f"{type(e).__name__}: {e}"[:2000]
        finally:
            self._keepalive = None
            self.lease.release()
        return report

    def _check_lease(self) -> None:
        if self._keepalive is not None and self._keepalive.lost.is_set():
            raise LeaseLost(f"lease {self.lease.uri} was lost mid-poll; stopping before the next write")
        self.lease.fence()

    def _poll_domain(self, domain: str, objects: list[ObjectInfo], report: PollReport) -> None:
        versions = self.registry.versions(domain)
        for v in versions:
            if v.status == "running":
                self.reconcile(v, report)
        if any(v.status == "running" for v in versions):
            return  # one adaptation per domain at a time: the next one builds on its outcome
        consumed = {(k, e) for v in versions for k, e in v.consumed}
        consumed |= {(k, q["etag"]) for k, q in self.registry.quarantined(domain).items()}
        new, rows, poison = [], [], {}
        for o in objects:
            if o.identity in consumed:
                continue
            try:
                rows += arrival_rows(o, domain)
                new.append(o)
            except PoisonArrival as e:
                poison[o.key] = {"etag": o.etag, "reason": str(e)}
        if poison:
            self.registry.quarantine(domain, poison)
            report.quarantined.update({k: p["reason"] for k, p in poison.items()})
            log.warning("quarantined %d arrivals of %s: %s", len(poison), domain, report.quarantined)
        if not new:
            return
        hours = probe_hours(rows) if self.cfg.min_new_hours > 0 else 0.0
        if len(rows) < self.cfg.min_new_clips or hours < self.cfg.min_new_hours:
            report.waiting[domain] = {"clips": len(rows), "hours": round(hours, 4)}
            return
        version = self.reserve(domain, new, rows)
        if version is not None:
            report.started.append(version.version)
            self.launch(version)
            if self.runner.synchronous:
                self.reconcile(version, report)
            else:
                report.in_flight.append(version.version)

    def reserve(self, domain: str, new: list[ObjectInfo], rows: list[dict]) -> Version | None:
        """Write the manifest and the `running` record of the version planned on `new` (before any submit)."""
        self._check_lease()
        pointer = self.registry.pointer(domain)
        parent = self.registry.get(pointer.version) if pointer.version else None
        base = parent.checkpoint if parent else self.cfg.base
        vid = version_id(domain, parent.version if parent else base, [o.identity for o in new])
        vdir = self.registry.version_dir(vid)
        manifest = storage.join(vdir, "manifest.jsonl")
        storage.write_bytes_atomic(manifest, "".join(json.dumps(r) + "\n" for r in rows).encode())
        cfg = self.cfg
        version = Version(
            version=vid, domain=domain, parent=parent.version if parent else None, base=base,
            consumed=[list(o.identity) for o in new], manifest=manifest, output=self.registry.attempt_output(vid, 1),
            config={"max_steps": cfg.max_steps, "adapt_config": cfg.adapt_config, "evaluate": cfg.evaluate,
                    "prior": cfg.prior, "probes": cfg.probes,
                    "max_forgetting": cfg.max_forgetting, "adaptability_tolerance": cfg.adaptability_tolerance},
            code_version=code_version(), job_id=f"sonar-adapt-{vid}-1")
        version.set_status("running", f"planned on {len(new)} new objects ({len(rows)} clips)")
        if not self.registry.create(version):
            log.warning("version %s already recorded by another writer; leaving it alone", vid)
            return None
        return version

    def _request(self, v: Version) -> AdaptRequest:
        return AdaptRequest(v.job_id, v.domain, v.manifest, v.base, v.output, self.cfg.max_steps,
                            self.cfg.adapt_config, self.cfg.evaluate, self.cfg.prior, self.cfg.probes)

    def launch(self, v: Version) -> None:
        self._check_lease()
        self.runner.submit(self._request(v))

    # --- outcomes ---
    def reconcile(self, v: Version, report: PollReport) -> None:
        """Advance a `running` version by what the runner says about its current attempt."""
        status = self.runner.status(v.job_id, v.output)
        if status is None:  # recorded but never submitted (the watcher died in between): submit now
            report.resubmitted.append(v.version)
            self.launch(v)
            if not self.runner.synchronous:
                report.in_flight.append(v.version)
                return
            status = self.runner.status(v.job_id, v.output)
        if status.state not in FINISHED:
            report.in_flight.append(v.version)
            return
        self._check_lease()
        if status.state == "SUCCEEDED":
            self._record_success(v)
        elif status.state == "FAILED" and v.attempt < self.cfg.max_attempts:  # STOPPED: an operator's call
            v.attempt += 1
            v.job_id = f"sonar-adapt-{v.version}-{v.attempt}"
            v.output = self.registry.attempt_output(v.version, v.attempt)
            v.set_status("running", f"attempt {v.attempt - 1} {status.state}: {status.message}"[:2000])
            self.registry.save(v)
            self.reconcile(v, report)  # the new attempt's id is unknown to the runner: submits it
            return
        else:
            v.set_status("failed", f"{v.attempt} attempts; last {status.state}: {status.message}"[:2000])
            self.registry.save(v)
            report.failed[v.version] = v.reason
            log.error("adaptation %s failed after %d attempts: %s", v.version, v.attempt, status.message)
        report.finished[v.version] = v.status

    def _record_success(self, v: Version) -> None:
        summary_uri = storage.join(v.output, "summary.json")
        if not storage.exists(summary_uri):
            v.set_status("failed", f"job succeeded but wrote no {summary_uri}")
            self.registry.save(v)
            return
        summary = json.loads(storage.read_bytes(summary_uri))
        v.checkpoint, v.metrics = summary["model"], summary.get("metrics", {})
        v.config = {**v.config, "job": summary.get("config", {}), "steps": summary.get("steps")}
        bad = storage.join(v.output, "bad_inputs.json")
        v.bad_inputs = json.loads(storage.read_bytes(bad))["files"] if storage.exists(bad) else []
        self._decide(v)

    def _decide(self, v: Version) -> None:
        """The promotion gate: promote, reject (kept, with the reason), or wait for a person."""
        pointer = self.registry.pointer(v.domain)
        if pointer.version == v.version:  # promoted before a crash; finish recording it
            self.registry.promote(v, "promotion resumed after a restart")
            return
        if not v.metrics:
            v.set_status("succeeded", "no adaptability/forgetting metrics: promote manually")
            self.registry.save(v)
            return
        if pointer.version != v.parent:
            v.set_status("rejected", f"parent {v.parent} is no longer current ({pointer.version})")
            self.registry.save(v)
            return
        ok, reason = promotion_gate(v.metrics, self._root_prior(v), self.gate)
        if ok:
            self.registry.promote(v, reason)
        else:
            v.set_status("rejected", reason)
            self.registry.save(v)

    def _root_prior(self, v: Version) -> float | None:
        """The root checkpoint's prior-task score, as measured by the first version of v's lineage."""
        if v.parent is None:
            return None
        first = self.registry.get(v.parent)
        while first.parent is not None:
            first = self.registry.get(first.parent)
        return first.metrics.get("prior_base", math.nan)  # missing: the gate refuses

    # --- drivers ---
    def run(self) -> None:
        """`--once`: one poll; with `--wait`, poll until this watcher got the lease and nothing is in
        flight (a crashed holder's lease expires after `lease_ttl`). Else poll every `interval`."""
        while True:
            try:
                report = self.poll()
            except Exception:
                if self.cfg.once:
                    raise  # cron sees a non-zero exit; the next run resumes from the records
                log.exception("poll failed; retrying in %.0f s", self.cfg.interval)
                time.sleep(self.cfg.interval)
                continue
            print(report.to_json(), flush=True)
            if self.cfg.once and not (self.cfg.wait and (report.in_flight or not report.acted)):
                return
            time.sleep(self.cfg.interval if not self.cfg.once else min(self.cfg.interval, 2.0))
