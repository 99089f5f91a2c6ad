"""Model lineage registry: plain JSON files next to the data, readable with any S3 browser.

Layout under the registry URI:
```
lease.json                                   who may write (see lease.py)
domains/<domain>/current.json                {"version": id|null, "history": [previously current ids]}
domains/<domain>/quarantine.json             {key: {"etag", "reason", "at"}}: arrivals that can never be used
domains/<domain>/versions/<id>/version.json  one Version record (below)
domains/<domain>/versions/<id>/manifest.jsonl  the exact rows the adaptation trained on
domains/<domain>/versions/<id>/output/       the adaptation's model.pt, tokenizer.pt, summary.json
domains/<domain>/versions/<id>/output-<n>/   the same for retry attempt n (each attempt starts afresh)
```
Records are created with a conditional write (never clobbered) and then updated only by the lease
holder. Version ids are a hash of (domain, parent, consumed objects), so re-planning the same
arrivals always yields the same id.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sonar_ray import storage
from sonar_ray.pipelines.cas import cas_object

STATUSES = ("running", "succeeded", "failed", "promoted", "rejected")


@dataclass
class Version:
    version: str
    domain: str
    parent: str | None        # parent version id; None: adapted from the root checkpoint
    base: str                 # checkpoint URI the adaptation started from
    consumed: list[list[str]]  # [[key, etag], ...] relative to the incoming root
    manifest: str             # URI of the training manifest (manifest.jsonl)
    output: str               # URI the adaptation writes to
    config: dict              # adaptation + gate settings, then the job's own summary config
    code_version: str
    job_id: str               # Ray submission id of the current attempt (deterministic)
    status: str = "running"
    attempt: int = 1
    checkpoint: str | None = None
    metrics: dict = field(default_factory=dict)
    reason: str | None = None
    bad_inputs: list = field(default_factory=list)  # [{"path", "reason"}] the data layer skipped
    created_at: float = field(default_factory=time.time)
    events: list[dict] = field(default_factory=list)  # [{"at", "status", "reason"}], oldest first

    def set_status(self, status: str, reason: str | None = None) -> None:
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}; one of {STATUSES}")
        self.status, self.reason = status, reason
        self.events.append({"at": time.time(), "status": status, "reason": reason})

    def to_json(self) -> bytes:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> "Version":
        return cls(**json.loads(data))


@dataclass
class Pointer:
    version: str | None = None
    history: list[str] = field(default_factory=list)


def version_id(domain: str, parent: str, consumed: list[tuple[str, str]]) -> str:
    """Deterministic id: the same arrivals on the same parent always plan the same version."""
    digest = hashlib.sha256(json.dumps([domain, parent, sorted(consumed)]).encode()).hexdigest()
    return f"{domain}-{digest[:12]}"


@dataclass(frozen=True)
class GateConfig:
    max_forgetting: float
    adaptability_tolerance: float  # how much lower than the parent's adaptability still passes


GATE_METRICS = ("adaptability", "adaptability_base", "forgetting", "prior_adapted")


def promotion_gate(metrics: dict, root_prior: float | None, gate: GateConfig) -> tuple[bool, str]:
    """(passes, reason). `metrics` compare the candidate with the model it was adapted from (its
    parent, or the root checkpoint for a domain's first version: `adaptability_base`, `forgetting`);
    `root_prior` is the root checkpoint's prior-task score (None: this is the first version, so the
    root is its base). Passes when adaptability is not worse than the base's and prior tasks lost at
    most `max_forgetting`, both against the base and, cumulatively over promotions, against the root.
    A missing or non-finite metric never passes."""
    values = {k: metrics.get(k) for k in GATE_METRICS}
    if root_prior is not None:
        values["root prior"] = root_prior
    bad = [k for k, v in values.items() if not isinstance(v, (int, float)) or not math.isfinite(v)]
    if bad:
        return False, f"missing or non-finite metrics: {', '.join(f'{k}={values[k]!r}' for k in bad)}"
    forgetting, adaptability, reference = values["forgetting"], values["adaptability"], values["adaptability_base"]
    total = forgetting if root_prior is None else root_prior - values["prior_adapted"]
    if forgetting > gate.max_forgetting:
        return False, f"forgetting {forgetting:.4f} > max_forgetting {gate.max_forgetting:.4f}"
    if total > gate.max_forgetting:
        return False, f"forgetting against the root {total:.4f} > max_forgetting {gate.max_forgetting:.4f}"
    if adaptability < reference - gate.adaptability_tolerance:
        return False, (f"adaptability {adaptability:.4f} < its base's {reference:.4f} - tolerance "
                       f"{gate.adaptability_tolerance}")
    return True, (f"forgetting {forgetting:.4f} (against the root {total:.4f}) <= {gate.max_forgetting:.4f}, "
                  f"adaptability {adaptability:.4f} not worse than its base's {reference:.4f}")


class Registry:
    def __init__(self, uri: str, fence: Callable[[], None] | None = None):
        """`fence` runs before every write and raises to refuse it (the watcher: LeaseLost unless it
        still holds the lease); None for a person's own edits through the registry CLI."""
        self.uri = str(uri)
        self._fence = fence or (lambda: None)

    # --- paths ---
    @property
    def lease_uri(self) -> str:
        return storage.join(self.uri, "lease.json")

    def version_dir(self, version_id: str) -> str:
        domain = version_id.rsplit("-", 1)[0]
        return storage.join(self.uri, "domains", domain, "versions", version_id)

    def attempt_output(self, version_id: str, attempt: int) -> str:
        """Each attempt writes to its own folder: a failed attempt's half-written run is never mistaken
        for the retry's (the adaptation refuses an output that already holds a run)."""
        return storage.join(self.version_dir(version_id), "output" if attempt == 1 else f"output-{attempt}")

    def _record_uri(self, version_id: str) -> str:
        return storage.join(self.version_dir(version_id), "version.json")

    def _quarantine_uri(self, domain: str) -> str:
        return storage.join(self.uri, "domains", domain, "quarantine.json")

    def _pointer_uri(self, domain: str) -> str:
        return storage.join(self.uri, "domains", domain, "current.json")

    # --- reads ---
    def domains(self) -> list[str]:
        fs, path = storage.filesystem(storage.join(self.uri, "domains"))
        if not fs.exists(path):
            return []
        return sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(path, detail=False))

    def versions(self, domain: str | None = None) -> list[Version]:
        """All versions (of one domain), oldest first."""
        fs, path = storage.filesystem(storage.join(self.uri, "domains"))
        pattern = f"{path}/{domain or '*'}/versions/*/version.json"
        records = [Version.from_json(fs.cat_file(p)) for p in fs.glob(pattern)]
        return sorted(records, key=lambda v: (v.created_at, v.version))

    def get(self, version_id: str) -> Version:
        uri = self._record_uri(version_id)
        if not storage.exists(uri):
            raise KeyError(f"no version {version_id!r} in {self.uri}")
        return Version.from_json(storage.read_bytes(uri))

    def pointer(self, domain: str) -> Pointer:
        uri = self._pointer_uri(domain)
        return Pointer(**json.loads(storage.read_bytes(uri))) if storage.exists(uri) else Pointer()

    def quarantined(self, domain: str) -> dict[str, dict]:
        uri = self._quarantine_uri(domain)
        return json.loads(storage.read_bytes(uri)) if storage.exists(uri) else {}

    def consumed(self, domain: str) -> set[tuple[str, str]]:
        """Every object any version of `domain` was planned on, whatever its outcome."""
        return {(k, e) for v in self.versions(domain) for k, e in v.consumed}

    # --- writes (lease holder only) ---
    def create(self, version: Version) -> bool:
        """Record a new version; False if a record with this id already exists."""
        self._fence()
        return cas_object(self._record_uri(version.version)).create(version.to_json()) is not None

    def save(self, version: Version) -> None:
        self._fence()
        storage.write_bytes_atomic(self._record_uri(version.version), version.to_json())

    def quarantine(self, domain: str, entries: dict[str, dict]) -> None:
        """Add {key: {"etag", "reason"}} to the domain's quarantine (a rewrite, new ETag, is planned again)."""
        self._fence()
        merged = {**self.quarantined(domain), **{k: {**e, "at": time.time()} for k, e in entries.items()}}
        storage.write_bytes_atomic(self._quarantine_uri(domain), json.dumps(merged, indent=2, sort_keys=True).encode())

    def _set_pointer(self, domain: str, pointer: Pointer) -> None:
        self._fence()
        storage.write_bytes_atomic(self._pointer_uri(domain), json.dumps(dataclasses.asdict(pointer)).encode())

    def promote(self, version: Version, reason: str) -> None:
        """Make `version` its domain's current model (the previous one goes on the history stack)."""
        if version.checkpoint is None:
            raise ValueError(f"{version.version} has no checkpoint (status {version.status})")
        # Pointer first: a crash in between leaves the record unpromoted, and re-running promote
        # (the watcher does on restart) finishes the job without stacking history twice.
        pointer = self.pointer(version.domain)
        if pointer.version != version.version:
            history = pointer.history + ([pointer.version] if pointer.version else [])
            self._set_pointer(version.domain, Pointer(version.version, history))
        version.set_status("promoted", reason)
        self.save(version)

    def rollback(self, domain: str, reason: str = "rolled back") -> str | None:
        """Demote the current version (marked rejected with `reason`); the previous one is current again.

        Record first, pointer second: after a crash in between, running rollback again completes it.
        """
        pointer = self.pointer(domain)
        if pointer.version is None:
            raise ValueError(f"domain {domain!r} has no current version to roll back")
        demoted = self.get(pointer.version)
        demoted.set_status("rejected", reason)
        self.save(demoted)
        restored = pointer.history[-1] if pointer.history else None
        self._set_pointer(domain, Pointer(restored, pointer.history[:-1]))
        return restored
