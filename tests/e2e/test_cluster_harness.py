"""The local cluster behaves like a real one: scheduling, controllers, GC, namespaces, volumes, fake GPUs."""

from __future__ import annotations

from typing import Any

import pytest

from kaiwo.runtime.client import ApiError, Client
from kaiwo.runtime.objects import condition, has_condition
from tests.e2e.helpers import eventually

BUSYBOX = "busybox:1.36"


def pod_spec(gpus: int = 0, resource: str = "amd.com/gpu", **extra: Any) -> dict[str, Any]:
    resources = {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}}
    if gpus:
        resources["requests"][resource] = resources["limits"][resource] = str(gpus)
    return {
        "containers": [{"name": "main", "image": BUSYBOX, "command": ["sleep", "1"], "resources": resources}],
        **extra,
    }


def job(name: str, ns: str, *, gpus: int = 1, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "backoffLimit": 0,
            "template": {"metadata": {"annotations": annotations or {}}, "spec": pod_spec(gpus, restartPolicy="Never")},
        },
    }


def deployment(name: str, ns: str, replicas: int = 2, gpus: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": pod_spec(gpus)},
        },
    }


async def pods(client: Client, ns: str, selector: str | None = None) -> list[dict[str, Any]]:
    return await client.list("v1", "Pod", ns, labelSelector=selector)


async def test_nodes_show_gpu_capacity_and_labels(client: Client) -> None:
    nodes = {n["metadata"]["name"]: n for n in await client.list("v1", "Node")}
    amd = [n for n in nodes.values() if "amd.com/gpu" in n["status"]["capacity"]]
    nvidia = [n for n in nodes.values() if "nvidia.com/gpu" in n["status"]["capacity"]]
    cpu_only = [
        n
        for n in nodes.values()
        if not any(k.endswith("/gpu") for k in n["status"]["capacity"])
        and n["metadata"].get("labels", {}).get("type") == "kwok"
    ]
    assert len(amd) == 4 and len(nvidia) == 2 and len(cpu_only) == 1
    for n in amd:
        assert n["status"]["allocatable"]["amd.com/gpu"] == "8"
        labels = n["metadata"]["labels"]
        assert labels["amd.com/gpu.product-name"] == "AMD_Instinct_MI300X_OAM"
        assert labels["beta.amd.com/gpu.family.AI"] == "8"
    for n in nvidia:
        assert n["status"]["allocatable"]["nvidia.com/gpu"] == "8"
        assert n["metadata"]["labels"]["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"
        assert n["metadata"]["labels"]["nvidia.com/gpu.count"] == "8"
    for n in amd + nvidia + cpu_only:
        assert has_condition(n, "Ready"), n["metadata"]["name"]


async def test_deployment_gets_replicaset_and_running_pods_on_gpu_nodes(client: Client, namespace: str) -> None:
    await client.create(deployment("web", namespace, replicas=2, gpus=2))

    async def running() -> list[dict[str, Any]] | None:
        ps = await pods(client, namespace, "app=web")
        return ps if len(ps) == 2 and all(p["status"].get("phase") == "Running" for p in ps) else None

    ps = await eventually(running, "2 Running pods of Deployment web")
    rs = await client.list("apps/v1", "ReplicaSet", namespace)
    assert len(rs) == 1 and rs[0]["metadata"]["ownerReferences"][0]["name"] == "web"
    for p in ps:
        assert p["spec"]["nodeName"].startswith("amd-mi300x-")
        assert p["metadata"]["ownerReferences"][0]["kind"] == "ReplicaSet"
        assert has_condition(p, "Ready")

    async def available() -> bool:
        d = await client.get("apps/v1", "Deployment", "web", namespace)
        return bool(d.get("status", {}).get("availableReplicas") == 2)

    await eventually(available, "Deployment web available")


async def test_gpu_job_completes(client: Client, namespace: str) -> None:
    await client.create(job("train", namespace, gpus=8))

    async def complete() -> dict[str, Any] | None:
        j = await client.get("batch/v1", "Job", "train", namespace)
        return j if has_condition(j, "Complete") else None

    j = await eventually(complete, "Job train Complete")
    assert j["status"]["succeeded"] == 1
    (p,) = await pods(client, namespace, "job-name=train")
    assert p["status"]["phase"] == "Succeeded"
    assert p["spec"]["nodeName"].startswith("amd-mi300x-")


async def test_job_annotated_to_fail_fails(client: Client, namespace: str) -> None:
    await client.create(
        job("broken", namespace, annotations={"kwok.kaiwo.dev/fail": "true", "kwok.kaiwo.dev/exit-code": "3"})
    )

    async def failed() -> dict[str, Any] | None:
        j = await client.get("batch/v1", "Job", "broken", namespace)
        return j if has_condition(j, "Failed") else None

    j = await eventually(failed, "Job broken Failed")
    assert condition(j, "Failed")["reason"] == "BackoffLimitExceeded"  # type: ignore[index]
    (p,) = await pods(client, namespace, "job-name=broken")
    assert p["status"]["phase"] == "Failed"
    assert p["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 3


async def test_deleting_owner_garbage_collects_children(client: Client, namespace: str) -> None:
    await client.create(deployment("gc", namespace, replicas=1, gpus=0))
    await eventually(lambda: pods(client, namespace, "app=gc"), "pod of Deployment gc")
    await client.delete("apps/v1", "Deployment", "gc", namespace)

    async def gone() -> bool:
        return not await client.list("apps/v1", "ReplicaSet", namespace) and not await pods(client, namespace)

    await eventually(gone, "ReplicaSet and pods of gc garbage-collected")


async def test_namespace_deletion_finishes(client: Client) -> None:
    name = "e2e-ns-delete"
    await client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    await eventually(lambda: client.get_or_none("v1", "ServiceAccount", "default", name), "default SA")
    await client.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": name}})
    await client.create(deployment("d", name, replicas=1, gpus=0))
    await eventually(lambda: pods(client, name), "a pod in the namespace")
    await client.delete("v1", "Namespace", name)

    async def gone() -> bool:
        return await client.get_or_none("v1", "Namespace", name) is None

    await eventually(gone, f"namespace {name} deleted", timeout=90)


async def test_too_large_request_stays_pending_with_scheduler_reason(client: Client, namespace: str) -> None:
    await client.create(
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "huge", "namespace": namespace}, "spec": pod_spec(16)}
    )

    async def unschedulable() -> dict[str, Any] | None:
        p = await client.get("v1", "Pod", "huge", namespace)
        c = condition(p, "PodScheduled")
        return c if c and c["status"] == "False" else None

    c = await eventually(unschedulable, "PodScheduled=False on pod huge")
    assert c["reason"] == "Unschedulable"
    assert "Insufficient amd.com/gpu" in c["message"]
    p = await client.get("v1", "Pod", "huge", namespace)
    assert p["status"]["phase"] == "Pending" and not p["spec"].get("nodeName")


async def test_claim_binds_on_default_storage_class_and_pod_runs(client: Client, namespace: str) -> None:
    await client.create(
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": "data", "namespace": namespace},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "50Gi"}}},
        }
    )

    async def bound() -> dict[str, Any] | None:
        pvc = await client.get("v1", "PersistentVolumeClaim", "data", namespace)
        return pvc if pvc.get("status", {}).get("phase") == "Bound" else None

    pvc = await eventually(bound, "PVC data Bound")
    assert pvc["spec"]["storageClassName"] == "standard"
    spec = pod_spec(1, volumes=[{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}])
    spec["containers"][0]["volumeMounts"] = [{"name": "data", "mountPath": "/data"}]
    await client.create(
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "user", "namespace": namespace}, "spec": spec}
    )

    async def running() -> bool:
        return bool((await client.get("v1", "Pod", "user", namespace))["status"].get("phase") == "Running")

    await eventually(running, "pod mounting the PVC Running")


async def test_third_party_crds_are_installed(client: Client) -> None:
    names = {c["metadata"]["name"] for c in await client.list("apiextensions.k8s.io/v1", "CustomResourceDefinition")}
    for crd in (
        "workloads.kueue.x-k8s.io",
        "clusterqueues.kueue.x-k8s.io",
        "topologies.kueue.x-k8s.io",
        "rayjobs.ray.io",
        "rayclusters.ray.io",
        "rayservices.ray.io",
        "appwrappers.workload.codeflare.dev",
    ):
        assert crd in names


async def test_unknown_kind_is_a_clear_error(client: Client) -> None:
    with pytest.raises(ApiError) as e:
        await client.resource("kaiwo.silogen.ai/v1alpha1", "NoSuchKind")
    assert e.value.status == 404 and "NoSuchKind" in str(e.value)
