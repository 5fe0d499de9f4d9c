"""GPU utilisation end to end: the local cluster's fake exporter, real Kueue, and Kaiwo's utilisation monitor and
GpuWorkload controller running in this process as the chart's ServiceAccount (a permission missing from the
chart fails these tests; the chart grants no pod deletion, which the PreemptionFailed test relies on).

Utilisation is scripted per pod by ``kwok.kaiwo.dev/gpu-utilization`` (a percentage, or "2@0s,60@10s"). The
default ClusterQueue `kaiwo` offers 32 AMD GPUs and 16 NVIDIA GPUs. Intervals are short: the exporters are read
every second, the evaluator runs every 2 s, grace periods are a few seconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from kaiwo.cli import inspect
from kaiwo.cli.refs import WorkloadRef
from kaiwo.controllers import gpuworkload, nodetaints, queueconfig, utilisation, workload
from kaiwo.controllers.settings import KAIWO_CONFIG_API
from kaiwo.devcluster.cluster import DevCluster
from kaiwo.gpumetrics.config import GpuFeatures
from kaiwo.gpumetrics.reader import Source
from kaiwo.runtime.client import Client
from kaiwo.runtime.manager import Manager, ManagerOptions
from kaiwo.runtime.objects import Obj, condition
from kaiwo.translate.preemption import epoch as pre_epoch
from tests.e2e.helpers import API, event_reasons, eventually, kaiwojob, phase_is

LONG = "600s"
OPT = "kaiwo.silogen.ai/gpu-preemption."


def notes(util: str | None = None, **preemption: str) -> dict[str, str]:
    out = {"kwok.kaiwo.dev/duration": LONG}
    if util is not None:
        out["kwok.kaiwo.dev/gpu-utilization"] = util
    out.update({OPT + k.replace("_", "-"): v for k, v in preemption.items()})
    return out


@pytest.fixture(scope="module")
async def gpu_operator(
    client: Client, dev_cluster: DevCluster | None, operator_kubeconfig: str, kaiwo_crds: None, release_namespace: str
) -> AsyncIterator[tuple[Manager, utilisation.UtilisationMonitor, gpuworkload.GpuPreemption]]:
    if dev_cluster is None:
        pytest.skip("needs the local cluster's fake GPU exporter")
    urls = dev_cluster.status().data.get("gpu_metrics")
    assert urls, "this cluster has no GPU exporter: restart it (kaiwo-dev down; kaiwo-dev up)"
    source = Source((urls["all"],), 1.0)
    before = await client.get_or_none(KAIWO_CONFIG_API, "KaiwoConfig", "kaiwo")
    spec = {"resourceMonitoring": {"lowUtilizationThreshold": 5}}
    if before is None:
        await client.create(
            {"apiVersion": KAIWO_CONFIG_API, "kind": "KaiwoConfig", "metadata": {"name": "kaiwo"}, "spec": spec}
        )
    else:
        await client.patch(KAIWO_CONFIG_API, "KaiwoConfig", "kaiwo", {"spec": spec})
    async with await Client.from_kubeconfig(operator_kubeconfig) as mgr_client:
        mgr = Manager(mgr_client, ManagerOptions(health_address="", metrics_address=""))
        await queueconfig.setup(mgr)
        await workload.setup(mgr, "KaiwoJob")
        monitor = await utilisation.setup(mgr, source)
        await nodetaints.setup(mgr)
        features = GpuFeatures(monitoring=source, preemption=source, preemption_namespace=release_namespace)
        reclaim = await gpuworkload.setup(mgr, features, evaluation_interval=2.0, identity="e2e")
        stop = asyncio.Event()
        task = asyncio.create_task(mgr.run(stop))
        try:
            await eventually(
                lambda: client.get_or_none("kueue.x-k8s.io/v1beta1", "ClusterQueue", "kaiwo"), "ClusterQueue kaiwo", 60
            )
            yield mgr, monitor, reclaim
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)
            if before is not None:
                await client.patch(KAIWO_CONFIG_API, "KaiwoConfig", "kaiwo", {"spec": {"resourceMonitoring": None}})


async def record_of(client: Client, kind: str, name: str, ns: str) -> Obj | None:
    owner = await client.get_or_none(gpuworkload.OWNER_KINDS.get(kind, "v1"), kind, name, ns)
    if owner is None:
        return None
    return await client.get_or_none(
        API, "GpuWorkload", gpuworkload.record_name(kind, name, owner["metadata"]["uid"]), ns
    )


def running(client: Client, name: str, ns: str) -> Callable[[], Awaitable[Obj | None]]:
    return lambda: phase_is(client, "KaiwoJob", name, ns, "RUNNING")


async def record_in(client: Client, name: str, ns: str, *phases: str) -> Obj | None:
    rec = await client.get_or_none(API, "GpuWorkload", name, ns)
    return rec if rec and (rec.get("status") or {}).get("phase") in phases else None


async def record_name(client: Client, kind: str, name: str, ns: str) -> str:
    rec = await eventually(lambda: record_of(client, kind, name, ns), f"the GpuWorkload of {kind} {name}", 60)
    return str(rec["metadata"]["name"])


async def test_underutilisation_condition_flips_both_ways(client: Client, namespace: str, gpu_operator: Any) -> None:
    _, monitor, _ = gpu_operator
    await client.create(kaiwojob("flip", namespace, gpus=1, annotations=notes("2@0s,60@12s")))

    async def underuse(status: str) -> Obj | None:
        obj = await client.get(API, "KaiwoJob", "flip", namespace)
        c = condition(obj, "ResourceUnderutilization") or {}
        return c if c.get("status") == status else None

    low = await eventually(lambda: underuse("True"), "ResourceUnderutilization=True", timeout=60)
    assert low["reason"] == "GpuUtilizationLow" and "1 of 1 GPU(s) below 5%" in low["message"]
    assert monitor.collector.values.get(("KaiwoJob", namespace, "flip")) == 2.0
    normal = await eventually(lambda: underuse("False"), "ResourceUnderutilization=False", timeout=30)
    assert normal["reason"] == "GpuUtilizationNormal"
    await asyncio.sleep(2)  # more polls: no more events
    seen = await event_reasons(client, "KaiwoJob", "flip", namespace, wait_for={"GpuUtilizationNormal"})
    assert seen["GpuUnderutilized"] == 1 and seen["GpuUtilizationNormal"] == 1, seen
    assert (await client.get(API, "KaiwoJob", "flip", namespace))["status"]["status"] == "RUNNING"
    nodes = await client.list("v1", "Node", labelSelector="amd.com/gpu.family=AI")
    figures = [(n["metadata"].get("annotations") or {}).get("kaiwo.silogen.ai/gpu-utilization") for n in nodes]
    assert len(figures) == 4 and all(f is not None for f in figures), figures
    view = await inspect.cluster_view(client, "amd")  # kaiwo status amd
    assert view.count("(utilisation monitor)") == 4, view


async def test_forbidden_delete_gives_preemption_failed(client: Client, namespace: str, gpu_operator: Any) -> None:
    """A bare pod is its own root owner; the chart lets the operator read pods, never delete them."""
    await client.create(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "bare",
                "namespace": namespace,
                "annotations": notes("0", enabled="true", policy="Always", grace_period="1s"),
            },
            "spec": {
                "containers": [{"name": "main", "image": "busybox", "resources": {"limits": {"amd.com/gpu": "1"}}}]
            },
        }
    )
    name = await record_name(client, "Pod", "bare", namespace)

    async def failed() -> Obj | None:
        rec = await client.get(API, "GpuWorkload", name, namespace)
        return rec if (condition(rec, "PreemptionFailed") or {}).get("status") == "True" else None

    rec = await eventually(failed, "PreemptionFailed", timeout=60)
    assert rec["status"]["phase"] == "Idle" and condition(rec, "PreemptionFailed")["reason"] == "Forbidden"  # type: ignore[index]
    assert rec["status"]["ownerChain"] == "Pod/bare"
    await asyncio.sleep(4)  # two more evaluations: it is not picked again
    seen = await event_reasons(client, "GpuWorkload", name, namespace, wait_for={"PreemptionFailed"})
    assert seen["PreemptionStarted"] == 1 and seen["PreemptionFailed"] == 1, seen
    assert await client.get_or_none("v1", "Pod", "bare", namespace) is not None


async def test_always_policy_preempts_after_grace_and_the_record_expires(
    client: Client, namespace: str, gpu_operator: Any
) -> None:
    note = notes("0", enabled="true", policy="Always", grace_period="3s", ttl="4s")
    await client.create(kaiwojob("lazy", namespace, gpus=1, annotations=note))
    name = await record_name(client, "KaiwoJob", "lazy", namespace)
    done = await eventually(lambda: record_in(client, name, namespace, "Preempted"), "lazy Preempted", timeout=60)
    status = done["status"]
    assert "policy Always" in status["preemptionReason"]
    assert status["ownerChain"].startswith("Pod/lazy-") and status["ownerChain"].endswith(
        " -> Job/lazy -> KaiwoJob/lazy"
    )
    assert await client.get_or_none(API, "KaiwoJob", "lazy", namespace) is None
    seen = await event_reasons(client, "GpuWorkload", name, namespace, wait_for={"WorkloadPreempted"})
    assert seen["WorkloadIdle"] == 1 and seen["PreemptionStarted"] == 1 and seen["WorkloadPreempted"] == 1, seen

    async def expired() -> bool:
        return await client.get_or_none(API, "GpuWorkload", name, namespace) is None

    await eventually(expired, "the GpuWorkload removed after its TTL", timeout=30)


async def test_idle_jobs_are_reclaimed_only_for_same_vendor_demand_that_fits(
    client: Client, namespace: str, gpu_operator: Any
) -> None:
    opt = {"enabled": "true", "grace_period": "2s"}
    # The busy jobs first: while one of their pods could not be placed (GPU pods of earlier tests' namespaces
    # may still be going away), it would be demand that an idle job's node satisfies.
    await client.create(kaiwojob("amd-busy", namespace, gpus=24, annotations=notes(None, **opt)))
    await client.create(kaiwojob("nv-busy", namespace, gpus=8, gpuVendor="nvidia", annotations=notes(None)))
    for job in ("amd-busy", "nv-busy"):
        await eventually(running(client, job, namespace), f"{job} RUNNING", 120)
    await client.create(kaiwojob("amd-idle", namespace, gpus=8, annotations=notes("1", **opt)))
    await client.create(kaiwojob("nv-idle", namespace, gpus=8, gpuVendor="nvidia", annotations=notes("1", **opt)))
    for job in ("amd-idle", "nv-idle"):
        await eventually(running(client, job, namespace), f"{job} RUNNING", 120)
    names = {j: await record_name(client, "KaiwoJob", j, namespace) for j in ("amd-busy", "amd-idle", "nv-idle")}
    await eventually(lambda: record_in(client, names["amd-idle"], namespace, "Idle"), "amd-idle Idle", 30)
    await eventually(lambda: record_in(client, names["nv-idle"], namespace, "Idle"), "nv-idle Idle", 30)
    await eventually(lambda: record_in(client, names["amd-busy"], namespace, "Active"), "amd-busy Active", 30)
    text = await inspect.describe(client, WorkloadRef("KaiwoJob", "amd-idle"), namespace)  # kaiwo status job/amd-idle
    assert "GPU use:     Idle, utilisation 1%" in text and "Idle since:" in text, text

    # 16 AMD GPUs wanted, only 8 idle: all or nothing, so nothing is preempted.
    await client.create(kaiwojob("amd-huge", namespace, gpus=16, annotations=notes(None, **opt)))
    await eventually(lambda: phase_is(client, "KaiwoJob", "amd-huge", namespace, "PENDING"), "amd-huge PENDING", 30)
    huge = await record_name(client, "KaiwoJob", "amd-huge", namespace)  # found through its Kueue Workload
    await eventually(lambda: record_in(client, huge, namespace, "PendingGpu"), "amd-huge PendingGpu", 30)
    await asyncio.sleep(6)  # three evaluations
    for job in ("amd-idle", "nv-idle"):
        assert await record_in(client, names[job], namespace, "Idle"), f"{job} was touched"
    await client.delete(API, "KaiwoJob", "amd-huge", namespace)

    # 8 AMD GPUs wanted: amd-idle's 8 cover it; the NVIDIA idle job and the busy job are not touched.
    await client.create(kaiwojob("amd-want", namespace, gpus=8, annotations=notes(None)))
    rec = await eventually(
        lambda: record_in(client, names["amd-idle"], namespace, "Preempted"), "amd-idle Preempted", timeout=60
    )
    assert rec["status"]["preemptedFor"].startswith(f"Workload {namespace}/"), rec["status"]
    await eventually(lambda: phase_is(client, "KaiwoJob", "amd-want", namespace, "RUNNING"), "amd-want RUNNING", 90)
    assert await record_in(client, names["nv-idle"], namespace, "Idle")
    assert await record_in(client, names["amd-busy"], namespace, "Active")

    # NVIDIA demand takes the NVIDIA idle job.
    await client.create(kaiwojob("nv-want", namespace, gpus=8, gpuVendor="nvidia", annotations=notes(None)))
    await eventually(lambda: record_in(client, names["nv-idle"], namespace, "Preempted"), "nv-idle Preempted", 60)
    await eventually(lambda: phase_is(client, "KaiwoJob", "nv-want", namespace, "RUNNING"), "nv-want RUNNING", 90)
    assert (await client.get(API, "KaiwoJob", "amd-busy", namespace))["status"]["status"] == "RUNNING"
    assert await client.get_or_none(API, "KaiwoJob", "nv-busy", namespace) is not None


async def test_underutilised_workload_is_terminated_after_the_configured_time(
    client: Client, namespace: str, gpu_operator: Any
) -> None:
    on = {"lowUtilizationThreshold": 5, "terminateUnderutilized": True, "terminateUnderutilizedAfter": "3s"}
    await client.patch(KAIWO_CONFIG_API, "KaiwoConfig", "kaiwo", {"spec": {"resourceMonitoring": on}})
    try:
        await client.create(kaiwojob("sleepy", namespace, gpus=1, annotations=notes("0")))
        done = await eventually(
            lambda: phase_is(client, "KaiwoJob", "sleepy", namespace, "TERMINATED"), "sleepy TERMINATED", timeout=60
        )
    finally:
        off = {"lowUtilizationThreshold": 5, "terminateUnderutilized": False}
        await client.patch(KAIWO_CONFIG_API, "KaiwoConfig", "kaiwo", {"spec": {"resourceMonitoring": off}})
    why = condition(done, "WorkloadTerminatedEarly") or {}
    low = condition(done, "ResourceUnderutilization") or {}
    assert (why.get("status"), why.get("reason")) == ("True", "GpuUtilizationLow"), why
    assert pre_epoch(why["lastTransitionTime"]) - pre_epoch(low["lastTransitionTime"]) >= 3
    seen = await event_reasons(client, "KaiwoJob", "sleepy", namespace, wait_for={"WorkloadTerminated"})
    assert seen["GpuUnderutilized"] == 1 and seen["WorkloadTermination"] == 1 and seen["WorkloadTerminated"] == 1

    async def job_gone() -> bool:
        return await client.get_or_none("batch/v1", "Job", "sleepy", namespace) is None

    await eventually(job_gone, "sleepy's Job deleted", timeout=30)


async def gpu_taints(client: Client) -> dict[str, bool]:
    """GPU node -> whether it carries Kaiwo's GPU taint."""
    out = {}
    for n in await client.list("v1", "Node"):
        if nodetaints.is_gpu_node(n):
            taints = (n.get("spec") or {}).get("taints") or []
            out[n["metadata"]["name"]] = any(t.get("key") == "kaiwo.silogen.ai/gpu" for t in taints)
    return out


async def test_gpu_nodes_are_tainted_and_cpu_pods_stay_off_them(
    client: Client, namespace: str, gpu_operator: Any
) -> None:
    nodes = {"nodes": {"addTaintsToGpuNodes": True}}
    await client.patch(KAIWO_CONFIG_API, "KaiwoConfig", "kaiwo", {"spec": nodes})
    try:
        await eventually(lambda: _all(gpu_taints(client), True), "every GPU node tainted", timeout=30)
        for i in range(3):
            await client.create(
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {"name": f"cpu-{i}", "namespace": namespace},
                    "spec": {
                        "containers": [{"name": "m", "image": "busybox", "resources": {"requests": {"cpu": "1"}}}]
                    },
                }
            )
        await client.create(kaiwojob("gpu", namespace, gpus=1, annotations=notes(None)))
        await eventually(lambda: phase_is(client, "KaiwoJob", "gpu", namespace, "RUNNING"), "gpu job RUNNING", 60)

        async def placed() -> dict[str, str] | None:
            pods = await client.list("v1", "Pod", namespace)
            where = {p["metadata"]["name"]: (p.get("spec") or {}).get("nodeName") or "" for p in pods}
            return where if all(where.values()) and len(where) == 4 else None

        where = await eventually(placed, "all pods scheduled", timeout=30)
        gpu_nodes = set(await gpu_taints(client))
        assert all(where[f"cpu-{i}"] not in gpu_nodes for i in range(3)), where
        assert any(node in gpu_nodes for name, node in where.items() if name.startswith("gpu-")), where
    finally:
        await client.patch(
            KAIWO_CONFIG_API, "KaiwoConfig", "kaiwo", {"spec": {"nodes": {"addTaintsToGpuNodes": False}}}
        )
    await eventually(lambda: _all(gpu_taints(client), False), "GPU taints removed", timeout=30)


async def _all(probe: Awaitable[dict[str, bool]], value: bool) -> bool:
    got = await probe
    return bool(got) and all(v == value for v in got.values())


async def free_nvidia_gpus(client: Client) -> int:
    nodes = [n for n in await client.list("v1", "Node") if "nvidia.com/gpu" in (n["status"].get("allocatable") or {})]
    pods = await client.list("v1", "Pod", fieldSelector="status.phase!=Succeeded,status.phase!=Failed")
    used = sum(
        int((c.get("resources") or {}).get("limits", {}).get("nvidia.com/gpu") or 0)
        for p in pods
        if (p.get("spec") or {}).get("nodeName")
        for c in p["spec"]["containers"]
    )
    return sum(int(n["status"]["allocatable"]["nvidia.com/gpu"]) for n in nodes) - used


def gpu_pod_spec(gpus: int) -> Obj:
    return {
        "containers": [{"name": "main", "image": "busybox", "resources": {"limits": {"nvidia.com/gpu": str(gpus)}}}]
    }


async def test_idle_deployment_makes_room_for_an_unschedulable_pod(
    client: Client, namespace: str, gpu_operator: Any
) -> None:
    """No Kueue here: an opted-in Deployment (root of Pod -> ReplicaSet -> Deployment) sits idle on one NVIDIA node
    while a pod needing a whole node cannot be scheduled; only then is the Deployment deleted."""
    await eventually(lambda: _is(free_nvidia_gpus(client), 16), "16 free NVIDIA GPUs", timeout=60)
    labels = {"app": "idle"}
    await client.create(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": "idle",
                "namespace": namespace,
                "annotations": notes(None, enabled="true", grace_period="2s"),
            },
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels, "annotations": notes("1")}, "spec": gpu_pod_spec(8)},
            },
        }
    )
    await client.create(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "busy", "namespace": namespace, "annotations": notes(None)},
            "spec": gpu_pod_spec(8),
        }
    )
    name = await record_name(client, "Deployment", "idle", namespace)
    rec = await eventually(lambda: record_in(client, name, namespace, "Idle"), "the Deployment Idle", timeout=60)
    assert (
        rec["status"]["ownerChain"].endswith(" -> Deployment/idle")
        and "ReplicaSet/idle-" in rec["status"]["ownerChain"]
    )
    await asyncio.sleep(4)  # idle past its grace, but nothing waits: it stays
    assert await record_in(client, name, namespace, "Idle")
    await client.create(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "want", "namespace": namespace, "annotations": notes(None)},
            "spec": gpu_pod_spec(8),
        }
    )
    done = await eventually(lambda: record_in(client, name, namespace, "Preempted"), "the Deployment Preempted", 60)
    assert done["status"]["preemptedFor"] == f"Pod {namespace}/want", done["status"]

    async def want_running() -> bool:
        pod = await client.get("v1", "Pod", "want", namespace)
        return (pod.get("status") or {}).get("phase") == "Running"

    await eventually(want_running, "the waiting pod Running", timeout=60)
    assert await client.get_or_none("apps/v1", "Deployment", "idle", namespace) is None
    assert (await client.get("v1", "Pod", "busy", namespace))["status"]["phase"] == "Running"


async def _is(probe: Awaitable[int], value: int) -> bool:
    return await probe == value
