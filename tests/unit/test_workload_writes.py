"""API writes of the workload reconcile, counted on a recording client with hand-fed caches.

Creating a KaiwoJob costs one apply per child and the lazily created LocalQueue; the status follows in the pass
that the child's appearance brings (docs/design/decisions.md D35), and then one status write plus one event per
real phase transition; a reconcile of a settled workload sends nothing (issue 6, item 4).
"""

from __future__ import annotations

from kaiwo.runtime.controller import Request
from tests.builders import WorkloadBuilder
from tests.fakes import workload_reconciler


async def test_writes_per_transition_and_none_when_settled() -> None:
    reconciler, client, caches = workload_reconciler()
    req = Request("ns", "train")

    await reconciler.reconcile(req)
    assert client.story == ["create LocalQueue", "apply Job"], "the pass that creates the child writes no status"

    client.clear()  # the fake client put the Job into its cache, as its watch event would
    await reconciler.reconcile(req)
    assert client.story == ["status PENDING", "event WorkloadPending"]

    client.clear()
    await reconciler.reconcile(req)
    assert client.writes == [], "a settled workload must cost no API calls"

    # Kueue admits the Job and its pod becomes ready: one status write and one event, no apply.
    job = caches.children["Job"].get_by("train", "ns")
    assert job is not None
    job = {**job, "spec": {**job["spec"], "suspend": False}, "status": {"active": 1, "ready": 1}}
    caches.children["Job"].indexer.put("ns/train", job)
    caches.workloads.indexer.put(  # type: ignore[union-attr]
        "ns/job-train-abc", WorkloadBuilder("job-train-abc", "ns").owned_by(job).admitted().obj()
    )
    client.clear()
    await reconciler.reconcile(req)
    assert client.story == ["status RUNNING", "event WorkloadRunning"]

    client.clear()
    for _ in range(3):
        await reconciler.reconcile(req)
    assert client.writes == []


def test_gpu_pools_are_discovered_again_only_when_a_node_changes() -> None:
    reconciler, _, caches = workload_reconciler()
    nodes = caches.nodes
    first = reconciler.gpu_pools(False)
    assert first and reconciler.gpu_pools(False) is first, "an unchanged node set reuses the last discovery"
    amd = next(n for n in nodes.objects() if "beta.amd.com/gpu.family.AI" in n["metadata"]["labels"])
    key = amd["metadata"]["name"]
    nodes.indexer.remove(key)
    fewer = reconciler.gpu_pools(False)
    assert sum(p.nodes for p in fewer) == sum(p.nodes for p in first) - 1, "a removed GPU node is noticed"
    labels = {**amd["metadata"]["labels"], "beta.amd.com/gpu.family.AI": "4"}
    nodes.indexer.put(key, {**amd, "metadata": {**amd["metadata"], "labels": labels, "resourceVersion": "9"}})
    assert ("amd", 4) in {(p.vendor, p.gpus_per_node) for p in reconciler.gpu_pools(False)}, "a changed node too"
