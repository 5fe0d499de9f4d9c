"""API writes of the workload reconcile, counted on a recording client with hand-fed caches.

Creating a KaiwoJob costs one apply per child, the lazily created LocalQueue, and one status write plus one
event per real phase transition; a reconcile of a settled workload sends nothing (issue 6, item 4).
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from typing import Any

from kaiwo.controllers.workload import Caches, WorkloadReconciler
from kaiwo.devcluster import topology
from kaiwo.runtime.controller import Request
from kaiwo.runtime.informer import Informer, object_key

Obj = dict[str, Any]


class NoServer:
    async def list_page(self, continue_token: str | None) -> Obj:
        raise AssertionError("caches are fed by hand")

    def watch(self, resource_version: str, timeout_seconds: int, client_grace: float) -> AsyncIterator[Obj]:
        raise AssertionError("caches are fed by hand")


def cache(*objs: Obj) -> Informer:
    inf = Informer(NoServer())
    for o in objs:
        inf.indexer.put(object_key(o), o)
    return inf


class RecordingClient:
    """Counts writes; applied objects appear in the caches as the watch would deliver them."""

    def __init__(self, caches: Caches) -> None:
        self.caches = caches
        self.writes: list[str] = []
        self.rv = 100

    def _store(self, inf: Informer, obj: Obj) -> Obj:
        self.rv += 1
        stored = copy.deepcopy(obj)
        stored["metadata"].setdefault("uid", f"uid-{obj['kind']}-{obj['metadata']['name']}")
        stored["metadata"]["resourceVersion"] = str(self.rv)
        inf.indexer.put(object_key(stored), stored)
        return stored

    async def apply(self, obj: Obj, field_manager: str, *, force: bool = True) -> Obj:
        self.writes.append(f"apply {obj['kind']}")
        return self._store(self.caches.children[obj["kind"]], obj)

    async def patch(
        self,
        api_version: str,
        kind: str,
        name: str,
        patch: Any,
        namespace: str | None = None,
        *,
        subresource: str | None = None,
    ) -> Obj:
        self.writes.append(f"status {patch['status']['status']}")
        live = copy.deepcopy(self.caches.primary.get_by(name, namespace))
        assert live is not None
        live["status"] = patch["status"]
        return self._store(self.caches.primary, live)

    async def create(self, obj: Obj, **params: Any) -> Obj:
        self.writes.append(f"create {obj['kind']}")
        if obj["kind"] == "LocalQueue":
            assert self.caches.local_queues is not None
            return self._store(self.caches.local_queues, obj)
        return obj


def setup() -> tuple[WorkloadReconciler, RecordingClient, Caches]:
    job: Obj = {
        "apiVersion": "kaiwo.silogen.ai/v1alpha1",
        "kind": "KaiwoJob",
        "metadata": {"name": "train", "namespace": "ns", "uid": "uid-train", "generation": 1},
        "spec": {
            "image": "busybox",
            "entrypoint": "echo hi",
            "gpus": 8,
            "gpuVendor": "amd",
            "replicas": 1,
            "ray": False,
            "dangerous": False,
        },
    }
    kinds = ("Job", "Deployment", "Service", "PersistentVolumeClaim", "ConfigMap", "RayJob", "AppWrapper")
    caches = Caches(
        primary=cache(job),
        children={k: cache() for k in kinds},
        workloads=cache(),
        pods=cache(),
        nodes=cache(*topology.node_manifests(topology.load(), "v1.35.4")),
        kaiwo_configs=None,
        queue_configs=None,
        local_queues=cache(),
    )
    client = RecordingClient(caches)
    return WorkloadReconciler(client, "KaiwoJob", caches, "kaiwo-kaiwojob"), client, caches  # type: ignore[arg-type]


async def test_writes_per_transition_and_none_when_settled() -> None:
    reconciler, client, caches = setup()
    req = Request("ns", "train")

    await reconciler.reconcile(req)
    assert client.writes == ["create LocalQueue", "apply Job", "status PENDING", "create Event"]

    client.writes.clear()
    await reconciler.reconcile(req)
    assert client.writes == [], "a settled workload must cost no API calls"

    # Kueue admits the Job and its pod becomes ready: one status write and one event, no apply.
    job = caches.children["Job"].get_by("train", "ns")
    assert job is not None
    job = {**job, "spec": {**job["spec"], "suspend": False}, "status": {"active": 1, "ready": 1}}
    caches.children["Job"].indexer.put("ns/train", job)
    caches.workloads.indexer.put(  # type: ignore[union-attr]
        "ns/job-train-abc",
        {
            "metadata": {
                "name": "job-train-abc",
                "namespace": "ns",
                "ownerReferences": [{"kind": "Job", "name": "train", "uid": job["metadata"]["uid"]}],
            },
            "status": {"conditions": [{"type": "Admitted", "status": "True"}]},
        },
    )
    client.writes.clear()
    await reconciler.reconcile(req)
    assert client.writes == ["status RUNNING", "create Event"]

    client.writes.clear()
    for _ in range(3):
        await reconciler.reconcile(req)
    assert client.writes == []
