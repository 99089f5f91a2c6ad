"""How an adaptation runs: a Ray job through the Jobs API (`python jobs/adapt.py ...`), or in this
process (the library call `sonar_ray.train.adapt.adapt(cfg)` on the same flags, parsed).

Both take an `AdaptRequest` (the flags of `jobs/adapt.py`) under a deterministic submission id and
answer `status(submission_id)` with PENDING / RUNNING / SUCCEEDED / FAILED / STOPPED, or None when
no such run is known — which is how a restarted watcher tells "never submitted" from "in flight".
"""

from __future__ import annotations

import logging
import os
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from sonar_ray import storage

if TYPE_CHECKING:
    from sonar_ray.train.config import TrainConfig

log = logging.getLogger(__name__)

FINISHED = ("SUCCEEDED", "FAILED", "STOPPED")


@dataclass(frozen=True)
class AdaptRequest:
    submission_id: str
    domain: str
    data: str        # JSONL manifest of exactly the objects to train on
    base: str        # checkpoint to adapt
    output: str
    max_steps: int   # 0: the job's default
    config_file: str  # "" : the job's default
    evaluate: bool
    prior: str       # prior (replay) audio
    probes: str      # "": none (only without evaluation)

    def argv(self) -> list[str]:
        # --resume: a resubmission of the same attempt (its job forgotten by a restarted head)
        # continues that attempt's run; a retry gets a fresh output folder instead.
        args = ["--domain", self.domain, "--data", self.data, "--prior", self.prior, "--base", self.base,
                "--output", self.output, "--resume"]
        if self.probes:
            args += ["--probes", self.probes]
        if self.max_steps:
            args += ["--max-steps", str(self.max_steps)]
        if self.config_file:
            args += ["--config", self.config_file]
        if not self.evaluate:
            args.append("--no-evaluate")
        return args


@dataclass(frozen=True)
class RunStatus:
    state: str
    message: str = ""


class Runner(Protocol):
    synchronous: bool  # True: submit() returns after the run finished

    def status(self, submission_id: str, output: str) -> RunStatus | None: ...
    def submit(self, request: AdaptRequest) -> None: ...


def outputs_status(output: str) -> RunStatus | None:
    """SUCCEEDED when `output` holds a finished run's summary and model, else None (unknown).

    The outputs outlive the runner's memory: a restarted Ray head forgets its jobs, a restarted
    watcher its inline runs."""
    if all(storage.exists(storage.join(output, name)) for name in ("summary.json", "model.pt")):
        return RunStatus("SUCCEEDED", f"found the outputs of a finished run in {output}")
    return None


class RayJobsRunner:
    """`python jobs/adapt.py ...` submitted with `JobSubmissionClient` under the request's submission id."""

    synchronous = False

    def __init__(self, address: str, python: str, script: str, working_dir: str = ""):
        from ray.job_submission import JobSubmissionClient

        self.client = JobSubmissionClient(address or os.environ.get("RAY_ADDRESS") or "http://127.0.0.1:8265")
        self.python, self.script, self.working_dir = python, script, working_dir

    def status(self, submission_id: str, output: str) -> RunStatus | None:
        # list_jobs, not get_job_info: an unknown id is an ordinary answer here, not an HTTP error.
        for job in self.client.list_jobs():
            if job.submission_id == submission_id:
                return RunStatus(str(job.status.value), job.message or "")
        return outputs_status(output)

    def submit(self, request: AdaptRequest, tries: int = 6) -> None:
        entrypoint = shlex.join([self.python, self.script, *request.argv()])
        runtime_env = {"working_dir": self.working_dir} if self.working_dir else None
        for attempt in range(1, tries + 1):
            try:
                self.client.submit_job(entrypoint=entrypoint, submission_id=request.submission_id,
                                       runtime_env=runtime_env, metadata={"sonar_domain": request.domain})
                log.info("submitted %s: %s", request.submission_id, entrypoint)
                return
            except RuntimeError as e:
                # A fresh head answers 500 "No available agent" for a while; a lost reply may hide a
                # submission that did happen, so look the id up before trying again.
                if self.status(request.submission_id, request.output) is not None:
                    return
                if attempt == tries:
                    raise
                log.warning("submitting %s failed (%s); retrying", request.submission_id, e)
                time.sleep(2.0 * attempt)


class InlineRunner:
    """Runs the adaptation in this process: `adapt(parse_cli(TrainConfig, request.argv()))`, the
    library pipeline `jobs/adapt.py` runs, on the flags the Ray job would get."""

    synchronous = True

    def __init__(self, adapt: Callable[[TrainConfig], object] | None = None):
        if adapt is None:
            from sonar_ray.train.adapt import adapt
        self.adapt = adapt
        self._outcomes: dict[str, RunStatus] = {}

    def status(self, submission_id: str, output: str) -> RunStatus | None:
        if submission_id in self._outcomes:
            return self._outcomes[submission_id]
        return outputs_status(output)  # a run of an earlier (crashed) process

    def submit(self, request: AdaptRequest) -> None:
        from sonar_ray.config import parse_cli
        from sonar_ray.train.config import TrainConfig

        try:
            self.adapt(parse_cli(TrainConfig, request.argv()))
            outcome = RunStatus("SUCCEEDED")
        except SystemExit as e:  # argparse on a bad flag
            outcome = RunStatus("SUCCEEDED" if e.code in (0, None) else "FAILED", f"exit status {e.code}")
        except Exception as e:  # noqa: BLE001 - the adaptation's failure is recorded, not fatal to the watcher
            log.exception("inline adaptation %s failed", request.submission_id)
            outcome = RunStatus("FAILED", f"{type(e).__name__}: {e}")
        self._outcomes[request.submission_id] = outcome
