"""Duration preemption through the workload reconcile, on a fake wall clock with hand-fed caches.

A RUNNING KaiwoJob with ``duration: 10m`` is requeued at its deadline, turns Preemptable with one event, and is
terminated only once GPU work of the same queue and vendor has pended past the threshold (5m by default).
"""

from __future__ import annotations

from typing import Any

from kaiwo.controllers.workload import WorkloadReconciler
from kaiwo.runtime.controller import Request, Result
from kaiwo.runtime.objects import condition
from tests.unit.test_workload_writes import RecordingClient, cache
from tests.unit.test_workload_writes import setup as writes_setup

Obj = dict[str, Any]
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


class Wall:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


class Recorder(RecordingClient):
    """Also records event reasons and deletes."""

    async def create(self, obj: Obj, **params: Any) -> Obj:
        if obj["kind"] == "Event":
            self.writes.append(f"event {obj['reason']}")
            return obj
        return await super().create(obj, **params)

    async def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None, **params: Any) -> None:
        self.writes.append(f"delete {kind}")
        self.caches.children[kind].indexer.remove(f"{namespace}/{name}")


def pending(kind: str, name: str, since: str, *, vendor: str = "amd") -> Obj:
    return {
        "apiVersion": "kaiwo.silogen.ai/v1alpha1",
        "kind": kind,
        "metadata": {
            "name": name,
            "namespace": "other",
            "uid": f"uid-{name}",
            "creationTimestamp": "2025-12-31T00:00:00Z",
        },
        "spec": {"image": "busybox", "gpus": 1, "gpuVendor": vendor},
        "status": {
            "status": "PENDING",
            "conditions": [{"type": "Admitted", "status": "False", "lastTransitionTime": since}],
        },
    }


async def test_expired_job_is_terminated_only_by_same_queue_same_vendor_demand() -> None:
    _, _, caches = writes_setup()
    services = cache()
    caches.kaiwo_workloads = (caches.primary, services)
    wall = Wall()
    client = Recorder(caches)
    r = WorkloadReconciler(client, "KaiwoJob", caches, "kaiwo-kaiwojob", wall=wall)  # type: ignore[arg-type]
    train = caches.primary.get_by("train", "ns")
    assert train is not None
    caches.primary.indexer.put("ns/train", {**train, "spec": {**train["spec"], "duration": "10m"}})
    req = Request("ns", "train")

    await r.reconcile(req)  # PENDING; then Kueue admits the Job and its pod becomes ready
    job = caches.children["Job"].get_by("train", "ns")
    assert job is not None
    caches.children["Job"].indexer.put(
        "ns/train", {**job, "spec": {**job["spec"], "suspend": False}, "status": {"active": 1, "ready": 1}}
    )
    caches.workloads.indexer.put(  # type: ignore[union-attr]
        "ns/job-train",
        {
            "metadata": {
                "name": "job-train",
                "namespace": "ns",
                "ownerReferences": [{"kind": "Job", "name": "train", "uid": job["metadata"]["uid"]}],
            },
            "status": {"conditions": [{"type": "Admitted", "status": "True"}]},
        },
    )

    client.writes.clear()
    assert await r.reconcile(req) == Result(requeue_after=600)  # woken again at the deadline
    assert client.writes == ["status RUNNING", "event WorkloadRunning"]
    live = caches.primary.get_by("train", "ns")
    assert (condition(live, "Preemptable") or {}).get("reason") == "DurationNotExceeded"

    client.writes.clear()
    wall.now = T0 + 599
    assert await r.reconcile(req) == Result(requeue_after=1)
    assert client.writes == []

    wall.now = T0 + 600
    assert await r.reconcile(req) is None  # expired, but nobody waits: keep running
    assert client.writes == ["status RUNNING", "event Preemptable"]
    assert (condition(caches.primary.get_by("train", "ns"), "Preemptable") or {}).get("status") == "True"

    # Demand of another vendor, or without a long enough wait, does not stop it; young demand sets a recheck.
    services.indexer.put("other/nv", pending("KaiwoService", "nv", "2026-01-01T00:00:00Z", vendor="nvidia"))
    services.indexer.put("other/young", pending("KaiwoService", "young", "2026-01-01T00:10:50Z"))
    client.writes.clear()
    wall.now = T0 + 700
    assert await r.reconcile(req) == Result(requeue_after=250)
    assert client.writes == []

    wall.now = T0 + 950
    assert await r.reconcile(req) is None
    assert client.writes == ["status TERMINATING", "event WorkloadTermination"]
    ended = condition(caches.primary.get_by("train", "ns"), "WorkloadTerminatedEarly") or {}
    assert (ended.get("status"), ended.get("reason")) == ("False", "DurationExceededWithActiveGpuDemand")

    client.writes.clear()
    await r.reconcile(req)
    assert client.writes == ["delete Job", "status TERMINATED", "event WorkloadTerminated"]
    final = caches.primary.get_by("train", "ns")
    ended = condition(final, "WorkloadTerminatedEarly") or {}
    assert (ended.get("status"), ended.get("reason")) == ("True", "DurationExceededWithActiveGpuDemand")
    assert caches.children["Job"].get_by("train", "ns") is None

    client.writes.clear()
    await r.reconcile(req)
    assert client.writes == [], "TERMINATED is terminal"
