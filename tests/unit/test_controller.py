"""Controller outcomes (controller-runtime's table) and event-to-key mapping, on a fake clock."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from kaiwo.runtime.client import ApiError
from kaiwo.runtime.clock import FakeClock
from kaiwo.runtime.controller import Controller, Request, Result, only_status_changed, owner_mapper
from kaiwo.runtime.metrics import RuntimeMetrics


class Scripted:
    """Returns (or raises) the scripted outcomes in turn, recording each call."""

    def __init__(self, *outcomes: Result | Exception | None) -> None:
        self.outcomes = list(outcomes)
        self.calls: list[Request] = []

    async def reconcile(self, req: Request) -> Result | None:
        self.calls.append(req)
        out = self.outcomes.pop(0) if self.outcomes else None
        if isinstance(out, Exception):
            raise out
        return out


def sample(m: RuntimeMetrics, name: str, **labels: str) -> float:
    value = m.registry.get_sample_value(name, labels)
    return value or 0.0


async def run_for(ctrl: Controller, clock: FakeClock, seconds: float, step: float = 0.001) -> None:
    ctrl.start()
    try:
        t = 0.0
        while t < seconds:
            await clock.advance(step)
            t += step
    finally:
        await ctrl.stop(drain_timeout=1)


async def test_errors_are_counted_and_retried_with_backoff() -> None:
    clock = FakeClock()
    rec = Scripted(RuntimeError("boom"), RuntimeError("boom"), None)
    ctrl = Controller("c", rec, clock=clock, workers=1)
    ctrl.queue.add(Request("ns", "x"))
    await run_for(ctrl, clock, 0.05)
    assert rec.calls == [Request("ns", "x")] * 3  # retried after 5 ms and 10 ms
    m = ctrl.metrics
    assert sample(m, "controller_runtime_reconcile_errors_total", controller="c") == 2
    assert sample(m, "controller_runtime_reconcile_total", controller="c", result="error") == 2
    assert sample(m, "controller_runtime_reconcile_total", controller="c", result="success") == 1
    assert ctrl.queue.num_requeues(Request("ns", "x")) == 0  # forgotten after success


async def test_a_namespace_being_deleted_is_retried_without_an_error_log(caplog: pytest.LogCaptureFixture) -> None:
    """A write refused because the namespace is being deleted (403, cause NamespaceTerminating) is retried like any
    error (the next pass finds the object gone) but logged as info without a traceback: nothing is wrong."""
    clock = FakeClock()
    body = {
        "reason": "Forbidden",
        "message": "being terminated",
        "details": {"causes": [{"reason": "NamespaceTerminating", "field": "metadata.namespace"}]},
    }
    rec = Scripted(ApiError(403, body), ApiError(403, {"reason": "Forbidden", "message": "rbac"}), None)
    ctrl = Controller("c", rec, clock=clock, workers=1)
    ctrl.queue.add(Request("ns", "x"))
    with caplog.at_level(logging.INFO, logger="kaiwo.runtime.controller"):
        await run_for(ctrl, clock, 0.05)
    assert len(rec.calls) == 3
    logged = [(r.levelno, bool(r.exc_info)) for r in caplog.records if "reconcile" in r.getMessage()]
    assert logged == [(logging.INFO, False), (logging.ERROR, True)]


async def test_requeue_after_and_requeue() -> None:
    clock = FakeClock()
    rec = Scripted(Result(requeue_after=5.0), Result(requeue=True), None)
    ctrl = Controller("c", rec, clock=clock, workers=2)
    ctrl.queue.add(Request(None, "cluster-scoped"))
    ctrl.start()
    try:
        await clock.advance(4.999)
        assert len(rec.calls) == 1
        await clock.advance(0.002)  # t = 5.001: the requeue_after is due
        assert len(rec.calls) == 2
        await clock.advance(0.005)  # rate-limited requeue: first retry 5 ms later
        assert len(rec.calls) == 3
    finally:
        await ctrl.stop(drain_timeout=1)
    assert sample(ctrl.metrics, "controller_runtime_reconcile_total", controller="c", result="requeue_after") == 1
    assert sample(ctrl.metrics, "controller_runtime_reconcile_total", controller="c", result="requeue") == 1


async def test_a_key_is_never_reconciled_twice_at_once() -> None:
    active: set[Request] = set()
    overlaps = 0
    calls = 0

    class Slow:
        async def reconcile(self, req: Request) -> Result | None:
            nonlocal overlaps, calls
            calls += 1
            if req in active:
                overlaps += 1
            active.add(req)
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            active.discard(req)
            return None

    ctrl = Controller("c", Slow(), workers=8)
    ctrl.start()
    for i in range(200):
        ctrl.queue.add(Request("ns", f"k{i % 5}"))
        await asyncio.sleep(0)
    await ctrl.stop(drain_timeout=5)
    assert overlaps == 0 and calls >= 5


def test_owner_mapper_follows_the_controller_reference_of_the_right_kind() -> None:
    child: dict[str, Any] = {
        "metadata": {
            "namespace": "ns",
            "name": "child",
            "ownerReferences": [
                {
                    "apiVersion": "kaiwo.silogen.ai/v1alpha1",
                    "kind": "KaiwoJob",
                    "name": "job",
                    "uid": "1",
                    "controller": True,
                },
                {"apiVersion": "v1", "kind": "ConfigMap", "name": "other", "uid": "2"},
                {"apiVersion": "kaiwo.silogen.ai/v1alpha1", "kind": "KaiwoJob", "name": "not-controller", "uid": "3"},
            ],
        }
    }
    mapper = owner_mapper("kaiwo.silogen.ai/v1alpha1", "KaiwoJob")
    assert list(mapper(child)) == [Request("ns", "job")]
    assert list(owner_mapper("other.group/v1", "KaiwoJob")(child)) == []


class HandlerSink:
    """Stands in for an informer: keeps the handler a controller registers, so the test can deliver events."""

    def __init__(self) -> None:
        self.handler: Any = None

    def add_handler(self, handler: Any) -> None:
        self.handler = handler


def _obj(kind: str, name: str, owner: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "ns", "uid": f"uid-{name}"}
    if owner:
        meta["ownerReferences"] = [
            {"apiVersion": "v1", "kind": "Parent", "name": owner, "uid": f"uid-{owner}", "controller": True}
        ]
    return {"apiVersion": "v1", "kind": kind, "metadata": meta}


async def test_changes_of_primary_objects_go_before_the_status_passes_their_children_ask_for() -> None:
    rec = Scripted()
    ctrl = Controller("c", rec, clock=FakeClock(), workers=1)
    primary, children = HandlerSink(), HandlerSink()
    ctrl.watches(primary)  # type: ignore[arg-type]
    ctrl.owns(children, "v1", "Parent")  # type: ignore[arg-type]
    children.handler.on_add(_obj("Child", "c-old", owner="old"), False)  # churn of an existing parent's child
    children.handler.on_update(_obj("Child", "c-old2", owner="old2"), _obj("Child", "c-old2", owner="old2"))
    primary.handler.on_add(_obj("Parent", "new"), False)  # a new primary object
    primary.handler.on_update(_obj("Parent", "edited"), _obj("Parent", "edited"))
    primary.handler.on_add(_obj("Parent", "listed"), True)  # the initial list
    order = [await ctrl.queue.get() for _ in range(5)]
    assert order[:2] == [Request("ns", "new"), Request("ns", "edited")]
    assert set(order[2:]) == {Request("ns", "old"), Request("ns", "old2"), Request("ns", "listed")}
    children.handler.on_add(_obj("Child", "c-x", owner="x"), False)
    primary.handler.on_update(_obj("Parent", "x"), _obj("Parent", "x"))  # a live change promotes the waiting key
    assert await ctrl.queue.get() == Request("ns", "x")


def test_an_update_that_only_touches_status_is_told_from_spec_and_metadata_changes() -> None:
    base = {"metadata": {"name": "a", "generation": 1, "resourceVersion": "1", "labels": {"x": "1"}}, "status": {}}

    def changed(**meta: Any) -> dict[str, Any]:
        return {"metadata": {**base["metadata"], "resourceVersion": "2", **meta}, "status": {"phase": "RUNNING"}}

    assert only_status_changed(base, changed())
    assert only_status_changed(base, changed(managedFields=[]) | {"metadata": base["metadata"]})
    assert not only_status_changed(base, changed(generation=2))
    assert not only_status_changed(base, changed(labels={"x": "2"}))
    assert not only_status_changed(base, changed(deletionTimestamp="2026-11-29T00:00:00Z"))
    assert not only_status_changed(base, changed(finalizers=["kaiwo"]))
    no_generation = {"metadata": {"name": "n", "resourceVersion": "1"}}
    assert not only_status_changed(no_generation, {"metadata": {"name": "n", "resourceVersion": "2"}})


async def test_our_own_status_write_of_a_primary_object_is_a_low_priority_pass() -> None:
    ctrl = Controller("c", Scripted(), clock=FakeClock(), workers=1)
    primary = HandlerSink()
    ctrl.watches(primary)  # type: ignore[arg-type]
    old = _obj("Parent", "written") | {"status": {}}
    old["metadata"] |= {"generation": 1, "resourceVersion": "1"}
    new = {**old, "metadata": {**old["metadata"], "resourceVersion": "2"}, "status": {"phase": "RUNNING"}}
    primary.handler.on_update(old, new)
    primary.handler.on_add(_obj("Parent", "new"), False)
    assert [await ctrl.queue.get() for _ in range(2)] == [Request("ns", "new"), Request("ns", "written")]


async def test_related_changes_within_the_batch_period_are_one_low_priority_pass() -> None:
    clock = FakeClock()
    ctrl = Controller("c", Scripted(), clock=clock, workers=1, related_batch=1.0)
    primary, children = HandlerSink(), HandlerSink()
    ctrl.watches(primary)  # type: ignore[arg-type]
    ctrl.owns(children, "v1", "Parent")  # type: ignore[arg-type]
    children.handler.on_add(_obj("Child", "c1", owner="p"), False)
    await clock.advance(0.5)
    children.handler.on_update(_obj("Child", "c1", owner="p"), _obj("Child", "c1", owner="p"))
    children.handler.on_delete(_obj("Child", "c2", owner="p"))
    assert len(ctrl.queue) == 0  # nothing before the period is over
    primary.handler.on_add(_obj("Parent", "new"), False)  # a primary object's change does not wait
    children.handler.on_add(_obj("Child", "listed", owner="q"), True)  # nor does the initial list
    await clock.advance(0.5)
    assert len(ctrl.queue) == 3
    assert [await ctrl.queue.get() for _ in range(3)] == [
        Request("ns", "new"),
        Request("ns", "q"),
        Request("ns", "p"),
    ]
