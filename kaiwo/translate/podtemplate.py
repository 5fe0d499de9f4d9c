"""Pod-template mutation (docs/design/upstream.md#pod-template, docs/design/decisions.md D6-D7, D10): a pod template
(the user's, or None for a generated one) plus the workload -> a new template. The input is never modified.

What every template gets: labels (the template's, then ``podTemplateSpecLabels``, then the Kaiwo object's
labels except the queue label without overwriting, then builder extras such as ``app``, then the system labels,
which win); the Kaiwo object's annotations (except kubectl's last-applied) and the topology annotation
(required wins over preferred); image pull secrets; PVC volumes ``data``/``hf`` and secret volumes with their
mounts in every container and init container; ``HF_HOME``; user ``env`` (a container's own variable of the same
name wins); ``NUM_GPUS``/``NUM_REPLICAS``/``NUM_GPUS_PER_REPLICA`` and builder variables on main containers
(these win); images from ``spec.image`` (or the Ray default) where missing, else InvalidSpec naming the
container; resources (``kaiwo.translate.resources``); the GPU-model node affinity merged into the user's
(added to every required node-selector term, since terms are ORed); the GPU taint toleration when
``nodes.addTaintsToGpuNodes`` is set and the pod has GPUs.

Generated templates also get: the scheduler name from KaiwoConfig, the builder's restart policy, one container
(``workload``, ``ray-head`` or ``ray-worker``) with imagePullPolicy Always, a memory ``/dev/shm`` (``dshm``), and
unless ``dangerous`` the pod security context runAsUser/runAsGroup/fsGroup 1000. User templates keep their own
scheduler, restart policy and security context.

Choices where upstream is silent: GPUs and the GPU-sized CPU/memory defaults go on the first container only
(a sidecar does not get a copy of the GPUs; docs/design/decisions.md D21); other containers get only ``spec.resources``.
A volume, mount, pull secret or toleration that already exists under the same name is left as it is.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from kaiwo.api import labels as L
from kaiwo.api.base import wire
from kaiwo.api.common import WorkloadSpec
from kaiwo.api.config import KaiwoConfigSpec
from kaiwo.api.storage import data_mount_path, hf_mount_path
from kaiwo.runtime.objects import Obj
from kaiwo.translate import downloadcache
from kaiwo.translate.gpus import Plan
from kaiwo.translate.meta import INVALID_SPEC, TranslateError, propagated_labels, system_labels
from kaiwo.translate.resources import default_cpu_memory, fill_resources

SKIPPED_ANNOTATIONS = ("kubectl.kubernetes.io/last-applied-configuration",)
SECURITY_CONTEXT = {"fsGroup": 1000, "runAsGroup": 1000, "runAsUser": 1000}
DATA_VOLUME = "data"
HF_VOLUME = "hf"
SHM_VOLUME = "dshm"


@dataclass(frozen=True)
class Workload:
    """The Kaiwo object and what the builders derived from it once."""

    cr: Obj
    spec: WorkloadSpec
    config: KaiwoConfigSpec
    workload_type: str  # job | service
    plan: Plan
    queue: str

    @property
    def name(self) -> str:
        return str(self.cr["metadata"]["name"])


@dataclass(frozen=True)
class Role:
    """How one pod template of the workload is made."""

    where: str  # the field of the template, for error messages
    container_name: str = "workload"
    restart_policy: str | None = "Never"
    shm_size: str = "1Gi"
    gpus: int = 0  # per pod
    head: bool = False  # Ray head: no GPUs, cpu 2 and ray.headPodMemory
    image_fallback: str | None = None
    command: list[str] | None = None  # for the first container
    labels: dict[str, str] = field(default_factory=dict)
    env: tuple[Obj, ...] = ()


def _merge_named(items: list[Obj] | None, extra: list[Obj], key: str = "name") -> list[Obj]:
    out = list(items or [])
    present = {i.get(key) for i in out}
    out.extend(e for e in extra if e.get(key) not in present)
    return out


def _override_env(env: list[Obj], system: list[Obj]) -> list[Obj]:
    names = {e["name"] for e in system}
    return [e for e in env if e.get("name") not in names] + system


def _storage(w: Workload) -> tuple[list[Obj], list[Obj], list[Obj]]:
    """(volumes, mounts, env) of the data and HF PVCs and the secret volumes."""
    volumes: list[Obj] = []
    mounts: list[Obj] = []
    env: list[Obj] = []
    storage = w.spec.storage
    if storage is not None and storage.storage_enabled:
        data_path = data_mount_path(storage, w.config.storage.default_data_mount_path)
        hf_path = hf_mount_path(storage, w.config.storage.default_hf_mount_path)
        data_claim, hf_claim, key = downloadcache.claims(w.name, storage, data_path, hf_path)
        shared = {"readOnly": True} if key else {}  # a shared download is read by other workloads too
        if storage.has_data():
            volumes.append({"name": DATA_VOLUME, "persistentVolumeClaim": {"claimName": data_claim}})
            mounts.append({"name": DATA_VOLUME, "mountPath": data_path, **shared})
        if storage.hugging_face and storage.hugging_face.storage_size:
            volumes.append({"name": HF_VOLUME, "persistentVolumeClaim": {"claimName": hf_claim}})
            mounts.append({"name": HF_VOLUME, "mountPath": hf_path, **shared})
            env.append({"name": "HF_HOME", "value": hf_path})
    for sv in w.spec.secret_volumes or []:
        volumes.append({"name": sv.name, "secret": {"secretName": sv.secret_name}})
        mount: Obj = {"name": sv.name, "mountPath": sv.mount_path, "readOnly": True}
        if sv.sub_path:
            mount["subPath"] = sv.sub_path
        mounts.append(mount)
    return volumes, mounts, env


def _gpu_affinity(affinity: Obj | None, models: list[str]) -> Obj:
    out = copy.deepcopy(affinity or {})
    node = out.setdefault("nodeAffinity", {})
    required = node.setdefault("requiredDuringSchedulingIgnoredDuringExecution", {})
    terms = required.get("nodeSelectorTerms") or [{}]
    for term in terms:
        expr = {"key": L.GPU_MODEL, "operator": "In", "values": sorted(set(models))}
        term["matchExpressions"] = [*(term.get("matchExpressions") or []), expr]
    required["nodeSelectorTerms"] = terms
    return out


def generated_template(role: Role) -> Obj:
    return {"metadata": {}, "spec": {"containers": [{"name": role.container_name, "imagePullPolicy": "Always"}]}}


def mutate(template: Obj | None, w: Workload, role: Role) -> Obj | TranslateError:
    generated = template is None
    t = generated_template(role) if template is None else copy.deepcopy(template)
    meta = t.setdefault("metadata", {}) or {}
    t["metadata"] = meta
    spec = t.setdefault("spec", {}) or {}
    t["spec"] = spec
    cr_meta = w.cr["metadata"]

    labels: dict[str, str] = dict(meta.get("labels") or {})
    labels.update(w.spec.pod_template_spec_labels or {})
    for k, v in propagated_labels(w.cr).items():
        labels.setdefault(k, v)
    labels.update(role.labels)
    labels.update(system_labels(w.cr, w.workload_type))
    meta["labels"] = dict(sorted(labels.items()))

    annotations: dict[str, str] = dict(meta.get("annotations") or {})
    annotations.update({k: v for k, v in (cr_meta.get("annotations") or {}).items() if k not in SKIPPED_ANNOTATIONS})
    if w.spec.required_topology_label:
        annotations[L.KUEUE_REQUIRED_TOPOLOGY] = w.spec.required_topology_label
        annotations.pop(L.KUEUE_PREFERRED_TOPOLOGY, None)
    elif w.spec.preferred_topology_label:
        annotations[L.KUEUE_PREFERRED_TOPOLOGY] = w.spec.preferred_topology_label
    if annotations:
        meta["annotations"] = dict(sorted(annotations.items()))

    containers: list[Obj] = spec.get("containers") or []
    if not containers:
        return TranslateError(INVALID_SPEC, f"{role.where}.spec.containers: the pod template has no containers")
    volumes, mounts, storage_env = _storage(w)
    if generated:
        spec["schedulerName"] = w.config.scheduling.kube_scheduler_name
        if role.restart_policy:
            spec["restartPolicy"] = role.restart_policy
        if not w.spec.dangerous:
            spec["securityContext"] = dict(SECURITY_CONTEXT)
        volumes.append({"name": SHM_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": role.shm_size}})
        mounts.append({"name": SHM_VOLUME, "mountPath": "/dev/shm"})
    elif role.restart_policy and not spec.get("restartPolicy"):
        spec["restartPolicy"] = role.restart_policy  # a user template without one would be rejected (Jobs need it)
    if volumes:
        spec["volumes"] = _merge_named(spec.get("volumes"), volumes)
    if w.spec.image_pull_secrets:
        spec["imagePullSecrets"] = _merge_named(
            spec.get("imagePullSecrets"), [wire(s) for s in w.spec.image_pull_secrets]
        )

    user_env = [wire(e) for e in w.spec.env or []]
    plan = w.plan
    num_env = [
        {"name": "NUM_GPUS", "value": str(plan.gpus)},
        {"name": "NUM_REPLICAS", "value": str(plan.replicas)},
        {"name": "NUM_GPUS_PER_REPLICA", "value": str(plan.gpus_per_replica)},
    ]
    image = w.spec.image or role.image_fallback
    spec_resources = wire(w.spec.resources) if w.spec.resources else None
    head_defaults = {"cpu": "2", "memory": w.config.ray.head_pod_memory}
    defaults = head_defaults if role.head else default_cpu_memory(role.gpus)

    for kind in ("initContainers", "containers"):
        out: list[Obj] = []
        for i, c in enumerate(spec.get(kind) or []):
            c = dict(c)
            if not c.get("image"):
                if not image:
                    return TranslateError(
                        INVALID_SPEC,
                        f"spec.image: {kind[:-1]} '{c.get('name', i)}' of {role.where} has no image; "
                        f"set spec.image or the container's image",
                    )
                c["image"] = image
            main = kind == "containers"
            if main and i == 0 and role.command is not None:
                c["command"] = list(role.command)
                c.pop("args", None)
            env = _merge_named(c.get("env"), user_env)
            if main:
                env = _override_env(env, storage_env + num_env + list(role.env))
            elif storage_env:
                env = _override_env(env, storage_env)
            if env:
                c["env"] = env
            if mounts:
                c["volumeMounts"] = _merge_named(c.get("volumeMounts"), mounts)
            if main:
                first = i == 0
                c = fill_resources(
                    c,
                    gpus=role.gpus if first else 0,
                    resource_key=plan.resource_key,
                    spec_resources=None if role.head else spec_resources,
                    defaults=defaults if first else None,
                )
            out.append(c)
        if out:
            spec[kind] = out

    if role.gpus > 0 and w.spec.gpu_models:
        spec["affinity"] = _gpu_affinity(spec.get("affinity"), w.spec.gpu_models)
    if role.gpus > 0 and w.config.nodes.add_taints_to_gpu_nodes:
        toleration = {"key": w.config.nodes.default_gpu_taint_key, "operator": "Exists", "effect": "NoSchedule"}
        if toleration not in (spec.get("tolerations") or []):
            spec["tolerations"] = [*(spec.get("tolerations") or []), toleration]
    return copy.deepcopy(t)  # no sub-object is shared between containers or with the input
