"""Shared fakes of the unit tests (a test subclasses one for a behaviour of its own rather than writing another):

- ``cache(...)``: a real Informer filled by hand;
- ``RecordingClient``: records every write and, given caches, delivers the result to them as a watch would (so a
  reconciler sees its own writes on the next pass); ``workload_reconciler()`` wires it to a KaiwoJob reconcile;
- ``Script``/``Events``/``run_until_idle``: a scripted lister-watcher for the informer's list/watch logic.

For pure logic and counting writes; behaviour against a real apiserver is proven by the e2e tests."""

from __future__ import annotations

import asyncio
import copy
import itertools
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import pytest

from kaiwo.controllers.workload import Caches, WorkloadReconciler
from kaiwo.devcluster import topology
from kaiwo.rbac import resource_name
from kaiwo.runtime.client import ApiError, Resource
from kaiwo.runtime.clock import FakeClock
from kaiwo.runtime.controller import Request, Result
from kaiwo.runtime.informer import FuncHandler, Informer, object_key
from kaiwo.runtime.objects import Obj
from tests.builders import KaiwoJobBuilder


class NoServer:
    """The lister-watcher of an informer whose store a test fills by hand (``cache(...)``)."""

    async def list_page(self, continue_token: str | None) -> Obj:
        raise AssertionError("caches are fed by hand")

    def watch(self, resource_version: str, timeout_seconds: int, client_grace: float) -> AsyncIterator[Obj]:
        raise AssertionError("caches are fed by hand")


def cache(*objs: Obj) -> Informer:
    """An informer (with its default indexes) holding ``objs``, never started."""
    inf = Informer(NoServer())
    for o in objs:
        inf.indexer.put(object_key(o), copy.deepcopy(o))
    return inf


@dataclass(frozen=True)
class Call:
    """One write: ``verb`` is apply, create, patch or delete; ``body`` what was sent (the patch for a patch)."""

    verb: str
    kind: str
    name: str
    namespace: str | None
    body: Any = None
    subresource: str | None = None
    field_manager: str | None = None  # applies only
    force: bool | None = None  # applies only

    def __str__(self) -> str:
        sub = f"/{self.subresource}" if self.subresource else ""
        return f"{self.verb} {self.kind}{sub}"


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (what ``patch_type="merge"`` asks of the apiserver)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def _told(call: Call) -> str:
    body = call.body if isinstance(call.body, dict) else {}
    if call.verb == "create" and call.kind == "Event":
        return f"event {body.get('reason')}"
    if call.subresource == "status" and "status" in (body.get("status") or {}):
        return f"status {body['status']['status']}"
    return str(call)


class RecordingClient:
    """Stands in for ``kaiwo.runtime.client.Client`` where a test needs writes recorded, not sent.

    ``stores`` maps a kind to the informer its objects appear in; writes of other kinds are only recorded
    (apply and create return what was sent, a patch returns the patch applied to an empty object). Stored
    objects get a uid (kept across applies) and an increasing resourceVersion; an apply keeps the live status
    (server-side apply by a field manager that does not own it). ``fail(verb, kind, error)`` makes every such
    call raise ``error`` after recording it (``None`` lets them through again)."""

    def __init__(self, stores: Mapping[str, Informer] | None = None) -> None:
        self.stores: dict[str, Informer] = dict(stores or {})
        self.calls: list[Call] = []
        self._failures: dict[tuple[str, str], ApiError] = {}
        self._rv = itertools.count(101)

    @property
    def writes(self) -> list[str]:
        """The calls as short strings, e.g. ``["apply Job", "patch KaiwoJob/status", "create Event"]``."""
        return [str(c) for c in self.calls]

    @property
    def story(self) -> list[str]:
        """The calls as a reviewer reads a Kaiwo reconcile: a status write as the phase it sets
        (``status RUNNING``), an Event as its reason (``event WorkloadRunning``), anything else as in ``writes``."""
        return [_told(c) for c in self.calls]

    @property
    def event_reasons(self) -> list[str]:
        return [c.body["reason"] for c in self.calls if c.verb == "create" and c.kind == "Event"]

    def applies(self, field_manager: str | None = None) -> list[Call]:
        """The apply calls, optionally only those of one field manager."""
        return [c for c in self.calls if c.verb == "apply" and field_manager in (None, c.field_manager)]

    def clear(self) -> None:
        """Forget the calls so far (the stores keep their objects)."""
        self.calls.clear()

    def fail(self, verb: str, kind: str, error: ApiError | None) -> None:
        if error is None:
            self._failures.pop((verb, kind), None)
        else:
            self._failures[(verb, kind)] = error

    def _record(self, call: Call) -> None:
        self.calls.append(call)
        if (call.verb, call.kind) in self._failures:
            raise self._failures[(call.verb, call.kind)]

    def _live(self, kind: str, name: str, namespace: str | None) -> Obj | None:
        inf = self.stores.get(kind)
        return copy.deepcopy(inf.get_by(name, namespace)) if inf is not None else None

    def _store(self, obj: Obj) -> Obj:
        inf = self.stores.get(obj["kind"])
        if inf is None:
            return obj
        stored = copy.deepcopy(obj)
        meta = stored["metadata"]
        meta.setdefault("uid", f"uid-{obj['kind'].lower()}-{meta['name']}")
        meta["resourceVersion"] = str(next(self._rv))
        inf.indexer.put(object_key(stored), stored)
        return copy.deepcopy(stored)

    async def apply(
        self,
        obj: Mapping[str, Any],
        field_manager: str,
        *,
        force: bool = True,
        dry_run: bool = False,
        subresource: str | None = None,
    ) -> Obj:
        meta = obj["metadata"]
        self._record(
            Call(
                "apply",
                obj["kind"],
                meta["name"],
                meta.get("namespace"),
                copy.deepcopy(obj),
                subresource,
                field_manager,
                force,
            )
        )
        sent: Obj = copy.deepcopy(dict(obj))
        if dry_run:
            return sent
        live = self._live(obj["kind"], meta["name"], meta.get("namespace"))
        if live is not None:
            sent["metadata"]["uid"] = live["metadata"].get("uid")  # the live object keeps its identity
            if "status" in live and subresource != "status":
                sent["status"] = live["status"]
        return self._store(sent)

    async def create(self, obj: Mapping[str, Any], **params: Any) -> Obj:
        meta = obj["metadata"]
        name = meta.get("name") or meta.get("generateName", "")
        self._record(Call("create", obj["kind"], name, meta.get("namespace"), copy.deepcopy(obj)))
        if self._live(obj["kind"], name, meta.get("namespace")) is not None:
            raise ApiError(409, {"reason": "AlreadyExists", "message": f"{obj['kind']} {name!r} already exists"})
        return self._store(copy.deepcopy(dict(obj)))

    async def patch(
        self,
        api_version: str,
        kind: str,
        name: str,
        patch: Any,
        namespace: str | None = None,
        *,
        patch_type: str = "merge",
        subresource: str | None = None,
    ) -> Obj:
        self._record(Call("patch", kind, name, namespace, copy.deepcopy(patch), subresource))
        live = self._live(kind, name, namespace)
        if live is None:
            if kind in self.stores:
                raise ApiError(404, {"reason": "NotFound", "message": f"{kind} {name!r} not found"})
            result: Obj = merge_patch({}, patch)
            return result
        return self._store(merge_patch(live, patch))

    async def delete(
        self,
        api_version: str,
        kind: str,
        name: str,
        namespace: str | None = None,
        *,
        propagation: str = "Background",
        missing_ok: bool = True,
    ) -> None:
        self._record(Call("delete", kind, name, namespace))
        inf = self.stores.get(kind)
        live = inf.get_by(name, namespace) if inf is not None else None
        if inf is not None and live is not None:
            inf.indexer.remove(object_key(live))
        elif not missing_ok:
            raise ApiError(404, {"reason": "NotFound", "message": f"{kind} {name!r} not found"})

    async def get_or_none(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> Obj | None:
        return self._live(kind, name, namespace)


# --- the workload reconcile on hand-fed caches ----------------------------------------------------------------

WORKLOAD_CHILD_KINDS = ("Job", "Deployment", "Service", "PersistentVolumeClaim", "ConfigMap", "RayJob", "AppWrapper")


def workload_caches(primary: Obj) -> Caches:
    """Caches of a workload reconcile holding ``primary`` and the nodes of the local cluster's topology."""
    return Caches(
        primary=cache(primary),
        children={k: cache() for k in WORKLOAD_CHILD_KINDS},
        workloads=cache(),
        pods=cache(),
        nodes=cache(*topology.node_manifests(topology.load(), "v1.35.4")),
        kaiwo_configs=None,
        queue_configs=None,
        local_queues=cache(),
    )


def workload_client(caches: Caches, kind: str = "KaiwoJob") -> RecordingClient:
    """A recording client whose writes of the primary (of ``kind``), its children and LocalQueues land in ``caches``
    as a watch would deliver them."""
    stores = {**caches.children, kind: caches.primary}
    if caches.local_queues is not None:
        stores["LocalQueue"] = caches.local_queues
    return RecordingClient(stores)


def workload_reconciler(
    primary: Obj | None = None, **options: Any
) -> tuple[WorkloadReconciler, RecordingClient, Caches]:
    """The KaiwoJob reconcile of ``primary`` (default: ``train`` in ``ns``, 8 AMD GPUs) with a recording client;
    ``options`` go to WorkloadReconciler (e.g. ``wall``)."""
    job = primary or KaiwoJobBuilder("train", "ns").gpus(8, "amd").replicas(1).ray(False).dangerous(False).obj()
    caches = workload_caches(job)
    client = workload_client(caches, job["kind"])
    reconciler = WorkloadReconciler(client, job["kind"], caches, f"kaiwo-{job['kind'].lower()}", **options)  # type: ignore[arg-type]
    return reconciler, client, caches


# --- a scripted lister-watcher --------------------------------------------------------------------------------


def cm(name: str, rv: str, ns: str = "ns", owner: str | None = None, **labels: str) -> Obj:
    """A ConfigMap as a list or watch delivers it (resourceVersion, labels, managedFields, an optional owner)."""
    meta: Obj = {
        "name": name,
        "namespace": ns,
        "resourceVersion": rv,
        "labels": labels,
        "managedFields": [{"manager": "x"}],
    }
    if owner:
        meta["ownerReferences"] = [{"uid": owner, "kind": "Thing", "name": "o"}]
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta}


class Script:
    """A lister-watcher handing out lists and watch streams in order; a stream is a list of events or an
    exception. ``idle`` is set once every stream has been handed out and the informer waits on the next."""

    def __init__(self, lists: list[tuple[list[Obj], str]], watches: list[list[Obj] | Exception]) -> None:
        self.lists = lists
        self.watches = watches
        self.watch_calls: list[str] = []
        self.list_calls = 0
        self.idle = asyncio.Event()

    async def list_page(self, continue_token: str | None) -> Obj:
        items, rv = self.lists.pop(0)
        self.list_calls += 1
        # Two pages when there is more than one item, to exercise pagination.
        if continue_token is None and len(items) > 1:
            self.lists.insert(0, (items[1:], rv))
            return {"items": items[:1], "metadata": {"continue": "next", "resourceVersion": rv}}
        return {"items": items, "metadata": {"resourceVersion": rv}}

    async def watch(self, resource_version: str, timeout_seconds: int, client_grace: float) -> AsyncIterator[Obj]:
        self.watch_calls.append(resource_version)
        if not self.watches:
            self.idle.set()
            await asyncio.Event().wait()  # hang until cancelled
        stream = self.watches.pop(0)
        if isinstance(stream, Exception):
            raise stream
        for event in stream:
            yield event


class Events:
    """What an informer's handler was told: (``add``/``update``/``delete``, key, initial or resourceVersion)."""

    def __init__(self) -> None:
        self.log: list[tuple[str, str, bool | str]] = []

    def handler(self) -> FuncHandler:
        return FuncHandler(
            add=lambda o, initial: self.log.append(("add", object_key(o), initial)),
            update=lambda old, new: self.log.append(("update", object_key(new), new["metadata"]["resourceVersion"])),
            delete=lambda o: self.log.append(("delete", object_key(o), "")),
        )


async def run_until_idle(inf: Informer, script: Script, clock: FakeClock, advance: float = 0.0) -> None:
    """Run ``inf`` until ``script`` is consumed, advancing the fake clock in steps of ``advance``."""
    task = asyncio.create_task(inf.run())
    try:
        for _ in range(200):
            if script.idle.is_set():
                break
            await clock.advance(advance or 0.01)
        assert script.idle.is_set(), "the script was not consumed"
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


class Discovery:
    """The part of a client a manager uses before it runs: API discovery of the given (apiVersion, kind)s, or of
    every kind with ``every``; anything else is ``error`` (404 by default)."""

    def __init__(self, *served: tuple[str, str], error: int = 404, every: bool = False) -> None:
        self.served = set(served)
        self.every = every
        self.error = error
        self.observers: list[object] = []
        self.asked: list[tuple[str, str]] = []

    async def resource(self, api_version: str, kind: str) -> Resource:
        self.asked.append((api_version, kind))
        if self.every or (api_version, kind) in self.served:
            return Resource(api_version, kind, resource_name(kind), namespaced=True)
        raise ApiError(self.error, {"reason": "NotFound", "message": f"no {kind} in {api_version}"})


class RecordingReconciler:
    """A reconciler that only records the keys it is asked to reconcile."""

    def __init__(self) -> None:
        self.seen: list[Request] = []

    async def reconcile(self, request: Request) -> Result | None:
        self.seen.append(request)
        return None
