"""Controllers: a workqueue of object keys, N async workers, and a reconciler (controller-runtime's contract).

``reconcile(request)`` reads the current state from caches and makes the world match it; it never trusts the
event that enqueued the key. What a worker does with the outcome:

| outcome                          | worker action                                  | reconcile_total result |
| -------------------------------- | ---------------------------------------------- | ---------------------- |
| raises                           | log with the key, count, ``add_rate_limited``  | error                  |
| ``Result(requeue_after=t)``, t>0 | ``forget``, ``add_after(t)``                    | requeue_after          |
| ``Result(requeue=True)``         | ``add_rate_limited``                            | requeue                |
| ``None`` or ``Result()``         | ``forget``                                      | success                |

A reconcile exception never stops the worker or the manager. A key is never reconciled by two workers at once
(the workqueue guarantees it); different keys run concurrently.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from opentelemetry import trace

from kaiwo.runtime import tracing
from kaiwo.runtime.client import ApiError
from kaiwo.runtime.clock import Clock, RealClock
from kaiwo.runtime.informer import FuncHandler, Informer
from kaiwo.runtime.logs import log_context
from kaiwo.runtime.metrics import QueueMetricsAdapter, RuntimeMetrics
from kaiwo.runtime.objects import Obj
from kaiwo.runtime.workqueue import ShutDown, WorkQueue

log = logging.getLogger(__name__)
DRAIN_TIMEOUT = 20.0  # a graceful stop waits this long for in-flight reconciles (the chart's grace period is longer)


class Request(NamedTuple):
    """The key of the object to reconcile."""

    namespace: str | None
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}" if self.namespace else self.name

    @classmethod
    def of(cls, obj: Obj) -> Request:
        meta = obj["metadata"]
        return cls(meta.get("namespace") or None, meta["name"])


@dataclass(frozen=True)
class Result:
    requeue_after: float = 0.0
    requeue: bool = False


class Reconciler(Protocol):
    async def reconcile(self, request: Request) -> Result | None: ...


Mapper = Callable[[Obj], Iterable[Request]]


_VOLATILE_METADATA = frozenset({"resourceVersion", "managedFields"})


def only_status_changed(old: Obj, new: Obj) -> bool:
    """Whether an update changed nothing but status: same generation (spec), same metadata apart from the
    resourceVersion and field ownership (labels, annotations, finalizers, deletion, owners). False for kinds
    without a generation, whose spec changes cannot be told from status changes this way."""
    om, nm = old.get("metadata") or {}, new.get("metadata") or {}
    if om.get("generation") is None or om.get("generation") != nm.get("generation") or len(om) != len(nm):
        return False
    return all(k in _VOLATILE_METADATA or nm.get(k) == v for k, v in om.items())


def owner_mapper(owner_api_version: str, owner_kind: str, *, controller_only: bool = True) -> Mapper:
    """Map an object to its owner of the given kind via ownerReferences (controller-runtime's EnqueueOwner)."""
    group = owner_api_version.rsplit("/", 1)[0] if "/" in owner_api_version else ""

    def mapper(obj: Obj) -> Iterable[Request]:
        meta = obj["metadata"]
        for ref in meta.get("ownerReferences") or ():
            ref_group = ref.get("apiVersion", "").rsplit("/", 1)[0] if "/" in ref.get("apiVersion", "") else ""
            if ref.get("kind") == owner_kind and ref_group == group and (ref.get("controller") or not controller_only):
                yield Request(meta.get("namespace") or None, ref["name"])

    return mapper


@dataclass(frozen=True)
class _ControllerMetrics:
    source: RuntimeMetrics
    active: Any
    errors: Any
    time: Any
    total: dict[str, Any]


class Controller:
    def __init__(
        self,
        name: str,
        reconciler: Reconciler,
        *,
        workers: int = 2,
        metrics: RuntimeMetrics | None = None,
        clock: Clock | None = None,
        tracer: trace.Tracer | None = None,
        seed: tuple[Request, ...] = (),
        related_batch: float = 0.0,
    ) -> None:
        self.name = name
        self.seed = seed  # keys enqueued at every start: a poller's one key, which requeues itself
        # Seconds a key enqueued by a related object's change waits, so a burst of such changes costs one pass.
        self.related_batch = related_batch
        self.reconciler = reconciler
        self.workers = workers
        self.metrics = metrics or RuntimeMetrics()
        self.clock: Clock = clock or RealClock()
        self.tracer = tracer or trace.get_tracer("kaiwo.runtime.controller")
        self.queue: WorkQueue[Request] = WorkQueue(
            name, clock=self.clock, metrics=QueueMetricsAdapter(lambda: self.metrics)
        )
        self.primary: list[Informer] = []
        self.sources: list[Informer] = []  # every watched informer: the controller starts once all have synced
        self._tasks: list[asyncio.Task[None]] = []
        self._metrics_cache: _ControllerMetrics | None = None

    # --- wiring -----------------------------------------------------------------------------------------

    def watches(
        self,
        informer: Informer,
        mapper: Mapper | None = None,
        update_filter: Callable[[Obj, Obj], bool] | None = None,
    ) -> None:
        """Enqueue keys for every change of ``informer``'s objects: the object itself, or what ``mapper`` says.

        ``update_filter(old, new)`` may drop updates that cannot matter (controller-runtime's predicates);
        adds and deletes always pass. Changes of the primary objects themselves are enqueued at normal priority;
        the initial list, updates of a primary object that only touch its status (our own status writes) and
        changes of other objects (children, related kinds: through ``mapper``) at low priority, so that under
        load a new or edited primary object is worked on before the status passes that churn asks for
        (docs/design/runtime.md#workqueue). With ``related_batch`` > 0, keys from related objects' changes wait
        that long, and more changes in the meantime ride along (``WorkQueue.add_after``).
        """
        to_keys: Mapper = mapper or (lambda obj: (Request.of(obj),))
        related = mapper is not None
        if informer not in self.sources:
            self.sources.append(informer)
        if not related:
            self.primary.append(informer)

        def enqueue_related(reqs: Iterable[Request]) -> None:
            for req in reqs:
                self.queue.add_after(req, self.related_batch, low_priority=True)

        def add(obj: Obj, initial: bool) -> None:
            if related and not initial:
                enqueue_related(to_keys(obj))
                return
            for req in to_keys(obj):
                self.queue.add(req, low_priority=initial)

        def update(old: Obj, new: Obj) -> None:
            if update_filter is not None and not update_filter(old, new):
                return
            if related:
                enqueue_related({*to_keys(old), *to_keys(new)})
                return
            for req in {*to_keys(old), *to_keys(new)}:
                self.queue.add(req, low_priority=only_status_changed(old, new))

        def delete(obj: Obj) -> None:
            if related:
                enqueue_related(to_keys(obj))
                return
            for req in to_keys(obj):
                self.queue.add(req)

        informer.add_handler(FuncHandler(add, update, delete))

    def owns(self, informer: Informer, owner_api_version: str, owner_kind: str) -> None:
        """Enqueue the controlling owner of every changed child (controllers are wired declaratively by
        kaiwo.runtime.builder, which calls ``watches`` and ``owns``)."""
        self.watches(informer, owner_mapper(owner_api_version, owner_kind))

    def resync(self) -> int:
        """Enqueue every cached primary object at low priority (a periodic safety net); returns how many."""
        n = 0
        for inf in self.primary:
            for obj in inf.objects():
                self.queue.add(Request.of(obj), low_priority=True)
                n += 1
        return n

    # --- running ----------------------------------------------------------------------------------------

    def start(self) -> None:
        self.metrics.max_concurrent.labels(self.name).set(self.workers)
        self.metrics.active_workers.labels(self.name).set(0)
        self._tasks = [asyncio.create_task(self._worker(), name=f"{self.name}-worker-{i}") for i in range(self.workers)]
        for key in self.seed:
            self.queue.add(key)

    async def stop(self, drain_timeout: float = DRAIN_TIMEOUT) -> None:
        """Hand out no more queued keys; let in-flight reconciles finish (up to ``drain_timeout``; 0 cancels them
        at once, as on a lost Lease)."""
        if drain_timeout > 0:
            try:
                await asyncio.wait_for(self.queue.shutdown_with_drain(discard_queued=True), drain_timeout)
            except TimeoutError:
                log.warning("controller %s: reconciles still running after %.0fs; cancelling", self.name, drain_timeout)
        else:
            self.queue.shutdown()
        self.abort()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    def abort(self) -> None:
        """Cancel every worker now (the reconciles in flight stop at their next await)."""
        self.queue.shutdown()
        for t in self._tasks:
            t.cancel()

    @property
    def tasks(self) -> list[asyncio.Task[None]]:
        """The worker tasks (the manager supervises them)."""
        return list(self._tasks)

    async def _worker(self) -> None:
        while True:
            try:
                req = await self.queue.get()
            except ShutDown:
                return
            try:
                await self.process(req)
            finally:
                self.queue.done(req)

    def _metric_children(self) -> _ControllerMetrics:
        """This controller's labelled collectors, resolved once per metrics registry (labels() is costly)."""
        if self._metrics_cache is None or self._metrics_cache.source is not self.metrics:
            m, n = self.metrics, self.name
            self._metrics_cache = _ControllerMetrics(
                m,
                m.active_workers.labels(n),
                m.reconcile_errors.labels(n),
                m.reconcile_time.labels(n),
                {r: m.reconcile_total.labels(n, r) for r in ("success", "error", "requeue", "requeue_after")},
            )
        return self._metrics_cache

    async def process(self, req: Request) -> None:
        """Reconcile one key and act on the outcome (see the module table)."""
        m = self._metric_children()
        reconcile_id = os.urandom(8).hex()
        m.active.inc()
        started = time.perf_counter()
        with (
            self.tracer.start_as_current_span(
                f"reconcile {self.name}",
                attributes=tracing.reconcile_attributes(self.name, req.namespace, req.name, reconcile_id),
            ) as span,
            log_context(controller=self.name, namespace=req.namespace, name=req.name, reconcileID=reconcile_id),
        ):
            try:
                result = await self.reconciler.reconcile(req) or Result()
            except Exception as e:
                m.errors.inc()
                m.total["error"].inc()
                span.record_exception(e)
                span.set_status(trace.Status(trace.StatusCode.ERROR, str(e)))
                if isinstance(e, ApiError) and e.conflict:  # a stale cache: retry from fresher state, no traceback
                    log.info("reconcile %s: %s; retrying", req, e)
                elif isinstance(e, ApiError) and e.namespace_terminating:  # goes with its namespace; not a fault
                    log.info("reconcile %s: its namespace is being deleted (%s)", req, e.message)
                else:
                    log.error("reconcile %s failed: %s", req, e, exc_info=True)
                self.queue.add_rate_limited(req)
                return
            finally:
                m.time.observe(time.perf_counter() - started)
                m.active.dec()
            log.debug("reconciled", extra={"fields": {"seconds": round(time.perf_counter() - started, 4)}})
        if result.requeue_after > 0:
            self.queue.forget(req)
            self.queue.add_after(req, result.requeue_after)
            m.total["requeue_after"].inc()
        elif result.requeue:
            self.queue.add_rate_limited(req)
            m.total["requeue"].inc()
        else:
            self.queue.forget(req)
            m.total["success"].inc()
