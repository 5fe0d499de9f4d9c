"""Kaiwo's own Prometheus metrics (``kaiwo_*``), computed from the informer caches at scrape time.

Read-only views of the shared caches: a scrape costs no API call, and the numbers are always those the
controllers see. Every status has a series (0 when empty), so dashboards and alerts need no ``absent()``.

- ``kaiwo_workloads{kind,status}``: KaiwoJobs/KaiwoServices per status (no status yet counts as NEW);
- ``kaiwo_workload_gpus{kind,status}``: their requested GPUs (``spec.gpus``, else replicas x gpusPerReplica);
- ``kaiwo_workload_oldest_pending_seconds{kind}``: age of the oldest PENDING workload (0 when none);
- ``kaiwo_queueconfig_ready``: 1 when the KaiwoQueueConfig ``kaiwo`` is READY, else 0.

For administrators (AdminCollector and ChildLatency; the chart's Grafana dashboard is built on these and on the
runtime's controller-runtime metrics):
- ``kaiwo_clusterqueue_workloads{cluster_queue,state}``: pending, reserving and admitted workloads per Kueue
  ClusterQueue (Kueue's status counts), and ``kaiwo_clusterqueue_active{cluster_queue}`` (Kueue's Active);
- ``kaiwo_localqueue_workloads{namespace,local_queue,cluster_queue,state}``: pending and admitted per LocalQueue;
- ``kaiwo_queue_oldest_pending_seconds{cluster_queue}``: age of the oldest PENDING Kaiwo workload per queue;
- ``kaiwo_nodepool_gpus{node_pool,vendor,state}``: allocatable GPUs of the pool's schedulable nodes, and GPUs
  requested by Kaiwo pods bound to them (``state`` allocatable|requested);
- ``kaiwo_workload_errors{kind,reason}``: workloads now in ERROR or FAILED, by their failing condition's reason;
- ``kaiwo_reconcile_errors_total{controller,reason}``: failed reconciles by cause (the apiserver's Status
  reason, e.g. ``Conflict``/``Forbidden``, else the exception's type); the runtime's
  ``controller_runtime_reconcile_errors_total`` counts the same failures without a reason;
- ``kaiwo_workload_child_create_seconds{kind}`` (histogram): from a workload's first sighting to its first child
  in the caches, i.e. the operator's reaction time (not observed for objects that predate the process).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import Counter, Histogram
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from kaiwo.api import groups
from kaiwo.api.common import WorkloadStatus
from kaiwo.api.queueconfig import QueueConfigStatus
from kaiwo.controllers import workload
from kaiwo.runtime.builder import Reads, resolve
from kaiwo.runtime.client import ApiError
from kaiwo.runtime.controller import Request, Result
from kaiwo.runtime.informer import FuncHandler, Informer
from kaiwo.runtime.manager import Manager
from kaiwo.runtime.objects import Obj
from kaiwo.runtime.timestamps import epoch
from kaiwo.translate import kueuestate
from kaiwo.translate.nodepools import NODEPOOL_LABEL
from kaiwo.translate.preemption import requested_gpus
from kaiwo.translate.queueconfig import KUEUE_API

API = groups.KAIWO_API
STATUSES = tuple(s.value or "NEW" for s in WorkloadStatus)  # NEW is "" in the API: no status written yet


def _age(obj: Obj, now: float) -> float:
    """Seconds since ``obj`` was created (0 when the apiserver has not stamped it)."""
    stamp = obj["metadata"].get("creationTimestamp")
    return now - epoch(stamp) if stamp else 0.0


class KaiwoCollector(Collector):
    def __init__(
        self, workloads: dict[str, Informer], queue_configs: Informer | None, clock: Callable[[], float] = time.time
    ) -> None:
        self.workloads = workloads  # kind -> informer of that kind
        self.queue_configs = queue_configs
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        count = GaugeMetricFamily("kaiwo_workloads", "Kaiwo workloads by kind and status", labels=["kind", "status"])
        gpus = GaugeMetricFamily(
            "kaiwo_workload_gpus", "GPUs requested by Kaiwo workloads, by kind and status", labels=["kind", "status"]
        )
        pending = GaugeMetricFamily(
            "kaiwo_workload_oldest_pending_seconds",
            "Age of the oldest PENDING Kaiwo workload (0 when none)",
            labels=["kind"],
        )
        now = self.clock()
        for kind, informer in sorted(self.workloads.items()):
            n = dict.fromkeys(STATUSES, 0)
            g = dict.fromkeys(STATUSES, 0)
            oldest = 0.0
            for obj in informer.objects():
                status = (obj.get("status") or {}).get("status") or "NEW"
                n[status] = n.get(status, 0) + 1
                g[status] = g.get(status, 0) + requested_gpus(obj)
                if status == WorkloadStatus.PENDING:
                    oldest = max(oldest, _age(obj, now))
            for status in n:
                count.add_metric([kind, status], n[status])
                gpus.add_metric([kind, status], g[status])
            pending.add_metric([kind], oldest)
        yield from (count, gpus, pending)
        ready = GaugeMetricFamily("kaiwo_queueconfig_ready", "1 when the KaiwoQueueConfig kaiwo is READY, else 0")
        config = self.queue_configs.get_by("kaiwo") if self.queue_configs is not None else None
        ready.add_metric([], int(((config or {}).get("status") or {}).get("status") == QueueConfigStatus.READY))
        yield ready


GPU_VENDORS = {"amd.com/gpu": "amd", "nvidia.com/gpu": "nvidia"}
RUN_ID_LABEL = workload.RUN_ID_LABEL  # on every child: the owning workload's uid
CHILD_KINDS = {kind: workload.CHILD_KINDS[kind].api_version for kind in workload.WORKLOAD_KINDS}  # Kueue admits these
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120)


def _quantity(value: Any) -> float:
    try:
        return float(str(value))
    except ValueError:
        return 0.0


def _pod_gpus(pod: Obj) -> dict[str, float]:
    total: dict[str, float] = {}
    for c in (pod.get("spec") or {}).get("containers") or []:
        res = c.get("resources") or {}
        for key in GPU_VENDORS:
            amount = (res.get("requests") or {}).get(key, (res.get("limits") or {}).get(key))
            if amount is not None:
                total[key] = total.get(key, 0.0) + _quantity(amount)
    return total


class AdminCollector(Collector):
    """Queue lengths, pending ages, GPU allocation per node pool, and workload errors, from the shared caches."""

    def __init__(
        self,
        workloads: dict[str, Informer],
        *,
        cluster_queues: Informer | None,
        local_queues: Informer | None,
        nodes: Informer,
        pods: Informer,
        default_queue: Callable[[], str] = lambda: "kaiwo",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.workloads = workloads
        self.cluster_queues = cluster_queues
        self.local_queues = local_queues
        self.nodes = nodes
        self.pods = pods
        self.default_queue = default_queue
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        yield from self._queues()
        yield from self._gpus()
        yield from self._errors()

    def _queues(self) -> Iterator[Metric]:
        cq_metric = GaugeMetricFamily(
            "kaiwo_clusterqueue_workloads",
            "Workloads per Kueue ClusterQueue by state (pending, reserving, admitted)",
            labels=["cluster_queue", "state"],
        )
        active = GaugeMetricFamily(
            "kaiwo_clusterqueue_active",
            "1 when Kueue reports the ClusterQueue Active, else 0",
            labels=["cluster_queue"],
        )
        for cq in self.cluster_queues.objects() if self.cluster_queues is not None else []:
            name, st = cq["metadata"]["name"], cq.get("status") or {}
            for state, field in (
                ("pending", "pendingWorkloads"),
                ("reserving", "reservingWorkloads"),
                ("admitted", "admittedWorkloads"),
            ):
                cq_metric.add_metric([name, state], st.get(field) or 0)
            active.add_metric([name], int(kueuestate.verdict("ClusterQueue", cq).ok))
        lq_metric = GaugeMetricFamily(
            "kaiwo_localqueue_workloads",
            "Workloads per Kueue LocalQueue by state (pending, admitted)",
            labels=["namespace", "local_queue", "cluster_queue", "state"],
        )
        for lq in self.local_queues.objects() if self.local_queues is not None else []:
            meta, st = lq["metadata"], lq.get("status") or {}
            labels = [meta.get("namespace", ""), meta["name"], (lq.get("spec") or {}).get("clusterQueue", "")]
            lq_metric.add_metric([*labels, "pending"], st.get("pendingWorkloads") or 0)
            lq_metric.add_metric([*labels, "admitted"], st.get("admittedWorkloads") or 0)
        oldest = GaugeMetricFamily(
            "kaiwo_queue_oldest_pending_seconds",
            "Age of the oldest PENDING Kaiwo workload per ClusterQueue",
            labels=["cluster_queue"],
        )
        now, ages = self.clock(), dict[str, float]()
        for informer in self.workloads.values():
            for obj in informer.objects():
                if (obj.get("status") or {}).get("status") == WorkloadStatus.PENDING:
                    queue = (obj.get("spec") or {}).get("clusterQueue") or self.default_queue()
                    ages[queue] = max(ages.get(queue, 0.0), _age(obj, now))
        for queue, age in sorted(ages.items()):
            oldest.add_metric([queue], age)
        yield from (cq_metric, active, lq_metric, oldest)

    def _gpus(self) -> Iterator[Metric]:
        metric = GaugeMetricFamily(
            "kaiwo_nodepool_gpus",
            "GPUs per node pool and vendor: allocatable on schedulable nodes, requested by Kaiwo pods on them",
            labels=["node_pool", "vendor", "state"],
        )
        pool_of: dict[str, str] = {}
        totals: dict[tuple[str, str, str], float] = {}
        for node in self.nodes.objects():
            labels = node["metadata"].get("labels") or {}
            pool = labels.get(NODEPOOL_LABEL)
            if not pool or (node.get("spec") or {}).get("unschedulable"):
                continue
            pool_of[node["metadata"]["name"]] = pool
            alloc = (node.get("status") or {}).get("allocatable") or {}
            for key, vendor in GPU_VENDORS.items():
                if key in alloc:
                    totals[(pool, vendor, "allocatable")] = totals.get((pool, vendor, "allocatable"), 0.0) + _quantity(
                        alloc[key]
                    )
                    totals.setdefault((pool, vendor, "requested"), 0.0)
        for pod in self.pods.objects():
            node_name = (pod.get("spec") or {}).get("nodeName")
            if node_name not in pool_of or (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                continue
            for key, amount in _pod_gpus(pod).items():
                k = (pool_of[node_name], GPU_VENDORS[key], "requested")
                totals[k] = totals.get(k, 0.0) + amount
        for labels, value in sorted(totals.items()):
            metric.add_metric(list(labels), value)
        yield metric

    def _errors(self) -> Iterator[Metric]:
        metric = GaugeMetricFamily(
            "kaiwo_workload_errors",
            "Kaiwo workloads now in ERROR or FAILED, by kind and the failing condition's reason",
            labels=["kind", "reason"],
        )
        counts: dict[tuple[str, str], int] = {}
        for kind, informer in sorted(self.workloads.items()):
            for obj in informer.objects():
                st = obj.get("status") or {}
                if st.get("status") not in (WorkloadStatus.ERROR, WorkloadStatus.FAILED):
                    continue
                failing: Obj = next((c for c in st.get("conditions") or [] if c.get("status") == "False"), {})
                key = (kind, str(failing.get("reason") or st.get("status")))
                counts[key] = counts.get(key, 0) + 1
        for labels, n in sorted(counts.items()):
            metric.add_metric(list(labels), n)
        yield metric


class ChildLatency:
    """``kaiwo_workload_child_create_seconds``: a workload's first sighting in the cache -> its first child's."""

    def __init__(self, registry: Any, clock: Callable[[], float] = time.monotonic) -> None:
        self.histogram = Histogram(
            "kaiwo_workload_child_create_seconds",
            "Seconds from a Kaiwo workload appearing to its first child (Job, Deployment, RayJob, AppWrapper)",
            ["kind"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.clock = clock
        self.first_seen: dict[str, tuple[str, float]] = {}  # workload uid -> (kind, when)

    def workload_added(self, kind: str, obj: Obj, initial: bool) -> None:
        if not initial:  # objects from the first list may have children already: their latency is unknown
            self.first_seen[obj["metadata"]["uid"]] = (kind, self.clock())

    def workload_deleted(self, obj: Obj) -> None:
        self.first_seen.pop(obj["metadata"].get("uid", ""), None)

    def child_added(self, obj: Obj, initial: bool) -> None:
        owner = (obj["metadata"].get("labels") or {}).get(RUN_ID_LABEL, "")
        seen = self.first_seen.pop(owner, None)
        if seen is not None and not initial:
            kind, when = seen
            self.histogram.labels(kind).observe(self.clock() - when)


class ErrorCounting:
    """Wraps a controller's reconciler: counts each failure by reason, then lets it propagate unchanged (the
    controller's own retry and logging stay as they are)."""

    def __init__(self, inner: Any, controller: str, counter: Counter) -> None:
        self.inner = inner
        self.controller = controller
        self.counter = counter

    async def reconcile(self, req: Request) -> Result | None:
        try:
            result: Result | None = await self.inner.reconcile(req)
            return result
        except Exception as e:
            self.counter.labels(self.controller, error_reason(e)).inc()
            raise


def error_reason(e: BaseException) -> str:
    if isinstance(e, ApiError):
        return e.reason or f"HTTP{e.status}"
    return type(e).__name__


# The caches the collectors read: the controllers' shared informers (kaiwo.rbac reads this too).
READS = (
    *(Reads(API, kind) for kind in ("KaiwoJob", "KaiwoService")),
    Reads(API, "KaiwoQueueConfig"),
    Reads(KUEUE_API, "ClusterQueue", optional=True),
    Reads(KUEUE_API, "LocalQueue", optional=True),
    Reads("v1", "Node"),
    Reads("v1", "Pod", selector=RUN_ID_LABEL),
    *(Reads(api, kind, selector=RUN_ID_LABEL, optional=True) for kind, api in CHILD_KINDS.items()),
)


async def setup(manager: Manager) -> KaiwoCollector:
    """Register the collectors on ``manager``'s registry, over the same shared informers the controllers use."""
    sources = await resolve(manager, READS, owner="the metrics collectors")
    workloads = {kind: sources[kind] for kind in ("KaiwoJob", "KaiwoService")}
    collector = KaiwoCollector(workloads, sources["KaiwoQueueConfig"])
    registry = manager.metrics.registry
    registry.register(collector)
    registry.register(
        AdminCollector(
            workloads,
            cluster_queues=sources.get("ClusterQueue"),
            local_queues=sources.get("LocalQueue"),
            nodes=sources["Node"],
            pods=sources["Pod"],
        )
    )
    errors = Counter(
        "kaiwo_reconcile_errors",
        "Failed reconciles by controller and reason (the apiserver's Status reason, else the exception type)",
        ["controller", "reason"],
        registry=registry,
    )
    for ctrl in manager.controllers:  # every controller registered before this call
        ctrl.reconciler = ErrorCounting(ctrl.reconciler, ctrl.name, errors)
    latency = ChildLatency(registry)
    for kind, informer in workloads.items():
        informer.add_handler(
            FuncHandler(add=functools.partial(latency.workload_added, kind), delete=latency.workload_deleted)
        )
    for child in CHILD_KINDS:
        inf = sources.get(child)
        if inf is not None:
            inf.add_handler(FuncHandler(add=latency.child_added))
    return collector
