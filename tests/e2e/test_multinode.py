"""Multi-node KaiwoJobs on the local cluster (4 fake AMD nodes with 8 GPUs each): one pod per node.

Kueue's topology-aware scheduling chooses the nodes here (the default KaiwoQueueConfig has a Topology), by free
capacity and without regard to pod affinity; the kaiwo-scheduler packs GPU pods onto as few nodes as possible.
Pods of more than half a node's GPUs get a required anti-affinity, consistent with any placement; smaller ones a
preferred one (a required rule would leave a pod that Kueue placed beside its sibling Pending for good)."""

from __future__ import annotations

from kaiwo.runtime.client import Client
from kaiwo.runtime.manager import Manager
from tests.e2e.helpers import eventually, job_pods, kaiwojob, phase_is


async def test_multi_node_jobs_get_one_pod_per_node(client: Client, namespace: str, operator: Manager) -> None:
    long = {"kwok.kaiwo.dev/duration": "300s"}
    await client.create(kaiwojob("ddp16", namespace, gpus=16, entrypoint="torchrun train.py", annotations=long))
    await client.create(
        kaiwojob("ddp10", namespace, replicas=2, gpusPerReplica=5, entrypoint="torchrun train.py", annotations=long)
    )
    for name in ("ddp16", "ddp10"):
        pods = await job_pods(client, namespace, name, 2)
        nodes = {p["spec"]["nodeName"] for p in pods}
        assert len(nodes) == 2, f"{name}: both pods on {nodes}"
        for p in pods:
            env = {e["name"]: e for e in p["spec"]["containers"][0]["env"]}
            assert env["PET_NNODES"]["value"] == "2"
            assert env["PET_MASTER_ADDR"]["value"] == f"{name}-0.{name}"
            assert "WORLD_SIZE" not in env
        anti = pods[0]["spec"]["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        assert anti[0]["labelSelector"]["matchLabels"] == {"batch.kubernetes.io/job-name": name}
        ranks = sorted(p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"] for p in pods)
        assert ranks == ["0", "1"]  # what PET_NODE_RANK resolves to
    assert {e["name"]: e["value"] for e in pods[0]["spec"]["containers"][0]["env"] if "value" in e}[
        "PET_NPROC_PER_NODE"
    ] == "5"
    await eventually(lambda: phase_is(client, "KaiwoJob", "ddp10", namespace, "RUNNING"), "ddp10 RUNNING", timeout=60)
