"""Duration preemption through the workload reconcile, on a fake wall clock with hand-fed caches.

A RUNNING KaiwoJob with ``duration: 10m`` is requeued at its deadline, turns Preemptable with one event, and is
terminated only once GPU work of the same queue and vendor has pended past the threshold (5m by default).
"""

from __future__ import annotations

from kaiwo.runtime.controller import Request, Result
from kaiwo.runtime.objects import Obj, condition
from tests.builders import KaiwoJobBuilder, KaiwoServiceBuilder, WorkloadBuilder
from tests.fakes import cache, workload_reconciler

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


class Wall:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def pending(name: str, since: str, *, vendor: str = "amd") -> Obj:
    """A KaiwoService of another namespace, not admitted since ``since``."""
    return (
        KaiwoServiceBuilder(name, "other")
        .created("2025-12-31T00:00:00Z")
        .gpus(1, vendor)
        .phase("PENDING")
        .condition("Admitted", False, lastTransitionTime=since)
        .obj()
    )


async def test_expired_job_is_terminated_only_by_same_queue_same_vendor_demand() -> None:
    wall = Wall()
    train = KaiwoJobBuilder("train", "ns").gpus(8, "amd").replicas(1).ray(False).dangerous(False).duration("10m")
    r, client, caches = workload_reconciler(train.obj(), wall=wall)
    services = cache()
    caches.kaiwo_workloads = (caches.primary, services)
    req = Request("ns", "train")

    await r.reconcile(req)  # PENDING; then Kueue admits the Job and its pod becomes ready
    job = caches.children["Job"].get_by("train", "ns")
    assert job is not None
    caches.children["Job"].indexer.put(
        "ns/train", {**job, "spec": {**job["spec"], "suspend": False}, "status": {"active": 1, "ready": 1}}
    )
    caches.workloads.indexer.put("ns/job-train", WorkloadBuilder("job-train", "ns").owned_by(job).admitted().obj())  # type: ignore[union-attr]

    client.clear()
    assert await r.reconcile(req) == Result(requeue_after=600)  # woken again at the deadline
    assert client.story == ["status RUNNING", "event WorkloadRunning"]
    live = caches.primary.get_by("train", "ns")
    assert (condition(live, "Preemptable") or {}).get("reason") == "DurationNotExceeded"

    client.clear()
    wall.now = T0 + 599
    assert await r.reconcile(req) == Result(requeue_after=1)
    assert client.writes == []

    wall.now = T0 + 600
    assert await r.reconcile(req) is None  # expired, but nobody waits: keep running
    assert client.story == ["status RUNNING", "event Preemptable"]
    assert (condition(caches.primary.get_by("train", "ns"), "Preemptable") or {}).get("status") == "True"

    # Demand of another vendor, or without a long enough wait, does not stop it; young demand sets a recheck.
    services.indexer.put("other/nv", pending("nv", "2026-01-01T00:00:00Z", vendor="nvidia"))
    services.indexer.put("other/young", pending("young", "2026-01-01T00:10:50Z"))
    client.clear()
    wall.now = T0 + 700
    assert await r.reconcile(req) == Result(requeue_after=250)
    assert client.writes == []

    wall.now = T0 + 950
    assert await r.reconcile(req) is None
    assert client.story == ["status TERMINATING", "event WorkloadTermination"]
    ended = condition(caches.primary.get_by("train", "ns"), "WorkloadTerminatedEarly") or {}
    assert (ended.get("status"), ended.get("reason")) == ("False", "DurationExceededWithActiveGpuDemand")

    client.clear()
    await r.reconcile(req)
    assert client.story == ["delete Job", "status TERMINATED", "event WorkloadTerminated"]
    final = caches.primary.get_by("train", "ns")
    ended = condition(final, "WorkloadTerminatedEarly") or {}
    assert (ended.get("status"), ended.get("reason")) == ("True", "DurationExceededWithActiveGpuDemand")
    assert caches.children["Job"].get_by("train", "ns") is None

    client.clear()
    await r.reconcile(req)
    assert client.writes == [], "TERMINATED is terminal"
