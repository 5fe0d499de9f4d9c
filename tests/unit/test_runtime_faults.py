"""Runtime fault isolation on fakes: retry policy, raising handlers, watches that end at once, graceful stops
that leave the backlog, event aggregation, and the preemption-victim index."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from kaiwo.manager import StartupError, check_lease_namespace
from kaiwo.runtime.client import ApiError, idempotent, retryable
from kaiwo.runtime.clock import FakeClock
from kaiwo.runtime.controller import Controller, Request, Result
from kaiwo.runtime.events import BURST, EventRecorder
from kaiwo.runtime.informer import FuncHandler, Informer
from kaiwo.runtime.objects import Obj
from kaiwo.translate import preemption as pre
from tests.builders import KaiwoJobBuilder
from tests.fakes import Events, Script, cm, run_until_idle


def test_only_idempotent_calls_are_retried_on_server_errors_and_every_call_on_429() -> None:
    assert idempotent("GET", None) and idempotent("PUT", "application/json")
    assert idempotent("PATCH", "application/apply-patch+yaml") and idempotent("PATCH", "application/merge-patch+json")
    assert not idempotent("POST", "application/json") and not idempotent("DELETE", "application/json")
    assert not idempotent("PATCH", "application/json-patch+json")
    for status in (500, 503, 504):
        assert retryable(ApiError(status, {}), True) and not retryable(ApiError(status, {}), False)
    assert retryable(ApiError(429, {}), False), "429: the server did not process it, any verb may repeat"
    for status in (400, 403, 404, 409, 422):
        assert not retryable(ApiError(status, {}), True), f"{status} is permanent"
    assert retryable(aiohttp.ServerDisconnectedError(), True) and not retryable(
        aiohttp.ServerDisconnectedError(), False
    )
    assert not retryable(TimeoutError(), False) and retryable(TimeoutError(), True)


async def test_a_raising_handler_is_counted_and_skipped_and_the_others_still_get_every_event() -> None:
    script = Script(
        lists=[([cm("a", "1")], "10")],
        watches=[[{"type": "ADDED", "object": cm("b", "11")}, {"type": "MODIFIED", "object": cm("a", "12")}]],
    )
    clock, ev = FakeClock(), Events()
    inf = Informer(script, clock=clock)
    counted: list[str] = []
    inf.on_handler_error = counted.append

    def boom(*_: object) -> None:
        raise ValueError("odd field")

    inf.add_handler(FuncHandler(boom, boom, boom))
    inf.add_handler(ev.handler())
    await run_until_idle(inf, script, clock)
    assert ev.log == [("add", "ns/a", True), ("add", "ns/b", False), ("update", "ns/a", "12")]
    assert inf.handler_errors == 3 and len(counted) == 3
    assert script.watch_calls == ["10", "12"], "no replay: the informer moved on after the raising handler"


async def test_a_watch_that_ends_at_once_backs_off_instead_of_reopening_in_a_hot_loop() -> None:
    script = Script(lists=[([cm("a", "1")], "10")], watches=[[], [], [], []])
    clock = FakeClock()
    inf = Informer(script, clock=clock)
    task = asyncio.create_task(inf.run())
    try:
        await clock.advance(0.01)
        assert len(script.watch_calls) == 1
        await clock.advance(0.5)  # less than the first backoff (0.8 s + jitter)
        assert len(script.watch_calls) == 1, "an empty watch that ended at once must not be reopened at once"
        await clock.advance(0.5)  # t=1.01: the first backoff (at most 0.96 s) is over
        assert len(script.watch_calls) == 2
        await clock.advance(1.3)  # t=2.31: the second backoff doubled (1.6 s + jitter, from t >= 0.8)
        assert len(script.watch_calls) == 2
        await clock.advance(0.7)  # t=3.01 > 0.96 + 1.92
        assert len(script.watch_calls) == 3
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


class Slow:
    def __init__(self) -> None:
        self.started: list[str] = []
        self.finished: list[str] = []
        self.release = asyncio.Event()

    async def reconcile(self, req: Request) -> Result | None:
        self.started.append(req.name)
        await self.release.wait()
        self.finished.append(req.name)
        return None


async def test_graceful_stop_finishes_in_flight_reconciles_and_leaves_the_backlog() -> None:
    r = Slow()
    c = Controller("c", r, workers=2)
    for i in range(50):
        c.queue.add(Request("ns", f"k{i}"))
    c.start()
    await asyncio.sleep(0.01)
    assert r.started == ["k0", "k1"]
    stopping = asyncio.create_task(c.stop(5))
    await asyncio.sleep(0.01)
    r.release.set()
    await stopping
    assert r.finished == ["k0", "k1"], "queued keys are left to the successor"


async def test_abort_stops_reconciles_at_once() -> None:
    r = Slow()
    c = Controller("c", r, workers=1)
    c.queue.add(Request("ns", "k"))
    c.start()
    await asyncio.sleep(0.01)
    await c.stop(0)
    assert r.started == ["k"] and r.finished == []


class EventServer:
    def __init__(self) -> None:
        self.created: list[Obj] = []
        self.patches: list[tuple[str, Obj]] = []

    async def create(self, obj: Obj) -> Obj:
        made = {**obj, "metadata": {**obj["metadata"], "name": f"e{len(self.created)}"}}
        self.created.append(made)
        return made

    async def patch(self, api: str, kind: str, name: str, patch: Obj, namespace: str | None = None) -> Obj:
        self.patches.append((name, patch))
        return {}


async def test_repeated_events_are_aggregated_into_one_event_with_a_count_and_a_series() -> None:
    server = EventServer()
    rec = EventRecorder(server, "kaiwo")  # type: ignore[arg-type]
    job = {"apiVersion": "kaiwo.silogen.ai/v1alpha1", "kind": "KaiwoJob", "metadata": {"name": "j", "uid": "u"}}
    for _ in range(3):
        await rec.emit(job, "SpecNotApplied", "immutable", warning=True)
    await rec.emit(job, "SpecNotApplied", "another message", warning=True)
    assert [e["message"] for e in server.created] == ["immutable", "another message"]
    assert [(n, p["count"], p["series"]["count"]) for n, p in server.patches] == [("e0", 2, 2), ("e0", 3, 3)]


async def test_an_event_flood_on_one_object_is_cut_by_the_spam_filter() -> None:
    server = EventServer()
    rec = EventRecorder(server, "kaiwo")  # type: ignore[arg-type]
    job = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "uid": "u"}}
    for i in range(BURST + 10):
        await rec.emit(job, "R", f"message {i}")
    assert len(server.created) == BURST and rec.dropped == 10


def workload(name: str, status: str, *, queue: str = "", vendor: str = "", duration: str = "1h") -> Obj:
    cr = KaiwoJobBuilder(name, "ns").created("2026-01-01T00:00:00Z").gpus(1, vendor or None).duration(duration)
    return (cr.cluster_queue(queue) if queue else cr).phase(status).obj()


def test_the_victim_index_finds_exactly_what_a_scan_would() -> None:
    objs = [
        workload("run-default", "RUNNING"),
        workload("run-q", "RUNNING", queue="q"),
        workload("run-kaiwo", "RUNNING", queue="kaiwo"),
        workload("run-nvidia", "RUNNING", vendor="nvidia"),
        workload("run-no-duration", "RUNNING", duration=""),
        workload("pending", "PENDING"),
        {"metadata": {"name": "odd"}, "spec": 17, "status": "x"},
    ]
    index: dict[str, set[str]] = {}
    for o in objs:
        for v in pre.victim_index(o):
            index.setdefault(v, set()).add(o["metadata"]["name"])
    for default in ("kaiwo", "q"):
        for pending in (
            workload("p1", "PENDING"),
            workload("p2", "PENDING", queue="q"),
            workload("p3", "PENDING", vendor="nvidia"),
        ):
            scan = {o["metadata"]["name"] for o in objs[:-1] if pre.is_demand_for(pending, o, default)}
            found = {n for k in pre.victim_keys(pending, default) for n in index.get(k, ())}
            assert found == scan, (default, pending["metadata"]["name"])


class NamespaceLookup:
    def __init__(self, status: int | None) -> None:
        self.status = status

    async def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> Obj:
        if self.status is not None:
            raise ApiError(self.status, {"reason": "x", "message": f"namespaces {name!r}"})
        return {"metadata": {"name": name}}


async def test_a_missing_leader_election_namespace_is_a_start_up_error_saying_what_to_pass() -> None:
    with pytest.raises(StartupError) as e:
        await check_lease_namespace(NamespaceLookup(404), "kaiwo-system")  # type: ignore[arg-type]
    assert "'kaiwo-system' does not exist" in str(e.value)
    assert "--leader-election-namespace" in str(e.value) and "--no-leader-elect" in str(e.value)
    await check_lease_namespace(NamespaceLookup(None), "kaiwo-system")  # type: ignore[arg-type]
    await check_lease_namespace(NamespaceLookup(403), "kaiwo-system")  # type: ignore[arg-type]
