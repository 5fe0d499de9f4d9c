"""The declarative controller wiring (kaiwo.runtime.builder): specs are pure data; resolution takes the first
served apiVersion and follows one rule for optional APIs; each kind of source enqueues what the module's table
says; seed keys are enqueued at every start."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

import pytest

from kaiwo.runtime.builder import ControllerSpec, For, Owns, Reads, Sources, Watches, build, reads, resolve
from kaiwo.runtime.client import ApiError
from kaiwo.runtime.controller import Request
from kaiwo.runtime.manager import Manager, ManagerOptions
from kaiwo.runtime.objects import Obj
from kaiwo.runtime.workqueue import WorkQueue
from kaiwo.translate.queueconfig import KUEUE_API, KUEUE_APIS, KUEUE_V1BETA1
from tests.builders import JobBuilder, NodeBuilder, ObjectBuilder
from tests.fakes import Discovery, RecordingReconciler

API = "example.kaiwo.silogen.ai/v1"


def manager(*served: tuple[str, str], error: int = 404) -> Manager:
    return Manager(Discovery(*served, error=error), ManagerOptions(health_address="", metrics_address=""))  # type: ignore[arg-type]


async def queued(queue: WorkQueue[Request]) -> set[Request]:
    """Take every key waiting in ``queue`` (the controller is not started, so nothing else takes them)."""
    out = set()
    while len(queue):
        key = await queue.get()
        queue.done(key)
        out.add(key)
    return out


def node_of(recorder: RecordingReconciler, node: Obj) -> Iterable[Request]:
    """A test mapper: a node -> the Thing named in its ``thing`` label (and it proves it got the reconciler)."""
    assert isinstance(recorder, RecordingReconciler)
    name = (node["metadata"].get("labels") or {}).get("thing")
    return [Request("default", name)] if name else []


def spec_changed(old: Obj, new: Obj) -> bool:
    return old.get("spec") != new.get("spec")


SPEC = ControllerSpec(
    "thing",
    (
        For(API, "Thing", predicate=spec_changed),
        Owns("batch/v1", "Job", selector="owned"),
        Watches("v1", "Node", mapper=node_of),
        Reads("v1", "Secret"),
    ),
)
SERVED = ((API, "Thing"), ("batch/v1", "Job"), ("v1", "Node"), ("v1", "Secret"))


def thing(name: str, spec: Obj | None = None) -> Obj:
    obj = ObjectBuilder(API, "Thing", name, "default").uid(f"uid-{name}").obj()
    if spec is not None:
        obj["spec"] = spec
    return obj


# --- specs are data -------------------------------------------------------------------------------------------


def test_a_spec_is_pure_data_and_names_every_read() -> None:
    assert SPEC.primary == For(API, "Thing", predicate=spec_changed)
    assert reads([SPEC]) == set(SERVED)
    candidates = ControllerSpec("q", (Reads(KUEUE_APIS, "Workload"),))
    assert reads([candidates]) == {(KUEUE_API, "Workload"), (KUEUE_V1BETA1, "Workload")}


def test_a_spec_has_at_most_one_primary() -> None:
    with pytest.raises(ValueError, match="more than one For"):
        ControllerSpec("x", (For(API, "Thing"), For(API, "Other")))


def test_owns_needs_a_primary_kind() -> None:
    with pytest.raises(ValueError, match="Owns needs a For"):
        ControllerSpec("x", (Owns("batch/v1", "Job"),))


def test_one_kind_is_one_cache() -> None:
    with pytest.raises(ValueError, match="Pod appears with different"):
        ControllerSpec("x", (Reads("v1", "Pod"), Watches("v1", "Pod", mapper=node_of, selector="a")))
    with pytest.raises(ValueError, match="Pod appears with different"):
        ControllerSpec("x", (Reads("v1", "Pod"), Reads("v1", "Pod", optional=True)))
    ControllerSpec("x", (For("v1", "Pod"), Watches("v1", "Pod", mapper=node_of)))  # the same cache twice is fine


# --- resolution -----------------------------------------------------------------------------------------------


async def test_the_first_served_version_wins() -> None:
    for served, want in (((KUEUE_V1BETA1, KUEUE_API), KUEUE_API), ((KUEUE_V1BETA1,), KUEUE_V1BETA1)):
        mgr = manager(*((v, "Workload") for v in served))
        sources = await resolve(mgr, [Reads(KUEUE_APIS, "Workload")])
        assert sources.served("Workload") == want
        assert sources["Workload"] is mgr.informers[(want, "Workload", None, None)]


async def test_an_optional_source_not_served_is_skipped_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    mgr = manager((API, "Thing"))
    spec = ControllerSpec("x", (For(API, "Thing"), Watches(KUEUE_APIS, "Workload", mapper=node_of, optional=True)))
    with caplog.at_level(logging.WARNING, logger="kaiwo.runtime.builder"):
        ctrl, _ = await build(mgr, spec, lambda sources: RecordingReconciler())
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings == [
        f"Workload ({KUEUE_API} or {KUEUE_V1BETA1}) is not served by this cluster; controller x goes on without it"
    ]
    assert [i.name for i in ctrl.sources] == [f"Thing.{API}"]  # no handler, and the start does not wait for it


async def test_the_reconciler_sees_none_for_a_skipped_source() -> None:
    seen: list[Sources] = []

    def factory(sources: Sources) -> RecordingReconciler:
        seen.append(sources)
        return RecordingReconciler()

    await build(manager(), ControllerSpec("x", (Reads("v1", "ConfigMap", optional=True),)), factory)
    assert seen[0].get("ConfigMap") is None and seen[0].served("ConfigMap") is None
    with pytest.raises(KeyError):
        seen[0]["ConfigMap"]


async def test_a_required_source_not_served_fails_the_setup() -> None:
    with pytest.raises(ApiError) as e:
        await resolve(manager(), [Reads(KUEUE_APIS, "Workload")])
    assert e.value.not_found and KUEUE_API in e.value.message


async def test_discovery_errors_other_than_not_found_raise_even_for_optional_sources() -> None:
    with pytest.raises(ApiError) as e:
        await resolve(manager(error=503), [Reads("v1", "Pod", optional=True)])
    assert e.value.status == 503


async def test_caches_are_shared_and_indexed() -> None:
    mgr = manager(("v1", "Pod"))
    first = await resolve(mgr, [Reads("v1", "Pod", indexes=(("phase", lambda p: (p["status"]["phase"],)),))])
    second = await resolve(mgr, [Reads("v1", "Pod")])
    assert first["Pod"] is second["Pod"] and len(mgr.informers) == 1
    pod = ObjectBuilder("v1", "Pod", "p", "default").status_field("phase", "Running").obj()
    first["Pod"].indexer.put("default/p", pod)
    assert first["Pod"].by_index("phase", "Running") == [pod]


# --- what each source enqueues ----------------------------------------------------------------------------------


async def test_each_source_enqueues_what_its_kind_says() -> None:
    mgr = manager(*SERVED)
    ctrl, reconciler = await build(mgr, SPEC, lambda sources: RecordingReconciler(), workers=3)
    assert ctrl.workers == 3 and mgr.controllers == [ctrl] and isinstance(reconciler, RecordingReconciler)
    assert [i.name for i in ctrl.sources] == [f"Thing.{API}", "Job.batch/v1", "Node.v1"]
    assert [i.name for i in ctrl.primary] == [f"Thing.{API}"]
    by_kind = {key[1]: inf for key, inf in mgr.informers.items()}
    assert by_kind["Job"] is mgr.informers[("batch/v1", "Job", None, "owned")]  # Owns' selector
    assert by_kind["Secret"].handlers == []  # Reads: nothing enqueued

    [for_] = by_kind["Thing"].handlers
    for_.on_add(thing("a"), False)
    for_.on_update(thing("b", {"x": 1}), thing("b", {"x": 1}))  # the predicate drops it
    for_.on_update(thing("c", {"x": 1}), thing("c", {"x": 2}))
    for_.on_delete(thing("d"))
    assert await queued(ctrl.queue) == {Request("default", n) for n in "acd"}

    [owns] = by_kind["Job"].handlers
    owns.on_add(JobBuilder("j1").owned_by(thing("a")).obj(), False)
    owns.on_add(JobBuilder("j2").owned_by(thing("b"), controller=False).obj(), False)  # not the controller
    owns.on_add(JobBuilder("j3").owned_by(JobBuilder("other").uid("uid-other").obj()).obj(), False)  # not a Thing
    assert await queued(ctrl.queue) == {Request("default", "a")}

    [watches] = by_kind["Node"].handlers
    watches.on_add(NodeBuilder("n1").label("thing", "e").obj(), False)
    watches.on_update(NodeBuilder("n1").label("thing", "e").obj(), NodeBuilder("n1").label("thing", "f").obj())
    watches.on_delete(NodeBuilder("n2").obj())
    assert await queued(ctrl.queue) == {Request("default", "e"), Request("default", "f")}


async def test_seed_keys_are_enqueued_when_the_controller_starts() -> None:
    key = Request(None, "tick")
    recorder = RecordingReconciler()
    ctrl = await build(manager(), ControllerSpec("poller", workers=1, seed=(key,)), lambda _: recorder)
    assert len(ctrl[0].queue) == 0  # registered, not started: nothing yet
    ctrl[0].start()
    for _ in range(200):  # a worker takes the key at its first turn; bounded for a slow machine
        if recorder.seen:
            break
        await asyncio.sleep(0.01)
    await ctrl[0].stop(0)
    assert recorder.seen == [key]
