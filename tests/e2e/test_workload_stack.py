"""The workload stack of the local cluster: real Kueue, KubeRay and AppWrapper controllers admit and run
workloads on the fake GPU nodes. No Kaiwo code is involved; these tests prove the stack Kaiwo builds on.

Kueue objects are cluster-scoped (ResourceFlavor, ClusterQueue, WorkloadPriorityClass, Topology), so each test
gets its own uniquely named ones from the ``queue`` fixture and deletes them afterwards.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest

from kaiwo.runtime.client import Client
from kaiwo.runtime.objects import Obj, condition, has_condition
from tests.e2e.helpers import eventually

KUEUE = "kueue.x-k8s.io/v1beta2"
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
PRIORITY_LABEL = "kueue.x-k8s.io/priority-class"
AMD_PRODUCT = {"amd.com/gpu.product-name": "AMD_Instinct_MI300X_OAM"}
RAY_IMAGE = "rayproject/ray:2.46.0"


@dataclass
class Queue:
    namespace: str
    flavor: str
    cluster_queue: str
    local_queue: str


def resources(gpus: int = 0, cpu: str = "1", memory: str = "1Gi") -> Obj:
    req = {"cpu": cpu, "memory": memory, **({"amd.com/gpu": str(gpus)} if gpus else {})}
    return {"requests": req, "limits": dict(req)}


def container(name: str = "main", gpus: int = 0, image: str = "busybox:1.36") -> Obj:
    return {"name": name, "image": image, "command": ["sleep", "3600"], "resources": resources(gpus)}


def job(
    name: str,
    queue: Queue,
    *,
    gpus: int,
    duration: str | None = None,
    parallelism: int = 1,
    labels: dict[str, str] | None = None,
    pod_annotations: dict[str, str] | None = None,
) -> Obj:
    annotations = dict(pod_annotations or {})
    if duration:
        annotations["kwok.kaiwo.dev/duration"] = duration
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": queue.namespace,
            "labels": {QUEUE_LABEL: queue.local_queue, **(labels or {})},
        },
        "spec": {
            "suspend": True,
            "parallelism": parallelism,
            "completions": parallelism,
            "backoffLimit": 0,
            "template": {
                "metadata": {"annotations": annotations},
                "spec": {"restartPolicy": "Never", "containers": [container(gpus=gpus)]},
            },
        },
    }


async def create_queue(
    client: Client, ns: str, *, gpus: int = 8, stop: bool = False, topology: str | None = None
) -> Queue:
    suffix = secrets.token_hex(3)
    q = Queue(ns, f"amd-{suffix}", f"cq-{suffix}", f"lq-{suffix}")
    flavor_spec: Obj = {"nodeLabels": dict(AMD_PRODUCT)}
    if topology:
        flavor_spec["topologyName"] = topology
    await client.create(
        {"apiVersion": KUEUE, "kind": "ResourceFlavor", "metadata": {"name": q.flavor}, "spec": flavor_spec}
    )
    await client.create(
        {
            "apiVersion": KUEUE,
            "kind": "ClusterQueue",
            "metadata": {"name": q.cluster_queue},
            "spec": {
                "namespaceSelector": {},
                **({"stopPolicy": "Hold"} if stop else {}),
                "resourceGroups": [
                    {
                        "coveredResources": ["cpu", "memory", "amd.com/gpu"],
                        "flavors": [
                            {
                                "name": q.flavor,
                                "resources": [
                                    {"name": "cpu", "nominalQuota": "64"},
                                    {"name": "memory", "nominalQuota": "256Gi"},
                                    {"name": "amd.com/gpu", "nominalQuota": str(gpus)},
                                ],
                            }
                        ],
                    }
                ],
            },
        }
    )
    await client.create(
        {
            "apiVersion": KUEUE,
            "kind": "LocalQueue",
            "metadata": {"name": q.local_queue, "namespace": ns},
            "spec": {"clusterQueue": q.cluster_queue},
        }
    )
    return q


class ClusterScoped:
    """Cluster-scoped objects a test creates, deleted when it ends."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.objects: list[tuple[str, str, str]] = []

    async def create(self, obj: Obj) -> Obj:
        created = await self.client.create(obj)
        self.objects.append((obj["apiVersion"], obj["kind"], obj["metadata"]["name"]))
        return created

    async def queue(self, ns: str, **kwargs: Any) -> Queue:
        q = await create_queue(self.client, ns, **kwargs)
        self.objects += [(KUEUE, "ResourceFlavor", q.flavor), (KUEUE, "ClusterQueue", q.cluster_queue)]
        return q

    async def delete_all(self) -> None:
        # ClusterQueues and ResourceFlavors keep a finalizer while workloads use them; they go away once the
        # test namespace (and with it the workloads) is deleted.
        for api, kind, name in reversed(self.objects):
            await self.client.delete(api, kind, name)


@pytest.fixture
async def cluster_scoped(client: Client) -> AsyncIterator[ClusterScoped]:
    objs = ClusterScoped(client)
    try:
        yield objs
    finally:
        await objs.delete_all()


@pytest.fixture
async def queue(cluster_scoped: ClusterScoped, namespace: str) -> Queue:
    return await cluster_scoped.queue(namespace)


async def workload_of(client: Client, ns: str, kind: str, name: str) -> Obj | None:
    for w in await client.list(KUEUE, "Workload", ns):
        if any(o["kind"] == kind and o["name"] == name for o in w["metadata"].get("ownerReferences", [])):
            return w
    return None


async def admitted_workload(client: Client, ns: str, kind: str, name: str, timeout: float = 60) -> Obj:
    seen: Obj | None = None

    async def probe() -> Obj | None:
        nonlocal seen
        seen = await workload_of(client, ns, kind, name)
        return seen if has_condition(seen, "Admitted") else None

    try:
        return await eventually(probe, f"the Workload of {kind} {name} admitted", timeout=timeout)
    except AssertionError as e:
        raise AssertionError(f"{e}; its status: {(seen or {}).get('status')}") from None


async def pending_workload(client: Client, ns: str, kind: str, name: str, reason: str = "Pending") -> Obj:
    """The Workload once Kueue has tried and refused to reserve quota for it (QuotaReserved False)."""

    async def probe() -> Obj | None:
        w = await workload_of(client, ns, kind, name)
        c = condition(w, "QuotaReserved")
        return w if c and c["status"] == "False" and c.get("reason") == reason else None

    return await eventually(probe, f"the Workload of {kind} {name} not admitted with reason {reason}")


async def job_state(client: Client, ns: str, name: str, ctype: str, timeout: float = 60) -> Obj:
    async def probe() -> Obj | None:
        j = await client.get("batch/v1", "Job", name, ns)
        return j if has_condition(j, ctype) else None

    return await eventually(probe, f"Job {name} {ctype}", timeout=timeout)


def when(obj: Obj, ctype: str) -> datetime:
    c = condition(obj, ctype)
    assert c is not None, f"no {ctype} condition"
    return datetime.fromisoformat(c["lastTransitionTime"].replace("Z", "+00:00"))


async def test_queued_job_is_admitted_unsuspended_and_completes_on_a_fake_node(
    client: Client, namespace: str, queue: Queue
) -> None:
    await client.create(job("train", queue, gpus=4))
    wl = await admitted_workload(client, namespace, "Job", "train")
    admission = wl["status"]["admission"]
    assert admission["clusterQueue"] == queue.cluster_queue
    (assignment,) = admission["podSetAssignments"]
    assert assignment["flavors"]["amd.com/gpu"] == queue.flavor
    assert assignment["resourceUsage"]["amd.com/gpu"] == "4"

    j = await job_state(client, namespace, "train", "Complete")
    assert j["spec"]["suspend"] is False
    # Admission injected the flavor's node labels, so the pod could only land on an AMD node.
    assert j["spec"]["template"]["spec"]["nodeSelector"] == AMD_PRODUCT
    (pod,) = await client.list("v1", "Pod", namespace, labelSelector="job-name=train")
    assert pod["status"]["phase"] == "Succeeded"
    assert pod["spec"]["nodeName"].startswith("amd-mi300x-")

    async def finished() -> Obj | None:
        w = await client.get(KUEUE, "Workload", wl["metadata"]["name"], namespace)
        return w if has_condition(w, "Finished") else None

    await eventually(finished, "the Workload Finished")
    # The conversion webhook serves the older API version too.
    old = await client.get("kueue.x-k8s.io/v1beta1", "Workload", wl["metadata"]["name"], namespace)
    assert old["apiVersion"] == "kueue.x-k8s.io/v1beta1" and has_condition(old, "Admitted")


async def test_job_over_remaining_quota_waits_for_the_first_to_finish(
    client: Client, namespace: str, queue: Queue
) -> None:
    await client.create(job("first", queue, gpus=6, duration="8s"))
    await admitted_workload(client, namespace, "Job", "first")
    await client.create(job("second", queue, gpus=4))

    wl = await pending_workload(client, namespace, "Job", "second")
    message = condition(wl, "QuotaReserved")["message"]  # type: ignore[index]
    assert "insufficient unused quota for amd.com/gpu" in message, message
    second = await client.get("batch/v1", "Job", "second", namespace)
    assert second["spec"]["suspend"] is True
    assert not await client.list("v1", "Pod", namespace, labelSelector="job-name=second")

    first = await job_state(client, namespace, "first", "Complete")
    wl = await admitted_workload(client, namespace, "Job", "second")
    completed = datetime.fromisoformat(first["status"]["completionTime"].replace("Z", "+00:00"))
    assert when(wl, "Admitted") >= completed
    await job_state(client, namespace, "second", "Complete")


async def test_higher_priority_class_is_admitted_first(
    client: Client, namespace: str, queue: Queue, cluster_scoped: ClusterScoped
) -> None:
    suffix = secrets.token_hex(3)
    high, low = f"high-{suffix}", f"low-{suffix}"
    for name, value in ((high, 1000), (low, 10)):
        await cluster_scoped.create(
            {"apiVersion": KUEUE, "kind": "WorkloadPriorityClass", "metadata": {"name": name}, "value": value}
        )
    await client.create(job("blocker", queue, gpus=8, duration="10s"))
    await admitted_workload(client, namespace, "Job", "blocker")
    # Created in this order, FIFO alone would admit "cheap" first.
    await client.create(job("cheap", queue, gpus=8, duration="3s", labels={PRIORITY_LABEL: low}))
    await client.create(job("urgent", queue, gpus=8, duration="3s", labels={PRIORITY_LABEL: high}))
    pending = await pending_workload(client, namespace, "Job", "urgent")
    assert pending["spec"]["priority"] == 1000
    assert (await pending_workload(client, namespace, "Job", "cheap"))["spec"]["priority"] == 10

    await admitted_workload(client, namespace, "Job", "urgent")
    cheap = await workload_of(client, namespace, "Job", "cheap")
    assert not has_condition(cheap, "QuotaReserved"), "the low-priority job got quota before the urgent one"
    cheap = await admitted_workload(client, namespace, "Job", "cheap")
    urgent_job = await job_state(client, namespace, "urgent", "Complete")
    urgent_done = datetime.fromisoformat(urgent_job["status"]["completionTime"].replace("Z", "+00:00"))
    assert when(cheap, "Admitted") >= urgent_done


def ray_cluster_spec(worker_gpus: int = 1, workers: int = 2) -> Obj:
    return {
        "headGroupSpec": {
            "rayStartParams": {},
            "template": {"spec": {"containers": [container("ray-head", image=RAY_IMAGE)]}},
        },
        "workerGroupSpecs": [
            {
                "groupName": "gpu",
                "replicas": workers,
                "minReplicas": workers,
                "maxReplicas": workers,
                "rayStartParams": {},
                "template": {"spec": {"containers": [container("ray-worker", gpus=worker_gpus, image=RAY_IMAGE)]}},
            }
        ],
    }


async def running_pods(client: Client, ns: str, selector: str, count: int) -> list[Obj]:
    async def probe() -> list[Obj] | None:
        pods = await client.list("v1", "Pod", ns, labelSelector=selector)
        running = [p for p in pods if p["status"].get("phase") == "Running"]
        return running if len(running) == count else None

    return await eventually(probe, f"{count} Running pods with {selector}")


async def test_rayjob_is_admitted_and_kuberay_runs_its_cluster(client: Client, namespace: str, queue: Queue) -> None:
    await client.create(
        {
            "apiVersion": "ray.io/v1",
            "kind": "RayJob",
            "metadata": {"name": "tune", "namespace": namespace, "labels": {QUEUE_LABEL: queue.local_queue}},
            "spec": {
                # Interactive: KubeRay submits nothing and never calls the Ray dashboard, which fake pods lack.
                "submissionMode": "InteractiveMode",
                "shutdownAfterJobFinishes": True,  # Kueue requires it
                "rayClusterSpec": ray_cluster_spec(worker_gpus=2, workers=2),
            },
        }
    )
    wl = await admitted_workload(client, namespace, "RayJob", "tune")
    usage = {p["name"]: p["resourceUsage"] for p in wl["status"]["admission"]["podSetAssignments"]}
    assert usage["gpu"]["amd.com/gpu"] == "4"  # 2 workers x 2 GPUs

    async def unsuspended() -> bool:  # `suspend: false` is omitted (omitempty) once Kueue has cleared it
        return not (await client.get("ray.io/v1", "RayJob", "tune", namespace))["spec"].get("suspend")

    await eventually(unsuspended, "RayJob tune unsuspended by Kueue")

    async def ray_cluster() -> Obj | None:
        # KubeRay names a RayCluster in the status before the admission, then deletes it while the RayJob is
        # suspended; the one that counts is the RayCluster that exists now.
        for rc in await client.list("ray.io/v1", "RayCluster", namespace):
            if rc["metadata"]["ownerReferences"][0]["name"] == "tune" and not rc["metadata"].get("deletionTimestamp"):
                return rc
        return None

    rc = await eventually(ray_cluster, "the RayCluster of RayJob tune")
    assert rc["metadata"]["ownerReferences"][0]["kind"] == "RayJob"
    assert not rc["spec"].get("suspend")
    name = rc["metadata"]["name"]
    workers = await running_pods(client, namespace, f"ray.io/cluster={name},ray.io/node-type=worker", 2)
    await running_pods(client, namespace, f"ray.io/cluster={name},ray.io/node-type=head", 1)
    for p in workers:
        assert p["spec"]["nodeName"].startswith("amd-mi300x-")
        assert p["spec"]["nodeSelector"] == AMD_PRODUCT

    async def cluster_ready() -> bool:
        rj = await client.get("ray.io/v1", "RayJob", "tune", namespace)
        return bool(rj.get("status", {}).get("jobDeploymentStatus") == "Waiting")  # cluster ready, awaiting a job

    await eventually(cluster_ready, "RayJob tune waiting for an interactive job on a ready cluster")


async def test_appwrapper_with_a_rayservice_is_admitted_and_creates_it(
    client: Client, namespace: str, queue: Queue
) -> None:
    service = {
        "apiVersion": "ray.io/v1",
        "kind": "RayService",
        "metadata": {"name": "serve"},
        "spec": {"rayClusterConfig": ray_cluster_spec(worker_gpus=1, workers=1)},
    }
    await client.create(
        {
            "apiVersion": "workload.codeflare.dev/v1beta2",
            "kind": "AppWrapper",
            "metadata": {"name": "wrapped", "namespace": namespace, "labels": {QUEUE_LABEL: queue.local_queue}},
            "spec": {
                "components": [
                    {
                        "template": service,
                        # AppWrapper infers pod sets for Jobs, RayClusters and RayJobs only; a RayService declares them.
                        "podSets": [
                            {"path": "template.spec.rayClusterConfig.headGroupSpec.template", "replicas": 1},
                            {"path": "template.spec.rayClusterConfig.workerGroupSpecs[0].template", "replicas": 1},
                        ],
                    }
                ]
            },
        }
    )
    aw = await client.get("workload.codeflare.dev/v1beta2", "AppWrapper", "wrapped", namespace)
    assert aw["spec"]["suspend"] is True  # Kueue's webhook queued it

    wl = await admitted_workload(client, namespace, "AppWrapper", "wrapped")
    gpus = sum(int(p["resourceUsage"].get("amd.com/gpu", "0")) for p in wl["status"]["admission"]["podSetAssignments"])
    assert gpus == 1

    rs = await eventually(
        lambda: client.get_or_none("ray.io/v1", "RayService", "serve", namespace),
        "RayService serve created by the AppWrapper",
    )
    assert rs["metadata"]["ownerReferences"][0]["kind"] == "AppWrapper"

    async def running() -> bool:
        a = await client.get("workload.codeflare.dev/v1beta2", "AppWrapper", "wrapped", namespace)
        return bool(not a["spec"].get("suspend") and a.get("status", {}).get("phase") == "Running")

    await eventually(running, "AppWrapper wrapped Running")
    clusters = await eventually(
        lambda: client.list("ray.io/v1", "RayCluster", namespace), "KubeRay's RayCluster for the RayService"
    )
    assert clusters[0]["metadata"]["ownerReferences"][0]["kind"] == "RayService"
    # Stop KubeRay from polling the (non-existent) Ray dashboard of the fake head pod.
    await client.delete("workload.codeflare.dev/v1beta2", "AppWrapper", "wrapped", namespace)


async def test_deployment_pods_are_gated_until_admitted_then_run(
    client: Client, namespace: str, cluster_scoped: ClusterScoped
) -> None:
    q = await cluster_scoped.queue(namespace, stop=True)  # holds admission until the test releases it
    await client.create(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": namespace},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web", QUEUE_LABEL: q.local_queue}},
                    "spec": {"containers": [container(gpus=1)]},
                },
            },
        }
    )

    async def gated() -> list[Obj] | None:
        pods = await client.list("v1", "Pod", namespace, labelSelector="app=web")
        ok = [p for p in pods if {"name": "kueue.x-k8s.io/admission"} in p["spec"].get("schedulingGates", [])]
        return pods if len(ok) == 2 and len(pods) == 2 else None

    pods = await eventually(gated, "2 pods of Deployment web with Kueue's admission gate")
    for p in pods:
        assert p["status"]["phase"] == "Pending" and not p["spec"].get("nodeName")
        wl = await pending_workload(client, namespace, "Pod", p["metadata"]["name"], reason="Inadmissible")
        assert condition(wl, "QuotaReserved")["message"] == f"ClusterQueue {q.cluster_queue} is inactive"  # type: ignore[index]

    await client.patch(KUEUE, "ClusterQueue", q.cluster_queue, {"spec": {"stopPolicy": "None"}})
    running = await running_pods(client, namespace, "app=web", 2)
    for p in running:
        assert not p["spec"].get("schedulingGates")
        assert p["spec"]["nodeName"].startswith("amd-mi300x-")
        await admitted_workload(client, namespace, "Pod", p["metadata"]["name"])


async def test_topology_aware_scheduling_packs_a_job_onto_one_node(
    client: Client, namespace: str, cluster_scoped: ClusterScoped
) -> None:
    topology = f"hosts-{secrets.token_hex(3)}"
    await cluster_scoped.create(
        {
            "apiVersion": KUEUE,
            "kind": "Topology",
            "metadata": {"name": topology},
            "spec": {"levels": [{"nodeLabel": "kubernetes.io/hostname"}]},
        }
    )
    q = await cluster_scoped.queue(namespace, gpus=8, topology=topology)
    # Small pods: Kueue does not retry a TAS workload that did not fit when other pods leave the nodes, and pods
    # of earlier tests may still be terminating.
    await client.create(
        job(
            "packed",
            q,
            gpus=1,
            parallelism=2,
            duration="5s",
            pod_annotations={"kueue.x-k8s.io/podset-required-topology": "kubernetes.io/hostname"},
        )
    )
    wl = await admitted_workload(client, namespace, "Job", "packed")
    (assignment,) = wl["status"]["admission"]["podSetAssignments"]
    topo = assignment["topologyAssignment"]
    assert topo["levels"] == ["kubernetes.io/hostname"]
    (domain,) = topo["slices"]  # one slice of one domain (node) holding both pods
    assert domain["domainCount"] == 1 and domain["podCounts"] == {"universal": 2}, topo
    node = domain["valuesPerLevel"][0]["universal"]
    assert node.startswith("amd-mi300x-")
    await job_state(client, namespace, "packed", "Complete")
    pods = await client.list("v1", "Pod", namespace, labelSelector="job-name=packed")
    assert len(pods) == 2
    for p in pods:  # Kueue released the pods onto the assigned node (the default scheduler would spread them)
        assert p["spec"]["nodeName"] == node
        assert p["spec"]["nodeSelector"]["kubernetes.io/hostname"] == node


async def test_kaiwo_scheduler_profile_packs_gpu_pods_onto_one_node(client: Client, namespace: str) -> None:
    """Kaiwo's generated pods name `kaiwo-scheduler`; the default scheduler spreads the same pods."""

    async def place(name: str, scheduler: str) -> str:
        spec = {
            "schedulerName": scheduler,
            "containers": [
                {
                    **container(),
                    "resources": {
                        "requests": {"cpu": "1", "nvidia.com/gpu": "1"},
                        "limits": {"cpu": "1", "nvidia.com/gpu": "1"},
                    },
                }
            ],
        }
        await client.create(
            {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace}, "spec": spec}
        )

        async def node() -> str | None:
            p = await client.get("v1", "Pod", name, namespace)
            return p["spec"].get("nodeName") if p["status"].get("phase") == "Running" else None

        return await eventually(node, f"pod {name} Running")

    packed = {await place("packed-a", "kaiwo-scheduler"), await place("packed-b", "kaiwo-scheduler")}
    assert len(packed) == 1 and next(iter(packed)).startswith("nvidia-h100-"), packed
    for name in ("packed-a", "packed-b"):
        await client.delete("v1", "Pod", name, namespace)
    await eventually(lambda: _no_pods(client, namespace), "the packed pods gone")
    spread = {await place("spread-a", "default-scheduler"), await place("spread-b", "default-scheduler")}
    assert len(spread) == 2, spread


async def _no_pods(client: Client, ns: str) -> bool:
    return not await client.list("v1", "Pod", ns)
