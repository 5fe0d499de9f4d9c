"""Leader-election transitions on a fake clock against an in-memory Lease with optimistic concurrency."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator

import orjson
import pytest

from kaiwo.runtime.client import ApiError, Resource
from kaiwo.runtime.clock import FakeClock
from kaiwo.runtime.leader import LeaderElectionConfig, LeaderElector
from kaiwo.runtime.objects import Obj

CFG = {"namespace": "ns", "name": "lock", "lease_duration": 15.0, "renew_deadline": 10.0, "retry_period": 2.0}


class LeaseServer:
    """One Lease object; writes must carry the current resourceVersion. ``down`` makes every call fail; ``hang``
    makes every call wait on the fake clock (a silent connection) for ``hang`` seconds before it fails."""

    def __init__(self, clock: FakeClock | None = None) -> None:
        self.lease: Obj | None = None
        self.rv = 0
        self.down = False
        self.hang = 0.0
        self.clock = clock
        self.calls: list[tuple[str, float]] = []  # (method, per-call timeout) as the elector sent them
        self.retries_asked: list[bool] = []
        self.watchers: list[asyncio.Queue[bytes]] = []  # open watches get every write as a MODIFIED line
        self.watch_fails = False  # a watch request fails at once (a webhook or RBAC problem, say)

    def client(self) -> FakeClient:
        return FakeClient(self)


class FakeClient:
    def __init__(self, server: LeaseServer) -> None:
        self.server = server

    async def resource(self, api_version: str, kind: str) -> Resource:
        return Resource(api_version, kind, "leases", True)

    async def request(
        self, method: str, path: str, *, body: Obj | None = None, timeout: float = 30, retries: bool = True
    ) -> Obj:
        srv = self.server
        srv.calls.append((method, timeout))
        srv.retries_asked.append(retries)
        if srv.hang and srv.clock is not None:
            await srv.clock.sleep(srv.hang)
            raise TimeoutError("no answer")
        if srv.down:
            raise ConnectionError("apiserver unreachable")
        if method == "GET":
            if srv.lease is None:
                raise ApiError(404, {"reason": "NotFound"})
            return copy.deepcopy(srv.lease)
        assert body is not None
        if method == "POST":
            if srv.lease is not None:
                raise ApiError(409, {"reason": "AlreadyExists"})
        else:
            assert method == "PUT" and srv.lease is not None
            if body["metadata"].get("resourceVersion") != srv.lease["metadata"]["resourceVersion"]:
                raise ApiError(409, {"reason": "Conflict"})
        srv.rv += 1
        srv.lease = copy.deepcopy(body)
        srv.lease["metadata"]["resourceVersion"] = str(srv.rv)
        for q in srv.watchers:
            q.put_nowait(orjson.dumps({"type": "ADDED" if method == "POST" else "MODIFIED", "object": srv.lease}))
        return copy.deepcopy(srv.lease)

    async def stream_lines(self, path: str, params: Obj, *, timeout: float) -> AsyncIterator[bytes]:
        srv = self.server
        assert params["watch"] == "true" and params["fieldSelector"] == "metadata.name=lock", params
        if srv.watch_fails:
            raise ConnectionError("watch refused")
        q: asyncio.Queue[bytes] = asyncio.Queue()
        srv.watchers.append(q)
        try:
            if srv.lease is not None:  # a watch without a resourceVersion starts with the current state
                yield orjson.dumps({"type": "ADDED", "object": srv.lease})
            while True:
                yield await q.get()
        finally:
            srv.watchers.remove(q)


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


async def test_a_waiting_candidate_acquires_as_soon_as_the_lease_is_released() -> None:
    """The release watch wakes the acquire loop: no clock time passes between the release and the take-over (a
    poll alone would wait for the retry period)."""
    server, clock = LeaseServer(), FakeClock()
    a, b = elector(server, clock, "a"), elector(server, clock, "b")
    await a.acquire()
    waiting = asyncio.create_task(b.acquire())
    await clock.advance(0)  # b tried once, failed, and waits for its retry or a release
    assert not b.is_leader and server.watchers
    await a.release()
    await asyncio.wait_for(waiting, 1)  # real seconds; the fake clock stands still
    assert b.is_leader and holder(server) == "b" and clock.now() == 0
    assert not server.watchers, "the release watch ends with the acquire"


async def test_without_its_watch_a_waiting_candidate_still_acquires_at_its_next_retry() -> None:
    server, clock = LeaseServer(), FakeClock()
    server.watch_fails = True
    a, b = elector(server, clock, "a"), elector(server, clock, "b")
    await a.acquire()
    waiting = asyncio.create_task(b.acquire())
    await clock.advance(0)
    await a.release()
    await clock.advance(1.9)
    assert not waiting.done()
    await clock.advance(0.1)
    await asyncio.wait_for(waiting, 1)
    assert b.is_leader and clock.now() == 2.0


async def test_after_a_crash_the_standby_takes_over_when_the_renewal_it_watched_expires() -> None:
    """The standby counts the lease from each renewal as its watch delivers it, and tries again exactly when that
    expires: polling alone would see the last renewal up to a retry period late and try up to one more after."""
    server, clock = LeaseServer(), FakeClock()
    a, b = elector(server, clock, "a"), elector(server, clock, "b")
    await a.acquire()  # t=0
    renewing = asyncio.create_task(a.keep_renewing())  # renews at t=2, 4, 6
    await clock.advance(0.5)
    waiting = asyncio.create_task(b.acquire())  # polls at t=0.5, 2.5, 4.5, 6.5, ...
    await clock.advance(6.2)
    renewing.cancel()  # t=6.7: a dies without releasing; its last renewal was at t=6
    while not waiting.done() and clock.now() < 30:
        await clock.advance(0.01)
    assert b.is_leader and holder(server) == "b"
    assert 6 + 15 <= clock.now() <= 6 + 15 + 0.02, clock.now()


async def test_conflicting_writes_let_exactly_one_candidate_win() -> None:
    server, clock = LeaseServer(), FakeClock()
    results = await asyncio.gather(*(elector(server, clock, n).try_acquire_or_renew() for n in "abcde"))
    assert sum(results) == 1


def test_config_rejects_inconsistent_durations() -> None:
    with pytest.raises(ValueError, match="lease duration must be greater"):
        LeaderElectionConfig(namespace="n", name="l", lease_duration=5, renew_deadline=10)
    with pytest.raises(ValueError, match="retry period"):
        LeaderElectionConfig(namespace="n", name="l", retry_period=10)


async def test_a_hanging_renewal_is_abandoned_before_a_standby_can_acquire() -> None:
    clock = FakeClock()
    server = LeaseServer(clock)
    a, b = elector(server, clock, "a"), elector(server, clock, "b")
    await a.acquire()  # t=0
    renewing = asyncio.create_task(a.keep_renewing())
    assert not await b.try_acquire_or_renew()  # b observes the lease at t=0
    await clock.advance(4.5)  # renewals at t=2 and t=4 succeed
    server.hang = 1000.0  # from now on every call hangs (connection open, no bytes)
    lost_at = None
    for _ in range(200):
        await clock.advance(0.1)
        if renewing.done():
            lost_at = clock.now()
            break
    assert lost_at is not None and not a.is_leader
    # Last successful renewal started at t=4: a stops by 4 + renew deadline, b may acquire from 4 + lease duration.
    assert lost_at <= 4 + 10 + 0.11 < 4 + 15
    assert not any(server.retries_asked), "lease calls must not be retried by the client"
    assert all(t <= 10 for _, t in server.calls), "each call is bounded by the time left to the renew deadline"


async def test_standby_counts_the_lease_age_from_when_its_read_returned() -> None:
    clock = FakeClock()
    server = LeaseServer(clock)
    a, b = elector(server, clock, "a"), elector(server, clock, "b")
    assert await a.try_acquire_or_renew()  # t=0
    slow = SlowReads(server, clock, delay=12.0)
    b.client = slow  # type: ignore[assignment]
    attempt = asyncio.create_task(b.try_acquire_or_renew(30))
    await clock.advance(12)  # the read returns at t=12 with a's record of t=0
    assert not await attempt
    await clock.advance(4)  # t=16: 16 s since a renewed, but only 4 s since b saw it
    slow.delay = 0
    assert not await b.try_acquire_or_renew()
    await clock.advance(11.1)
    assert await b.try_acquire_or_renew()


class SlowReads(FakeClient):
    def __init__(self, server: LeaseServer, clock: FakeClock, delay: float) -> None:
        super().__init__(server)
        self.clock, self.delay = clock, delay

    async def request(
        self, method: str, path: str, *, body: Obj | None = None, timeout: float = 30, retries: bool = True
    ) -> Obj:
        result = await super().request(method, path, body=body, timeout=timeout, retries=retries)
        if method == "GET" and self.delay:
            await self.clock.sleep(self.delay)
        return result
