"""The event recorder's background mode: a reconcile never waits for an event, per-object order holds, the
queue is bounded, an idle recorder holds no task, and aggregation still works (kaiwo/runtime/events.py)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from kaiwo.runtime import events
from kaiwo.runtime.client import ApiError
from kaiwo.runtime.events import EventRecorder
from kaiwo.runtime.objects import Obj


class GatedServer:
    """Creates and patches Events only while ``open`` is set; records them in the order they arrive."""

    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.created: list[Obj] = []
        self.patches: list[tuple[str, Obj]] = []

    async def create(self, obj: Obj) -> Obj:
        await self.open.wait()
        made = {**obj, "metadata": {**obj["metadata"], "name": f"e{len(self.created)}"}}
        self.created.append(made)
        return made

    async def patch(self, api: str, kind: str, name: str, patch: Obj, namespace: str | None = None) -> Obj:
        await self.open.wait()
        self.patches.append((name, patch))
        return {}


def job(name: str) -> Obj:
    return {
        "apiVersion": "kaiwo.silogen.ai/v1alpha1",
        "kind": "KaiwoJob",
        "metadata": {"name": name, "namespace": "team", "uid": f"uid-{name}"},
    }


async def test_emit_returns_before_the_event_is_sent_and_flush_waits_for_it() -> None:
    server = GatedServer()
    rec = EventRecorder(server, "kaiwo", background=True)  # type: ignore[arg-type]
    await asyncio.wait_for(rec.emit(job("a"), "WorkloadPending", "queued"), 1.0)  # the server does not answer yet
    assert server.created == []
    server.open.set()
    await asyncio.wait_for(rec.flush(), 1.0)
    assert [(e["involvedObject"]["name"], e["reason"]) for e in server.created] == [("a", "WorkloadPending")]
    assert rec._senders == [None] * events.LANES  # idle: no sender task is left behind


async def test_the_events_of_one_object_are_sent_in_the_order_emitted() -> None:
    server = GatedServer()
    rec = EventRecorder(server, "kaiwo", background=True)  # type: ignore[arg-type]
    names = [f"w{i}" for i in range(20)]
    for reason in ("WorkloadPending", "WorkloadRunning", "WorkloadComplete"):
        for name in names:
            await rec.emit(job(name), reason, reason)
    server.open.set()
    await rec.flush()
    for name in names:
        sent = [e["reason"] for e in server.created if e["involvedObject"]["name"] == name]
        assert sent == ["WorkloadPending", "WorkloadRunning", "WorkloadComplete"]


async def test_timestamps_are_those_of_emit_not_of_the_send() -> None:
    server = GatedServer()
    now = [1_767_225_600.0]  # 2026-01-01T00:00:00Z
    rec = EventRecorder(server, "kaiwo", background=True, wall=lambda: now[0])  # type: ignore[arg-type]
    await rec.emit(job("a"), "WorkloadPending", "queued")
    now[0] += 300.0
    server.open.set()
    await rec.flush()
    assert server.created[0]["firstTimestamp"] == server.created[0]["lastTimestamp"] == "2026-01-01T00:00:00Z"


async def test_a_full_lane_drops_new_events_and_counts_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(events, "QUEUE_SIZE", 3)
    server = GatedServer()
    rec = EventRecorder(server, "kaiwo", background=True)  # type: ignore[arg-type]
    for i in range(5):
        await rec.emit(job("a"), "R", f"message {i}")
    server.open.set()
    await rec.flush()
    assert [e["message"] for e in server.created] == ["message 0", "message 1", "message 2"]
    assert rec.overflowed == 2


async def test_an_overflow_is_one_warning_until_the_lane_has_room_again(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(events, "QUEUE_SIZE", 2)
    server = GatedServer()
    rec = EventRecorder(server, "kaiwo", background=True)  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, logger="kaiwo.runtime.events"):
        for i in range(6):  # 2 queued, 4 dropped: one warning
            await rec.emit(job("a"), "R", f"first {i}")
        server.open.set()
        await rec.flush()
        server.open.clear()
        for i in range(3):  # room again, then full again: a second warning
            await rec.emit(job("a"), "R", f"second {i}")
        server.open.set()
        await rec.flush()
    warnings = [r.getMessage() for r in caplog.records if "event queue full" in r.getMessage()]
    assert len(warnings) == 2, warnings
    assert "first: R on a; 1 dropped since start" in warnings[0]
    assert "5 dropped since start" in warnings[1]
    assert rec.overflowed == 5


async def test_repeats_are_aggregated_in_the_background_too() -> None:
    server = GatedServer()
    server.open.set()
    rec = EventRecorder(server, "kaiwo", background=True)  # type: ignore[arg-type]
    for _ in range(3):
        await rec.emit(job("a"), "SpecNotApplied", "immutable", warning=True)
    await rec.flush()
    assert [e["message"] for e in server.created] == ["immutable"]
    assert [(n, p["count"]) for n, p in server.patches] == [("e0", 2), ("e0", 3)]


async def test_a_failing_send_is_logged_and_the_lane_goes_on() -> None:
    class Failing(GatedServer):
        async def create(self, obj: Obj) -> Obj:
            if obj["reason"] == "Bad":
                raise RuntimeError("apiserver said no")
            return await super().create(obj)

    server = Failing()
    server.open.set()
    rec = EventRecorder(server, "kaiwo", background=True)  # type: ignore[arg-type]
    await rec.emit(job("a"), "Bad", "first")
    await rec.emit(job("a"), "Good", "second")
    await rec.flush()
    assert [e["reason"] for e in server.created] == ["Good"]


async def test_a_namespace_being_deleted_refusing_events_is_not_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    """Every event into a namespace being deleted is refused (403, cause NamespaceTerminating): expected, so it is
    logged at debug, as client-go's recorder does; any other refusal is a warning."""

    class Refusing(GatedServer):
        async def create(self, obj: Obj) -> Obj:
            causes = (
                [{"reason": "NamespaceTerminating", "field": "metadata.namespace"}] if obj["reason"] == "Late" else []
            )
            body = {"reason": "Forbidden", "message": "being terminated", "details": {"causes": causes}}
            raise ApiError(403, body)

    rec = EventRecorder(Refusing(), "kaiwo", background=True)  # type: ignore[arg-type]
    with caplog.at_level(logging.DEBUG, logger="kaiwo.runtime.events"):
        await rec.emit(job("a"), "Late", "namespace going")
        await rec.emit(job("a"), "Denied", "rbac")
        await rec.flush()
    levels = {r.getMessage().split()[4]: r.levelno for r in caplog.records if "could not record" in r.getMessage()}
    assert levels == {"Late": logging.DEBUG, "Denied": logging.WARNING}
