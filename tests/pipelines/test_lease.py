"""Conditional writes and the registry lease, on a local folder and on the S3 server."""

from __future__ import annotations

import threading
import time

import pytest

from sonar_ray import storage
from sonar_ray.pipelines.cas import cas_object
from sonar_ray.config import parse_cli
from sonar_ray.pipelines.lease import Lease, LeaseLost
from sonar_ray.pipelines.registry import Registry, Version
from sonar_ray.pipelines.watch import WatchConfig, _KeepAlive


def test_create_only_if_absent_and_replace_only_if_unchanged(root):
    obj = cas_object(storage.join(root, "reg", "x.json"))
    assert obj.read() is None
    tag = obj.create(b"one")
    assert tag is not None and obj.create(b"two") is None
    assert obj.read() == (b"one", tag)
    new_tag = obj.replace(b"three", tag)
    assert new_tag is not None and new_tag != tag
    assert obj.replace(b"four", tag) is None  # stale tag
    assert obj.read()[0] == b"three"


def test_only_one_of_two_watchers_holds_the_lease(root):
    uri = storage.join(root, "reg", "lease.json")
    a, b = Lease(uri, ttl_s=60, holder="a"), Lease(uri, ttl_s=60, holder="b")
    assert a.acquire()
    assert not b.acquire()
    a.renew()
    assert b.current().holder == "a"
    a.release()
    assert b.acquire() and b.held
    assert not a.acquire()


def test_expired_lease_is_taken_over_and_the_old_holder_cannot_renew(root):
    uri = storage.join(root, "reg", "lease.json")
    stale, taker = Lease(uri, ttl_s=0.05, holder="stale"), Lease(uri, ttl_s=60, holder="taker")
    assert stale.acquire()
    time.sleep(0.1)  # expired
    assert taker.acquire()
    with pytest.raises(LeaseLost):
        stale.renew()
    stale.release()  # a conditional write: leaves the taker's lease alone
    assert taker.current().holder == "taker" and taker.held


def test_racing_takeovers_of_an_expired_lease_have_one_winner(root):
    uri = storage.join(root, "reg", "lease.json")
    assert Lease(uri, ttl_s=0.05, holder="dead").acquire()
    time.sleep(0.1)
    takers = [Lease(uri, ttl_s=60, holder=f"t{i}") for i in range(6)]
    barrier = threading.Barrier(len(takers))
    won = []

    def race(lease: Lease) -> None:
        barrier.wait()
        if lease.acquire():
            won.append(lease.holder)

    threads = [threading.Thread(target=race, args=(t,)) for t in takers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1
    assert Lease(uri, ttl_s=60).current().holder == won[0]


class Flaky:
    """Stand-in for a storage outage: the real conditional-write store, but `replace` raises a
    transient error the first `fails` times (S3's 503 SlowDown / a dropped connection)."""

    def __init__(self, inner, fails: int):
        self.inner, self.fails = inner, fails

    def read(self):
        return self.inner.read()

    def create(self, data):
        return self.inner.create(data)

    def replace(self, data, tag):
        if self.fails > 0:
            self.fails -= 1
            raise OSError("503 SlowDown")
        return self.inner.replace(data, tag)


def test_keep_alive_rides_out_a_transient_storage_error(root):
    uri = storage.join(root, "reg", "lease.json")
    lease = Lease(uri, ttl_s=3.0, holder="a")
    assert lease.acquire()
    lease._obj = Flaky(lease._obj, fails=1)
    with _KeepAlive(lease) as keepalive:
        time.sleep(4.0)  # past the TTL: only renewals keep it
        assert not keepalive.lost.is_set() and lease.held
        assert not Lease(uri, ttl_s=60, holder="b").acquire()
    lease.release()


def test_keep_alive_stops_the_writer_before_its_lease_can_pass_to_another(root):
    uri = storage.join(root, "reg", "lease.json")
    lease = Lease(uri, ttl_s=0.9, holder="a")
    registry = Registry(storage.join(root, "reg"), fence=lease.fence)
    version = Version("birds-1", "birds", None, "base.pt", [], "m.jsonl", "out", {}, "test", "job-1")
    assert lease.acquire() and registry.create(version)
    lease._obj = Flaky(lease._obj, fails=10_000)
    with _KeepAlive(lease) as keepalive:
        assert keepalive.lost.wait(timeout=5)
        assert lease.remaining() > 0  # it gave up while the lease was still its own
        with pytest.raises(LeaseLost):
            registry.save(version)
        time.sleep(lease.remaining() + 0.05)
        other = Lease(uri, ttl_s=60, holder="b")
        assert other.acquire()
        with pytest.raises(LeaseLost):
            registry.save(version)  # the old holder stays fenced off
    assert registry.get("birds-1").events == []


@pytest.mark.parametrize("ttl", ["-5", "0", "nan"])
def test_lease_ttl_must_be_positive_at_parse_time(ttl):
    with pytest.raises(ValueError, match="lease-ttl"):
        parse_cli(WatchConfig, ["--incoming", "in", "--registry", "reg", "--base", "b.pt", "--lease-ttl", ttl])
