"""Fluent builders of the objects tests feed to translate functions, reconcilers and fakes.

Each builder starts from the smallest valid object, every method sets one thing and returns the builder, and
``obj()`` returns a fresh deep copy, so one builder can stamp out variants::

    KaiwoJobBuilder("train", "ns").gpus(8).image("rocm/pytorch").obj()
    WorkloadBuilder("job-train", "ns").owned_by(job).admitted().obj()

(the shape of Kueue's pkg/util/testing wrappers). Objects are plain dicts, as the runtime holds them.
"""

from __future__ import annotations

import copy
from typing import Any, Self

from kaiwo.api.config import API_VERSION as KAIWO_CONFIG_API
from kaiwo.api.kaiwojob import API_VERSION as KAIWO_API
from kaiwo.api.labels import NAME as NAME_LABEL
from kaiwo.api.labels import RUN_ID as RUN_ID_LABEL
from kaiwo.runtime.objects import Obj
from kaiwo.translate.queueconfig import KUEUE_API
from kaiwo.translate.status import KUEUE_ADMISSION_GATE

GPU_RESOURCES = {"amd": "amd.com/gpu", "nvidia": "nvidia.com/gpu"}


class ObjectBuilder:
    """Metadata and status conditions, shared by every builder."""

    def __init__(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> None:
        meta: Obj = {"name": name}
        if namespace is not None:
            meta["namespace"] = namespace
        self._obj: Obj = {"apiVersion": api_version, "kind": kind, "metadata": meta}

    def obj(self) -> Obj:
        return copy.deepcopy(self._obj)

    def manifest(self) -> Obj:
        """The object as a user submits it: without the fields the apiserver sets (uid, generation,
        resourceVersion, creationTimestamp) and without status."""
        out = self.obj()
        out.pop("status", None)
        for key in ("uid", "generation", "resourceVersion", "creationTimestamp"):
            out["metadata"].pop(key, None)
        return out

    @property
    def _meta(self) -> Obj:
        meta: Obj = self._obj["metadata"]
        return meta

    @property
    def _spec(self) -> Obj:
        spec: Obj = self._obj.setdefault("spec", {})
        return spec

    @property
    def _status(self) -> Obj:
        status: Obj = self._obj.setdefault("status", {})
        return status

    def uid(self, uid: str) -> Self:
        self._meta["uid"] = uid
        return self

    def generation(self, generation: int) -> Self:
        self._meta["generation"] = generation
        return self

    def resource_version(self, rv: str) -> Self:
        self._meta["resourceVersion"] = rv
        return self

    def label(self, key: str, value: str) -> Self:
        self._meta.setdefault("labels", {})[key] = value
        return self

    def annotation(self, key: str, value: str) -> Self:
        self._meta.setdefault("annotations", {})[key] = value
        return self

    def created(self, timestamp: str) -> Self:
        self._meta["creationTimestamp"] = timestamp
        return self

    def deleting(self, timestamp: str = "2026-01-01T00:00:00Z") -> Self:
        self._meta["deletionTimestamp"] = timestamp
        return self

    def owned_by(self, owner: Obj, *, controller: bool = True) -> Self:
        """An ownerReference to ``owner`` (which needs a uid)."""
        ref = {
            "apiVersion": owner["apiVersion"],
            "kind": owner["kind"],
            "name": owner["metadata"]["name"],
            "uid": owner["metadata"]["uid"],
        }
        if controller:
            ref |= {"controller": True, "blockOwnerDeletion": True}
        self._meta.setdefault("ownerReferences", []).append(ref)
        return self

    def status_field(self, key: str, value: Any) -> Self:
        """Any status field, by its JSON name."""
        self._status[key] = copy.deepcopy(value)
        return self

    def condition(
        self, ctype: str, status: bool | str = True, reason: str = "", message: str = "", **extra: Any
    ) -> Self:
        """Set (or replace) the status condition ``ctype``."""
        value = status if isinstance(status, str) else ("True" if status else "False")
        cond: Obj = {"type": ctype, "status": value, **extra}
        if reason:
            cond["reason"] = reason
        if message:
            cond["message"] = message
        conds = [c for c in self._status.get("conditions") or [] if c["type"] != ctype]
        self._status["conditions"] = [*conds, cond]
        return self


# --- Kaiwo ---------------------------------------------------------------------------------------------------


class _KaiwoWorkloadBuilder(ObjectBuilder):
    """Fields common to KaiwoJob and KaiwoService (kaiwo.api.common.WorkloadSpec) and their status."""

    def __init__(self, kind: str, name: str, namespace: str | None) -> None:
        super().__init__(KAIWO_API, kind, name, namespace)
        self.uid(f"uid-{name}").generation(1)
        self._spec.update({"image": "busybox", "entrypoint": "echo hi"})

    def image(self, image: str) -> Self:
        self._spec["image"] = image
        return self

    def entrypoint(self, entrypoint: str) -> Self:
        self._spec["entrypoint"] = entrypoint
        return self

    def gpus(self, gpus: int, vendor: str | None = None) -> Self:
        self._spec["gpus"] = gpus
        if vendor:
            self._spec["gpuVendor"] = vendor
        return self

    def gpu_vendor(self, vendor: str) -> Self:
        self._spec["gpuVendor"] = vendor
        return self

    def gpu_models(self, *models: str) -> Self:
        self._spec["gpuModels"] = list(models)
        return self

    def replicas(self, replicas: int) -> Self:
        self._spec["replicas"] = replicas
        return self

    def gpus_per_replica(self, gpus: int) -> Self:
        self._spec["gpusPerReplica"] = gpus
        return self

    def ray(self, ray: bool = True) -> Self:
        self._spec["ray"] = ray
        return self

    def dangerous(self, dangerous: bool = True) -> Self:
        self._spec["dangerous"] = dangerous
        return self

    def cluster_queue(self, queue: str) -> Self:
        self._spec["clusterQueue"] = queue
        return self

    def priority_class(self, name: str) -> Self:
        self._spec["priorityClass"] = name
        return self

    def duration(self, duration: str) -> Self:
        self._spec["duration"] = duration
        return self

    def user(self, user: str) -> Self:
        self._spec["user"] = user
        return self

    def env(self, name: str, value: str) -> Self:
        self._spec.setdefault("env", []).append({"name": name, "value": value})
        return self

    def spec_field(self, key: str, value: Any) -> Self:
        """Any other spec field, by its JSON name."""
        self._spec[key] = copy.deepcopy(value)
        return self

    def spec(self, spec: Obj) -> Self:
        """Replace the whole spec (for cases that must leave out even the image or the entrypoint)."""
        self._obj["spec"] = copy.deepcopy(spec)
        return self

    def unset(self, key: str) -> Self:
        """Leave a spec field out (e.g. the image, to see validation refuse it)."""
        self._spec.pop(key, None)
        return self

    def phase(self, phase: str) -> Self:
        self._status["status"] = phase
        return self

    def started(self, timestamp: str) -> Self:
        self._status["startTime"] = timestamp
        return self

    def observed_generation(self, generation: int) -> Self:
        self._status["observedGeneration"] = generation
        return self


class KaiwoJobBuilder(_KaiwoWorkloadBuilder):
    def __init__(self, name: str, namespace: str | None = "default") -> None:
        super().__init__("KaiwoJob", name, namespace)


class KaiwoServiceBuilder(_KaiwoWorkloadBuilder):
    def __init__(self, name: str, namespace: str | None = "default") -> None:
        super().__init__("KaiwoService", name, namespace)

    def serve_config(self, config: str) -> Self:
        self._spec["serveConfigV2"] = config
        return self


class KaiwoQueueConfigBuilder(ObjectBuilder):
    """The cluster-scoped KaiwoQueueConfig (Kaiwo reads only the one named ``kaiwo``)."""

    def __init__(self, name: str = "kaiwo") -> None:
        super().__init__(KAIWO_API, "KaiwoQueueConfig", name)
        self.uid(f"uid-{name}").generation(1)
        self._spec.update({"resourceFlavors": [], "clusterQueues": []})

    def resource_flavor(
        self,
        name: str,
        node_labels: dict[str, str] | None = None,
        *,
        topology: str | None = None,
        taints: list[Obj] | None = None,
        tolerations: list[Obj] | None = None,
    ) -> Self:
        flavor: Obj = {"name": name, "nodeLabels": dict(node_labels or {})}
        if topology:
            flavor["topologyName"] = topology
        if taints:
            flavor["taints"] = copy.deepcopy(taints)
        if tolerations:
            flavor["tolerations"] = copy.deepcopy(tolerations)
        self._spec["resourceFlavors"].append(flavor)
        return self

    def cluster_queue(
        self,
        name: str,
        *,
        namespaces: list[str] | None = None,
        quotas: dict[str, dict[str, Any]] | None = None,
        covered: list[str] | None = None,
        **spec: Any,
    ) -> Self:
        """A ClusterQueue; ``quotas`` maps flavor -> {resource: nominalQuota} (one resource group whose
        ``coveredResources`` are ``covered``, else the resources in first-seen order); other keyword arguments
        are ClusterQueue spec fields."""
        cq_spec: Obj = copy.deepcopy(spec)
        if quotas:
            covered = covered or list(dict.fromkeys(r for res in quotas.values() for r in res))
            cq_spec["resourceGroups"] = [
                {
                    "coveredResources": covered,
                    "flavors": [
                        {"name": fl, "resources": [{"name": r, "nominalQuota": q} for r, q in res.items()]}
                        for fl, res in quotas.items()
                    ],
                }
            ]
        cq: Obj = {"name": name, "spec": cq_spec}
        if namespaces is not None:
            cq["namespaces"] = list(namespaces)
        self._spec["clusterQueues"].append(cq)
        return self

    def topology(self, name: str, *levels: str) -> Self:
        self._spec.setdefault("topologies", []).append(
            {"metadata": {"name": name}, "spec": {"levels": [{"nodeLabel": lvl} for lvl in levels]}}
        )
        return self

    def priority_class(self, name: str, value: int, description: str = "") -> Self:
        wpc: Obj = {"metadata": {"name": name}, "value": value}
        if description:
            wpc["description"] = description
        self._spec.setdefault("workloadPriorityClasses", []).append(wpc)
        return self


class KaiwoConfigBuilder(ObjectBuilder):
    """The cluster-scoped KaiwoConfig (Kaiwo reads only the one named ``kaiwo``)."""

    def __init__(self, name: str = "kaiwo") -> None:
        super().__init__(KAIWO_CONFIG_API, "KaiwoConfig", name)
        self.uid(f"uid-{name}").generation(1)

    def spec_field(self, key: str, value: Any) -> Self:
        """Any spec field, by its JSON name (e.g. ``resourceMonitoring``)."""
        self._spec[key] = copy.deepcopy(value)
        return self


# --- core and batch ------------------------------------------------------------------------------------------


class NodeBuilder(ObjectBuilder):
    """A Ready, schedulable node with 96 CPUs and 1 TiB of memory unless told otherwise."""

    def __init__(self, name: str) -> None:
        super().__init__("v1", "Node", name)
        self._status.update(
            {
                "capacity": {"cpu": "96", "memory": "1Ti", "pods": "110"},
                "allocatable": {"cpu": "96", "memory": "1Ti", "pods": "110"},
            }
        )
        self.label("kubernetes.io/hostname", name).ready()

    def gpus(self, count: int, vendor: str = "amd", product: str | None = None, *, labelled: bool = True) -> Self:
        """GPU capacity plus the labels the vendors' GPU operators put on the node (what pool discovery reads;
        ``labelled=False``: a node no GPU operator has labelled)."""
        resource = GPU_RESOURCES[vendor]
        self._status["capacity"][resource] = str(count)
        self._status["allocatable"][resource] = str(count)
        if not labelled:
            return self
        if vendor == "amd":
            self.label("amd.com/gpu.product-name", product or "AMD_Instinct_MI300X_OAM")
            self.label("beta.amd.com/gpu.family.AI", str(count))
        else:
            self.label("nvidia.com/gpu.product", product or "NVIDIA-H100-80GB-HBM3")
            self.label("nvidia.com/gpu.count", str(count))
        return self

    def cpu(self, cpus: str, memory: str) -> Self:
        for key in ("capacity", "allocatable"):
            self._status[key].update({"cpu": cpus, "memory": memory})
        return self

    def ready(self, ready: bool = True) -> Self:
        return self.condition("Ready", ready, "KubeletReady" if ready else "KubeletNotReady")

    def taint(self, key: str, value: str = "", effect: str = "NoSchedule") -> Self:
        taint = {"key": key, "effect": effect} | ({"value": value} if value else {})
        self._spec.setdefault("taints", []).append(taint)
        return self

    def unschedulable(self) -> Self:
        self._spec["unschedulable"] = True
        return self

    def control_plane(self) -> Self:
        return self.label("node-role.kubernetes.io/control-plane", "")


class PodBuilder(ObjectBuilder):
    def __init__(self, name: str, namespace: str = "default") -> None:
        super().__init__("v1", "Pod", name, namespace)
        self._spec["containers"] = [{"name": "main", "image": "busybox"}]
        self._status["phase"] = "Pending"

    def of_workload(self, name: str, run_id: str = "run-1") -> Self:
        """The labels Kaiwo puts on the pods of workload ``name``."""
        return self.label(NAME_LABEL, name).label(RUN_ID_LABEL, run_id)

    def gated(self, gate: str = KUEUE_ADMISSION_GATE) -> Self:
        self._spec.setdefault("schedulingGates", []).append({"name": gate})
        return self

    def on_node(self, node: str) -> Self:
        self._spec["nodeName"] = node
        return self

    def gpus(self, count: int, vendor: str = "amd") -> Self:
        """A GPU limit on the main container (Kubernetes sets the request of an extended resource to its limit)."""
        main = next(c for c in self._spec["containers"] if c["name"] == "main")
        main.setdefault("resources", {}).setdefault("limits", {})[GPU_RESOURCES[vendor]] = str(count)
        return self

    def requests(self, **resources: str) -> Self:
        """Requests of the main container, e.g. ``requests(cpu="2", **{"nvidia.com/gpu": "4"})``."""
        main = next(c for c in self._spec["containers"] if c["name"] == "main")
        main.setdefault("resources", {}).setdefault("requests", {}).update(resources)
        return self

    def node_selector(self, **labels: str) -> Self:
        self._spec.setdefault("nodeSelector", {}).update(labels)
        return self

    def sidecar(self, name: str = "side") -> Self:
        """A container without resources ahead of ``main``."""
        self._spec["containers"].insert(0, {"name": name, "image": "busybox"})
        return self

    def started(self, timestamp: str) -> Self:
        self._status["startTime"] = timestamp
        return self

    def running(self, ready: bool = True) -> Self:
        self._status["phase"] = "Running"
        return self.condition("Ready", ready)

    def phase(self, phase: str) -> Self:
        self._status["phase"] = phase
        return self


class JobBuilder(ObjectBuilder):
    def __init__(self, name: str, namespace: str = "default") -> None:
        super().__init__("batch/v1", "Job", name, namespace)
        self.uid(f"uid-job-{name}")
        self._spec.update(
            {"template": {"spec": {"containers": [{"name": "main", "image": "busybox"}], "restartPolicy": "Never"}}}
        )

    def suspend(self, suspend: bool = True) -> Self:
        self._spec["suspend"] = suspend
        return self

    def parallelism(self, n: int) -> Self:
        self._spec["parallelism"] = n
        self._spec["completions"] = n
        return self

    def active(self, active: int, ready: int | None = None) -> Self:
        self._status["active"] = active
        self._status["ready"] = active if ready is None else ready
        return self

    def succeeded(self, n: int = 1) -> Self:
        self._status["succeeded"] = n
        return self.condition("Complete", True)

    def failed(self, reason: str = "BackoffLimitExceeded", message: str = "Job has reached the backoff limit") -> Self:
        return self.condition("Failed", True, reason, message)


class DeploymentBuilder(ObjectBuilder):
    def __init__(self, name: str, namespace: str = "default") -> None:
        super().__init__("apps/v1", "Deployment", name, namespace)
        self.uid(f"uid-deployment-{name}")
        self._spec["replicas"] = 1

    def replicas(self, n: int) -> Self:
        self._spec["replicas"] = n
        return self

    def available(self, n: int) -> Self:
        self._status["availableReplicas"] = n
        return self

    def progress_deadline_exceeded(self, message: str = "ReplicaSet has timed out progressing") -> Self:
        return self.condition("Progressing", False, "ProgressDeadlineExceeded", message)


class RayJobBuilder(ObjectBuilder):
    def __init__(self, name: str, namespace: str = "default") -> None:
        super().__init__("ray.io/v1", "RayJob", name, namespace)
        self.uid(f"uid-rayjob-{name}")

    def deployment_status(self, status: str, *, reason: str = "", message: str = "") -> Self:
        self._status["jobDeploymentStatus"] = status
        if reason:
            self._status["reason"] = reason
        if message:
            self._status["message"] = message
        return self

    def job_status(self, status: str) -> Self:
        """The Ray job's own state (``status.jobStatus``: PENDING, RUNNING, SUCCEEDED, FAILED, STOPPED)."""
        self._status["jobStatus"] = status
        return self


class AppWrapperBuilder(ObjectBuilder):
    def __init__(self, name: str, namespace: str = "default") -> None:
        super().__init__("workload.codeflare.dev/v1beta2", "AppWrapper", name, namespace)
        self.uid(f"uid-appwrapper-{name}")

    def phase(self, phase: str) -> Self:
        self._status["phase"] = phase
        return self


# --- Kueue ---------------------------------------------------------------------------------------------------


class WorkloadBuilder(ObjectBuilder):
    """A Kueue Workload (as Kueue creates one per Job, RayJob, AppWrapper or pod)."""

    def __init__(self, name: str, namespace: str = "default") -> None:
        super().__init__(KUEUE_API, "Workload", name, namespace)
        self.uid(f"uid-workload-{name}")
        self._spec["podSets"] = [{"name": "main", "count": 1}]

    def queue(self, name: str) -> Self:
        self._spec["queueName"] = name
        return self

    def priority_class(self, name: str) -> Self:
        self._spec["priorityClassName"] = name
        self._spec["priorityClassSource"] = "kueue.x-k8s.io/workloadpriorityclass"
        return self

    def pod_set(
        self, name: str, count: int, requests: dict[str, str] | None = None, limits: dict[str, str] | None = None
    ) -> Self:
        pod_set: Obj = {"name": name, "count": count}
        resources = {k: v for k, v in (("requests", requests), ("limits", limits)) if v}
        if resources:
            pod_set["template"] = {"spec": {"containers": [{"name": "main", "resources": resources}]}}
        others = [p for p in self._spec["podSets"] if p["name"] not in (name, "main")]
        self._spec["podSets"] = [*others, pod_set]
        return self

    def quota_reserved(self, cluster_queue: str = "kaiwo") -> Self:
        self._status["admission"] = {"clusterQueue": cluster_queue}
        return self.condition("QuotaReserved", True, "QuotaReserved", f"Quota reserved in ClusterQueue {cluster_queue}")

    def pending(self, message: str) -> Self:
        """Not admitted, with Kueue's explanation (e.g. "couldn't assign flavors to pod set main")."""
        return self.condition("QuotaReserved", False, "Pending", message)

    def admitted(self, cluster_queue: str = "kaiwo") -> Self:
        return self.quota_reserved(cluster_queue).condition("Admitted", True, "Admitted", "The workload is admitted")

    def evicted(self, reason: str = "Preempted", message: str = "Preempted to accommodate a workload") -> Self:
        return self.condition("Evicted", True, reason, message)

    def finished(self, message: str = "Job finished successfully") -> Self:
        return self.condition("Finished", True, "Succeeded", message)
