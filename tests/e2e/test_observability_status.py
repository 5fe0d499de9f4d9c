"""Statuses that tell the truth, and ``kaiwo status`` explaining why, on the local cluster.

The queue-config and workload controllers run in this process (as the chart's ServiceAccount); Kueue runs in the
local cluster and manages namespaces labelled kueue-managed=true. The default ClusterQueue `kaiwo` is shared
cluster state: the test that deletes it waits until it is back and the KaiwoQueueConfig READY again.
"""

from __future__ import annotations

import asyncio
import secrets

import orjson
from typer.testing import CliRunner, Result

from kaiwo.cli.main import app
from kaiwo.runtime.client import Client
from kaiwo.runtime.manager import Manager
from kaiwo.runtime.objects import Obj, has_condition
from tests.e2e.helpers import API, eventually, kaiwojob, phase_is

KUEUE = "kueue.x-k8s.io/v1beta1"


async def kaiwo(kubeconfig: str, *args: str) -> Result:
    env = {"KUBECONFIG": kubeconfig, "NO_COLOR": "1", "KAIWOCONFIG": "/nonexistent"}
    result = await asyncio.to_thread(CliRunner().invoke, app, list(args), env=env)
    assert result.exit_code == 0, f"exit {result.exit_code}\n{result.stdout}\n{result.stderr}"
    return result


async def queue_config(client: Client, status: str) -> Obj | None:
    cfg = await client.get_or_none(API, "KaiwoQueueConfig", "kaiwo")
    return cfg if cfg and (cfg.get("status") or {}).get("status") == status else None


async def test_deleted_cluster_queue_under_a_running_service_is_not_ready_until_it_is_back(
    client: Client, namespace: str, operator: Manager, kubeconfig: str
) -> None:
    # A job that ran to the end first: Kueue keeps its finished Workload, admission and all, as a record, but the
    # quota is released, so nothing may name it as what holds the ClusterQueue.
    await client.create(kaiwojob("done", namespace, gpus=1))
    await eventually(lambda: phase_is(client, "KaiwoJob", "done", namespace, "COMPLETE"), "done", timeout=90)

    async def finished_workload() -> Obj | None:  # Kueue marks it Finished on its own, after the Job completes
        (wl,) = await client.list(KUEUE, "Workload", namespace)
        return wl if has_condition(wl, "Finished") else None

    finished = await eventually(finished_workload, "the job's Workload Finished", timeout=30)
    assert finished["status"]["admission"]["clusterQueue"] == "kaiwo", finished

    svc = {
        "apiVersion": API,
        "kind": "KaiwoService",
        "metadata": {"name": "held", "namespace": namespace},
        "spec": {"image": "nginx:1.27", "gpus": 1, "replicas": 1},
    }
    await client.create(svc)
    await eventually(lambda: phase_is(client, "KaiwoService", "held", namespace, "RUNNING"), "held RUNNING", timeout=90)
    await eventually(lambda: queue_config(client, "READY"), "KaiwoQueueConfig READY", timeout=30)
    (wl,) = [w for w in await client.list(KUEUE, "Workload", namespace) if not has_condition(w, "Finished")]

    # `kaiwo status` finds the per-pod Workload Kueue made for the Deployment's pod, and the queue's usage.
    text = (await kaiwo(kubeconfig, "status", "service/held", "-n", namespace)).stdout
    assert f"Workload {wl['metadata']['name']}: admitted to kaiwo" in text, text
    assert "ClusterQueue kaiwo usage/quota: amd.com/gpu " in text and "Workload: none yet" not in text, text

    # The queue is shared: wait until the Workloads of earlier tests' namespaces (deleted, maybe still terminating)
    # have left it, so that it is this test's Workload that holds the ClusterQueue.
    async def only_ours() -> bool:
        st = (await client.get(KUEUE, "ClusterQueue", "kaiwo")).get("status") or {}
        return (st.get("admittedWorkloads"), st.get("reservingWorkloads")) == (1, 1)

    await eventually(only_ours, "ClusterQueue kaiwo holding only this test's Workload", timeout=90)
    await client.delete(KUEUE, "ClusterQueue", "kaiwo")
    cfg = await eventually(lambda: queue_config(client, "FAILED"), "KaiwoQueueConfig FAILED", timeout=30)
    (cond,) = cfg["status"]["conditions"]
    assert cond["status"] == "False" and cond["reason"] == "KueueObjectNotReady"
    message = cond["message"]
    assert "ClusterQueue kaiwo terminating" in message, message
    assert "held by finalizer kueue.x-k8s.io/resource-in-use" in message, message
    assert f"{namespace}/{wl['metadata']['name']}" in message, message  # the admitted per-pod Workload
    assert finished["metadata"]["name"] not in message, message  # finished: holds no quota

    table = (await kaiwo(kubeconfig, "status", "queues")).stdout
    total = next(line for line in table.splitlines() if line.startswith("kaiwo ") and "[TOTAL]" in line)
    assert total.split()[-1] == "TERMINATING", table
    assert "! ClusterQueue kaiwo TERMINATING" in table and f"{namespace}/{wl['metadata']['name']}" in table, table

    text = (await kaiwo(kubeconfig, "status", "service/held", "-n", namespace)).stdout
    assert "! ClusterQueue/kaiwo: terminating" in text, text

    # Once the service is gone, Kueue lets the ClusterQueue go; Kaiwo recreates it and is READY again.
    await client.delete(API, "KaiwoService", "held", namespace)
    cfg = await eventually(lambda: queue_config(client, "READY"), "READY with a new ClusterQueue", timeout=90)
    cq = await client.get(KUEUE, "ClusterQueue", "kaiwo")
    assert not cq["metadata"].get("deletionTimestamp")
    assert cfg["status"]["conditions"][0]["message"] == "all Kueue objects are in sync and active"


async def test_status_explains_an_unmanaged_namespace_and_an_unbound_volume(
    client: Client, operator: Manager, kubeconfig: str
) -> None:
    ns = f"e2e-unmanaged-{secrets.token_hex(3)}"  # no kueue-managed=true: Kueue ignores its jobs
    await client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    try:
        job = {
            "apiVersion": API,
            "kind": "KaiwoJob",
            "metadata": {"name": "lonely", "namespace": ns},
            "spec": {
                "image": "busybox:1.36",
                "entrypoint": "echo hi",
                "gpus": 1,
                "storage": {
                    "storageEnabled": True,
                    "storageClassName": "no-such-class",
                    "data": {"storageSize": "1Gi"},
                },
            },
        }
        await client.create(job)
        await eventually(lambda: phase_is(client, "KaiwoJob", "lonely", ns, "PENDING"), "lonely PENDING", timeout=60)

        async def explained() -> Obj | None:
            doc = orjson.loads((await kaiwo(kubeconfig, "status", "job/lonely", "-n", ns, "-o", "json")).stdout)
            subjects = {f["subject"] for f in doc["findings"]}
            return doc if {f"Namespace/{ns}", "PersistentVolumeClaim/lonely-data"} <= subjects else None

        doc = await eventually(explained, "namespace and volume findings", timeout=30)
        assert doc["phase"] == "PENDING" and doc["namespaceManagedByKueue"] is False
        first = doc["findings"][0]
        assert first["severity"] == "blocking" and "kueue-managed=true" in first["message"]
        assert f"kubectl label namespace {ns} kueue-managed=true" in first["hint"]
        assert doc["object"]["metadata"]["name"] == "lonely"
        text = (await kaiwo(kubeconfig, "status", "job/lonely", "-n", ns)).stdout
        assert "Why:" in text and f"! Namespace/{ns}: Kueue does not manage this namespace" in text, text
        assert "! PersistentVolumeClaim/lonely-data: Pending" in text, text
    finally:
        await client.delete("v1", "Namespace", ns)


async def test_status_shows_the_schedulers_message_for_an_unschedulable_pod(
    client: Client, namespace: str, operator: Manager, kubeconfig: str
) -> None:
    job = {
        "apiVersion": API,
        "kind": "KaiwoJob",
        "metadata": {"name": "unbound", "namespace": namespace},
        "spec": {
            "image": "busybox:1.36",
            "entrypoint": "echo hi",
            "storage": {"storageEnabled": True, "storageClassName": "no-such-class", "data": {"storageSize": "1Gi"}},
        },
    }
    await client.create(job)  # Kueue admits it (a volume is no quota), but no volume can ever bind

    async def unschedulable() -> Obj | None:
        doc = orjson.loads((await kaiwo(kubeconfig, "status", "job/unbound", "-n", namespace, "-o", "json")).stdout)
        # the pod may first show Kueue's scheduling gate (SchedulingGated) before the scheduler has tried it
        pods = [f for f in doc["findings"] if f["subject"].startswith("Pod/") and "Unschedulable" in f["message"]]
        return doc if pods else None

    doc = await eventually(unschedulable, "an unschedulable pod finding", timeout=60)
    (pod,) = [f for f in doc["findings"] if f["subject"].startswith("Pod/")]
    assert "Unschedulable" in pod["message"] and "PersistentVolumeClaim" in pod["message"], pod
    assert pod["severity"] == "blocking" and pod["hint"]
    assert any(w["admitted"] and w["clusterQueue"] == "kaiwo" for w in doc["workloads"]), doc["workloads"]
    assert doc["queue"]["clusterQueueState"] == "Active" and doc["queue"]["usage"]["cpu"]["quota"] > 0
