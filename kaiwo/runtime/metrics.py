"""Prometheus metrics of the runtime, with controller-runtime's and client-go's names.

Dashboards and alerts written for Go operators work unchanged. Each ``RuntimeMetrics`` owns its registry, so
tests and several managers in one process never collide.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

RECONCILE_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.15,
    0.2,
    0.25,
    0.3,
    0.35,
    0.4,
    0.45,
    0.5,
    0.6,
    0.7,
    0.8,
    0.9,
    1.0,
    1.25,
    1.5,
    1.75,
    2.0,
    2.5,
    3.0,
    3.5,
    4.0,
    4.5,
    5,
    6,
    7,
    8,
    9,
    10,
    15,
    20,
    25,
    30,
    40,
    50,
    60,
)
QUEUE_BUCKETS = tuple(10.0**e for e in range(-8, 4))  # 10 ns .. 1000 s, as client-go


class RuntimeMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.reconcile_total = Counter(
            "controller_runtime_reconcile",
            "Total number of reconciliations per controller",
            ["controller", "result"],
            registry=r,
        )
        self.reconcile_errors = Counter(
            "controller_runtime_reconcile_errors",
            "Total number of reconciliation errors per controller",
            ["controller"],
            registry=r,
        )
        self.reconcile_time = Histogram(
            "controller_runtime_reconcile_time_seconds",
            "Length of time per reconciliation per controller",
            ["controller"],
            buckets=RECONCILE_BUCKETS,
            registry=r,
        )
        self.active_workers = Gauge(
            "controller_runtime_active_workers",
            "Number of currently used workers per controller",
            ["controller"],
            registry=r,
        )
        self.max_concurrent = Gauge(
            "controller_runtime_max_concurrent_reconciles",
            "Maximum number of concurrent reconciles per controller",
            ["controller"],
            registry=r,
        )
        self.queue_depth = Gauge("workqueue_depth", "Current depth of workqueue", ["name"], registry=r)
        self.queue_adds = Counter("workqueue_adds", "Total number of adds handled by workqueue", ["name"], registry=r)
        self.queue_latency = Histogram(
            "workqueue_queue_duration_seconds",
            "How long in seconds an item stays in workqueue before being requested",
            ["name"],
            buckets=QUEUE_BUCKETS,
            registry=r,
        )
        self.work_duration = Histogram(
            "workqueue_work_duration_seconds",
            "How long in seconds processing an item from workqueue takes",
            ["name"],
            buckets=QUEUE_BUCKETS,
            registry=r,
        )
        self.queue_retries = Counter(
            "workqueue_retries", "Total number of retries handled by workqueue", ["name"], registry=r
        )
        self.rest_requests = Counter(
            "rest_client_requests",
            "Number of HTTP requests, partitioned by status code and method",
            ["code", "method"],
            registry=r,
        )
        self.leader = Gauge(
            "leader_election_master_status",
            "Gauge of if the reporting system is master of the relevant lease, 0 indicates backup, "
            "1 indicates master. 'name' is the string used to identify the lease.",
            ["name"],
            registry=r,
        )
        self.handler_errors = Counter(
            "kaiwo_informer_handler_errors",
            "Event handler calls that raised (logged and skipped), per informer",
            ["informer"],
            registry=r,
        )

    def queue(self) -> QueueMetricsAdapter:
        return QueueMetricsAdapter(lambda: self)

    def observe_request(self, method: str, code: int) -> None:
        self.rest_requests.labels(code=str(code), method=method).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class QueueMetricsAdapter:
    """The workqueue's metrics hooks (kaiwo.runtime.workqueue.QueueMetrics) on Prometheus collectors.

    The collectors are looked up on every call, so a queue keeps reporting to its owner's current metrics
    (a controller handed to a manager adopts the manager's registry).
    """

    def __init__(self, source: Callable[[], RuntimeMetrics]) -> None:
        self.source = source
        # Labelled children resolved once per (registry, queue): labels() is a locked dict lookup that
        # otherwise dominates the per-key cost of a resync.
        self._children: dict[tuple[int, str], tuple[Any, ...]] = {}

    def _for(self, name: str) -> tuple[Any, ...]:
        m = self.source()
        key = (id(m), name)
        c = self._children.get(key)
        if c is None:
            c = (
                m.queue_adds.labels(name),
                m.queue_latency.labels(name),
                m.work_duration.labels(name),
                m.queue_retries.labels(name),
                m.queue_depth.labels(name),
            )
            self._children[key] = c
        return c

    def add(self, name: str) -> None:
        self._for(name)[0].inc()

    def get(self, name: str, queue_seconds: float) -> None:
        self._for(name)[1].observe(queue_seconds)

    def done(self, name: str, work_seconds: float) -> None:
        self._for(name)[2].observe(work_seconds)

    def retry(self, name: str) -> None:
        self._for(name)[3].inc()

    def depth(self, name: str, n: int) -> None:
        self._for(name)[4].set(n)
