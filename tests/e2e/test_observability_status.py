"""Statuses that tell the truth, and ``kaiwo status`` explaining why, on the local cluster.

The queue-config and workload controllers run in this process (as the chart's ServiceAccount); Kueue runs in the
local cluster and manages namespaces labelled kueue-managed=true. The default ClusterQueue `kaiwo` is shared
cluster state: the test that deletes it waits until it is back and the KaiwoQueueConfig READY again.
"""

from __future__ import annotations

import asyncio
from typing import Any

from typer.testing import CliRunner, Result

from kaiwo.cli.main import app
from kaiwo.runtime.client import Client
from kaiwo.runtime.manager import Manager
from tests.e2e.helpers import eventually

API = "kaiwo.silogen.ai/v1alpha1"
KUEUE = "kueue.x-k8s.io/v1beta1"
Obj = dict[str, Any]


async def kaiwo(kubeconfig: str, *args: str) -> Result:
    env = {"KUBECONFIG": kubeconfig, "NO_COLOR": "1", "KAIWOCONFIG": "/nonexistent"}
    result = await asyncio.to_thread(CliRunner().invoke, app, list(args), env=env)
    assert result.exit_code == 0, f"exit {result.exit_code}\n{result.stdout}\n{result.stderr}"
    return result


async def phase_is(client: Client, kind: str, name: str, ns: str, phase: str) -> Obj | None:
    obj = await client.get_or_none(API, kind, name, ns)
    return obj if obj and (obj.get("status") or {}).get("status") == phase else None


async def queue_config(client: Client, status: str) -> Obj | None:
    cfg = await client.get_or_none(API, "KaiwoQueueConfig", "kaiwo")
    return cfg if cfg and (cfg.get("status") or {}).get("status") == status else None


async def test_deleted_cluster_queue_under_a_running_service_is_not_ready_until_it_is_back(
    client: Client, namespace: str, operator: Manager, kubeconfig: str
) -> None:
    svc = {
        "apiVersion": API,
        "kind": "KaiwoService",
        "metadata": {"name": "held", "namespace": namespace},
        "spec": {"image": "nginx:1.27", "gpus": 1, "replicas": 1},
    }
    await client.create(svc)
    await eventually(lambda: phase_is(client, "KaiwoService", "held", namespace, "RUNNING"), "held RUNNING", timeout=90)
    await eventually(lambda: queue_config(client, "READY"), "KaiwoQueueConfig READY", timeout=30)
    (wl,) = [
        w
        for w in await client.list(KUEUE, "Workload", namespace)
        if ((w.get("status") or {}).get("admission") or {}).get("clusterQueue") == "kaiwo"
    ]

    await client.delete(KUEUE, "ClusterQueue", "kaiwo")
    cfg = await eventually(lambda: queue_config(client, "FAILED"), "KaiwoQueueConfig FAILED", timeout=30)
    (cond,) = cfg["status"]["conditions"]
    assert cond["status"] == "False" and cond["reason"] == "KueueObjectNotReady"
    message = cond["message"]
    assert "ClusterQueue kaiwo terminating" in message, message
    assert "held by finalizer kueue.x-k8s.io/resource-in-use" in message, message
    assert f"{namespace}/{wl['metadata']['name']}" in message, message  # the admitted per-pod Workload

    table = (await kaiwo(kubeconfig, "status", "queues")).stdout
    total = next(line for line in table.splitlines() if line.startswith("kaiwo ") and "[TOTAL]" in line)
    assert total.split()[-1] == "TERMINATING", table
    assert "! ClusterQueue kaiwo TERMINATING" in table and f"{namespace}/{wl['metadata']['name']}" in table, table

    # Once the service is gone, Kueue lets the ClusterQueue go; Kaiwo recreates it and is READY again.
    await client.delete(API, "KaiwoService", "held", namespace)
    cfg = await eventually(lambda: queue_config(client, "READY"), "READY with a new ClusterQueue", timeout=90)
    cq = await client.get(KUEUE, "ClusterQueue", "kaiwo")
    assert not cq["metadata"].get("deletionTimestamp")
    assert cfg["status"]["conditions"][0]["message"] == "all Kueue objects are in sync and active"
