"""Leader-election transitions on a fake clock against an in-memory Lease with optimistic concurrency."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest

from kaiwo.runtime.client import ApiError, Resource
from kaiwo.runtime.clock import FakeClock
from kaiwo.runtime.leader import LeaderElectionConfig, LeaderElector

Obj = dict[str, Any]
CFG = {"namespace": "ns", "name": "lock", "lease_duration": 15.0, "renew_deadline": 10.0, "retry_period": 2.0}


class LeaseServer:
    """One Lease object; writes must carry the current resourceVersion. ``down`` makes every call fail."""

    def __init__(self) -> None:
        self.lease: Obj | None = None
        self.rv = 0
        self.down = False

    def client(self) -> FakeClient:
        return FakeClient(self)


class FakeClient:
    def __init__(self, server: LeaseServer) -> None:
        self.server = server

    def _check(self) -> None:
        if self.server.down:
            raise ConnectionError("apiserver unreachable")

    async def get_or_none(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> Obj | None:
        self._check()
        return copy.deepcopy(self.server.lease)

    async def create(self, obj: Obj) -> Obj:
        self._check()
        if self.server.lease is not None:
            raise ApiError(409, {"reason": "AlreadyExists"})
        self.server.rv += 1
        self.server.lease = copy.deepcopy(obj)
        self.server.lease["metadata"]["resourceVersion"] = str(self.server.rv)
        return copy.deepcopy(self.server.lease)

    async def resource(self, api_version: str, kind: str) -> Resource:
        return Resource(api_version, kind, "leases", True)

    async def request(self, method: str, path: str, *, body: Obj) -> Obj:
        self._check()
        assert method == "PUT" and self.server.lease is not None
        if body["metadata"].get("resourceVersion") != self.server.lease["metadata"]["resourceVersion"]:
            raise ApiError(409, {"reason": "Conflict"})
        self.server.rv += 1
        self.server.lease = copy.deepcopy(body)
        self.server.lease["metadata"]["resourceVersion"] = str(self.server.rv)
        return copy.deepcopy(self.server.lease)


def elector(server: LeaseServer, clock: FakeClock, identity: str) -> LeaderElector:
    return LeaderElector(server.client(), LeaderElectionConfig(identity=identity, **CFG), clock=clock)  # type: ignore[arg-type]


def holder(server: LeaseServer) -> str:
    assert server.lease is not None
    return str(server.lease["spec"]["holderIdentity"])


async def test_first_candidate_acquires_and_second_waits() -> None:
    server, clock = LeaseServer(), FakeClock()
    a, b = elector(server, clock, "a"), elector(server, clock, "b")
    assert await a.try_acquire_or_renew()
    assert holder(server) == "a" and server.lease and server.lease["spec"]["leaseTransitions"] == 0
    assert not await b.try_acquire_or_renew()
    await clock.advance(10)
    assert await a.try_acquire_or_renew()  # renewal changes the record: b's observation restarts
    await clock.advance(14)
    assert not await b.try_acquire_or_renew()  # 14 s since b saw the renewal < 15 s lease


async def test_standby_takes_over_only_after_lease_duration_of_silence() -> None:
    server, clock = LeaseServer(), FakeClock()
    a, b = elector(server, clock, "a"), elector(server, clock, "b")
    assert await a.try_acquire_or_renew()
    assert not await b.try_acquire_or_renew()  # b observes a's record at t=0
    await clock.advance(14.9)
    assert not await b.try_acquire_or_renew()
    await clock.advance(0.2)
    assert await b.try_acquire_or_renew()
    assert holder(server) == "b" and server.lease and server.lease["spec"]["leaseTransitions"] == 1


async def test_leader_stops_leading_when_renewals_fail_past_the_deadline() -> None:
    server, clock = LeaseServer(), FakeClock()
    changes: list[bool] = []
    a = LeaderElector(
        server.client(),  # type: ignore[arg-type]
        LeaderElectionConfig(identity="a", **CFG),  # type: ignore[arg-type]
        clock=clock,
        on_change=changes.append,
    )
    await a.acquire()
    assert a.is_leader and changes == [True]
    renewing = asyncio.create_task(a.keep_renewing())
    await clock.advance(6)
    assert a.is_leader
    server.down = True
    lost_at = None
    for _ in range(20):
        await clock.advance(1)
        if renewing.done():
            lost_at = clock.now()
            break
    assert lost_at is not None and not a.is_leader and changes == [True, False]
    # The last successful renewal was at t=6; giving up must happen before another could acquire (t=6+15).
    assert 6 + 2 <= lost_at < 6 + 15


async def test_release_lets_the_standby_acquire_at_its_next_try() -> None:
    server, clock = LeaseServer(), FakeClock()
    a, b = elector(server, clock, "a"), elector(server, clock, "b")
    await a.acquire()
    assert not await b.try_acquire_or_renew()
    await a.release()
    assert not a.is_leader and holder(server) == ""
    assert await b.try_acquire_or_renew()  # no need to wait for the lease to expire
    assert holder(server) == "b"


async def test_conflicting_writes_let_exactly_one_candidate_win() -> None:
    server, clock = LeaseServer(), FakeClock()
    results = await asyncio.gather(*(elector(server, clock, n).try_acquire_or_renew() for n in "abcde"))
    assert sum(results) == 1


def test_config_rejects_inconsistent_durations() -> None:
    with pytest.raises(ValueError, match="lease duration must be greater"):
        LeaderElectionConfig(namespace="n", name="l", lease_duration=5, renew_deadline=10)
    with pytest.raises(ValueError, match="retry period"):
        LeaderElectionConfig(namespace="n", name="l", retry_period=10)
