"""Administrator metrics from the caches: queues, pending age, GPUs per node pool, errors, child latency."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter, generate_latest

from kaiwo.controllers.metrics import AdminCollector, ChildLatency, ErrorCounting
from kaiwo.runtime.client import ApiError
from kaiwo.runtime.controller import Request
from kaiwo.runtime.objects import Obj
from tests.builders import KaiwoJobBuilder, NodeBuilder, PodBuilder
from tests.fakes import cache

NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def scrape(registry: CollectorRegistry) -> dict[str, float]:
    lines = generate_latest(registry).decode().splitlines()
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in lines if not line.startswith("#")}


def node(name: str, pool: str, gpus: int, *, cordoned: bool = False) -> Obj:
    built = NodeBuilder(name).label("kaiwo/nodepool", pool).gpus(gpus, "amd")
    return (built.unschedulable() if cordoned else built).obj()


def pod(node_name: str, gpus: int, phase: str = "Running") -> Obj:
    return PodBuilder(f"{node_name}-0", "team").on_node(node_name).gpus(gpus, "amd").phase(phase).obj()


def test_queues_gpus_and_errors() -> None:
    cq = {
        "metadata": {"name": "kaiwo"},
        "status": {
            "pendingWorkloads": 3,
            "admittedWorkloads": 2,
            "conditions": [{"type": "Active", "status": "True"}],
        },
    }
    lq = {
        "metadata": {"name": "kaiwo", "namespace": "team"},
        "spec": {"clusterQueue": "kaiwo"},
        "status": {"pendingWorkloads": 1, "admittedWorkloads": 2},
    }
    jobs = cache(
        KaiwoJobBuilder("old", "team").created("2025-12-31T23:00:00Z").phase("PENDING").obj(),
        KaiwoJobBuilder("new", "team").created("2025-12-31T23:59:00Z").phase("PENDING").cluster_queue("team").obj(),
        KaiwoJobBuilder("bad", "team")
        .created("2025-12-31T23:00:00Z")
        .phase("ERROR")
        .condition("Schedulable", False, "InvalidSpec")
        .obj(),
    )
    registry = CollectorRegistry()
    registry.register(
        AdminCollector(
            {"KaiwoJob": jobs},
            cluster_queues=cache(cq),
            local_queues=cache(lq),
            nodes=cache(node("a", "mi300", 8), node("b", "mi300", 8), node("c", "mi300", 8, cordoned=True)),
            pods=cache(pod("a", 4), pod("b", 2, phase="Succeeded"), pod("c", 8)),
            clock=lambda: NOW,
        )
    )
    m = scrape(registry)
    assert m['kaiwo_clusterqueue_workloads{cluster_queue="kaiwo",state="pending"}'] == 3
    assert m['kaiwo_clusterqueue_active{cluster_queue="kaiwo"}'] == 1
    assert (
        m['kaiwo_localqueue_workloads{cluster_queue="kaiwo",local_queue="kaiwo",namespace="team",state="admitted"}']
        == 2
    )
    assert m['kaiwo_queue_oldest_pending_seconds{cluster_queue="kaiwo"}'] == 3600
    assert m['kaiwo_queue_oldest_pending_seconds{cluster_queue="team"}'] == 60
    assert m['kaiwo_nodepool_gpus{node_pool="mi300",state="allocatable",vendor="amd"}'] == 16  # cordoned c left out
    assert m['kaiwo_nodepool_gpus{node_pool="mi300",state="requested",vendor="amd"}'] == 4  # finished pods free
    assert m['kaiwo_workload_errors{kind="KaiwoJob",reason="InvalidSpec"}'] == 1


def test_child_latency_from_first_sighting_to_first_child() -> None:
    registry = CollectorRegistry()
    now = [100.0]
    latency = ChildLatency(registry, clock=lambda: now[0])
    latency.workload_added("KaiwoJob", {"metadata": {"uid": "u1"}}, initial=False)
    latency.workload_added("KaiwoJob", {"metadata": {"uid": "old"}}, initial=True)  # predates us: unknown
    now[0] = 100.4
    child = {"metadata": {"labels": {"kaiwo.silogen.ai/run-id": "u1"}}}
    latency.child_added(child, initial=False)
    latency.child_added(child, initial=False)  # the second child is not a new observation
    latency.child_added({"metadata": {"labels": {"kaiwo.silogen.ai/run-id": "old"}}}, initial=False)
    m = scrape(registry)
    assert m['kaiwo_workload_child_create_seconds_count{kind="KaiwoJob"}'] == 1
    assert m['kaiwo_workload_child_create_seconds_bucket{kind="KaiwoJob",le="0.5"}'] == 1
    assert m['kaiwo_workload_child_create_seconds_bucket{kind="KaiwoJob",le="0.25"}'] == 0


async def test_reconcile_errors_are_counted_by_reason_and_still_raised() -> None:
    class Failing:
        def __init__(self) -> None:
            self.errors: list[Exception] = [ApiError(409, {"reason": "Conflict"}), ApiError(500, "boom"), KeyError("x")]

        async def reconcile(self, req: Request) -> None:
            raise self.errors.pop(0)

    registry = CollectorRegistry()
    counter = Counter("kaiwo_reconcile_errors", "test", ["controller", "reason"], registry=registry)
    wrapped = ErrorCounting(Failing(), "kaiwojob", counter)
    for expected in (ApiError, ApiError, KeyError):
        with pytest.raises(expected):
            await wrapped.reconcile(Request("ns", "n"))
    m = scrape(registry)
    for reason in ("Conflict", "HTTP500", "KeyError"):
        assert m[f'kaiwo_reconcile_errors_total{{controller="kaiwojob",reason="{reason}"}}'] == 1
