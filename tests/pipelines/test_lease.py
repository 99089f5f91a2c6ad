"""Conditional writes and the registry lease, on a local folder and on the S3 server."""

from __future__ import annotations

import threading

import pytest

from sonar_ray import storage
from sonar_ray.pipelines.cas import cas_object
from sonar_ray.pipelines.lease import Lease, LeaseLost


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
    stale, taker = Lease(uri, ttl_s=0, holder="stale"), Lease(uri, ttl_s=60, holder="taker")
    assert stale.acquire()  # expires at once (ttl 0)
    assert taker.acquire()
    with pytest.raises(LeaseLost):
        stale.renew()
    stale.release()  # a conditional write: leaves the taker's lease alone
    assert taker.current().holder == "taker" and taker.held


def test_racing_takeovers_of_an_expired_lease_have_one_winner(root):
    uri = storage.join(root, "reg", "lease.json")
    assert Lease(uri, ttl_s=0, holder="dead").acquire()
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
