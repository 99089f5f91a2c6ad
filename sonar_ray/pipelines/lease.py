"""A lease with expiry on one object, so that two watchers on the same registry never both act.

Guarantee: at any wall-clock instant at most one holder has an unexpired lease it acquired or
renewed through a successful conditional write. A holder must renew (or stop acting) before
`expires_at`; takeover of an expired lease is itself a conditional overwrite of the exact lease
object the taker read, so of two would-be takers only one wins. This assumes clocks agree to well
within the TTL. Every registry write is additionally idempotent (deterministic version ids and Ray
submission ids), so even a holder that outlives its lease cannot adapt the same objects twice.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import uuid
from dataclasses import asdict, dataclass

from sonar_ray.pipelines.cas import cas_object

log = logging.getLogger(__name__)


class LeaseLost(RuntimeError):
    """Raised when a renewal finds that someone else holds the lease now."""


@dataclass(frozen=True)
class LeaseRecord:
    holder: str
    token: str        # unique per acquisition: tells our lease from a later one of the same holder name
    expires_at: float  # unix seconds

    def expired(self, now: float) -> bool:
        return now >= self.expires_at


def default_holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Lease:
    """`acquire()` → bool, `renew()` (raises LeaseLost), `release()`; also a context manager."""

    def __init__(self, uri: str, ttl_s: float, holder: str | None = None):
        if not ttl_s > 0:
            raise ValueError(f"lease ttl must be > 0 seconds, got {ttl_s}")
        self.uri, self.ttl_s = uri, ttl_s
        self.holder = holder or default_holder()
        self._obj = cas_object(uri)
        self._tag: str | None = None
        self._record: LeaseRecord | None = None

    @property
    def held(self) -> bool:
        return self._record is not None and not self._record.expired(time.time())

    def remaining(self) -> float:
        """Seconds our lease has left by our clock (0 when not held)."""
        return max(0.0, self._record.expires_at - time.time()) if self._record is not None else 0.0

    def fence(self) -> None:
        """Raise LeaseLost unless a write started now ends well inside our lease: at least a third of
        the TTL must be left (renewals every ttl/3 keep about two thirds left while storage answers)."""
        if self.remaining() < self.ttl_s / 3:
            raise LeaseLost(f"lease {self.uri} is lost or about to expire ({self.remaining():.1f}s left); "
                            "not writing")

    def current(self) -> LeaseRecord | None:
        """Whoever holds (or last held) the lease, as stored."""
        got = self._obj.read()
        return LeaseRecord(**json.loads(got[0])) if got else None

    def _new_record(self) -> tuple[LeaseRecord, bytes]:
        rec = LeaseRecord(self.holder, uuid.uuid4().hex, time.time() + self.ttl_s)
        return rec, json.dumps(asdict(rec)).encode()

    def acquire(self) -> bool:
        """Take the lease if it is free or expired; False if another holder's lease is live."""
        if self._record is not None:
            self.renew()
            return True
        got = self._obj.read()
        rec, data = self._new_record()
        if got is None:
            tag = self._obj.create(data)
        else:
            stored = LeaseRecord(**json.loads(got[0]))
            if not stored.expired(time.time()):
                log.info("lease %s held by %s until %.0f", self.uri, stored.holder, stored.expires_at)
                return False
            tag = self._obj.replace(data, got[1])  # takeover: only if nobody else took it first
        if tag is None:
            return False
        self._tag, self._record = tag, rec
        return True

    def renew(self) -> None:
        if self._record is None or self._tag is None:
            raise LeaseLost(f"lease {self.uri} is not held")
        rec = LeaseRecord(self.holder, self._record.token, time.time() + self.ttl_s)
        tag = self._obj.replace(json.dumps(asdict(rec)).encode(), self._tag)
        if tag is None:
            self._tag = self._record = None
            raise LeaseLost(f"lease {self.uri} was taken over")
        self._tag, self._record = tag, rec

    def release(self) -> None:
        """Expire our lease now (a conditional overwrite, so a taken-over lease is left alone)."""
        if self._record is None or self._tag is None:
            return
        rec = LeaseRecord(self.holder, self._record.token, 0.0)
        self._obj.replace(json.dumps(asdict(rec)).encode(), self._tag)
        self._tag = self._record = None

    def __enter__(self) -> "Lease":
        if not self.acquire():
            held = self.current()
            raise LeaseLost(f"lease {self.uri} is held by {held.holder if held else '?'}")
        return self

    def __exit__(self, *exc) -> None:
        self.release()
