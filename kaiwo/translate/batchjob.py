"""KaiwoJob (not Ray) -> batch/v1 Job, and for multi-pod work a headless Service
(docs/design/upstream.md#kaiwojob-children, docs/design/decisions.md D5).

The Job: base ``spec.job.spec`` or a generated template; ``suspend: true`` (Kueue admits it by un-suspending);
``backoffLimit: 0`` (forced, with a warning); ``ttlSecondsAfterFinished`` 3600 unless given; the entrypoint as
container[0]'s command; the Kaiwo object's labels (but its queue label) and the system labels on the Job,
the Service and the template (``meta.child_labels``, so ``kubectl get jobs -l team=x`` finds the Job); queue and
priority labels on the Job only (Kueue reads them there; on the pods they would invite Kueue's pod integration;
docs/design/decisions.md D20).

More than one replica (more GPUs than one node has, or explicit ``replicas``): an Indexed Job with
``parallelism = completions = replicas``, ``gpusPerReplica`` GPUs per pod, pods in the subdomain of a headless
Service named like the Job (``publishNotReadyAddresses`` so that rendezvous works before pods are ready), and
one pod per node: a pod anti-affinity on ``kubernetes.io/hostname`` against the Job's other pods
(``batch.kubernetes.io/job-name``), added to any affinity of the user's template. It is *required* when every
pod needs more than half of any node's GPUs (``Plan.exclusive_nodes``; always so when Kaiwo splits ``gpus``
itself): no placement could put two pods on one node, so the rule can never conflict with Kueue's
topology-aware scheduling, which picks the nodes by capacity alone and ignores pod affinity. Smaller pods
(explicit ``replicas`` x ``gpusPerReplica`` of at most half a node, or no GPUs) get a *preferred*
anti-affinity and a warning: a required one would leave a pod that Kueue placed beside its sibling Pending
for good.

Rendezvous environment (main containers), so that a bare ``torchrun train.py`` runs on every node:
- torchrun's own defaults (it reads ``PET_<OPTION>`` for each unset ``--<option>``): ``PET_NNODES`` = pods,
  ``PET_NPROC_PER_NODE`` = GPUs per pod (1 without GPUs), ``PET_NODE_RANK`` = the completion index,
  ``PET_MASTER_ADDR`` = pod 0 (``<name>-0.<name>``), ``PET_MASTER_PORT`` = 29500 (PyTorch's default). The
  rendezvous is torchrun's static one: node ranks are the pod indices, node 0 hosts the store.
- the same facts for other launchers: ``MASTER_ADDR``, ``MASTER_PORT``, ``NODE_RANK`` (Lightning, Accelerate,
  DeepSpeed) and ``NNODES``.
- ``WORLD_SIZE`` and ``RANK`` are *not* set: in PyTorch they count processes, not pods, and torchrun sets
  them for each process it starts (``WORLD_SIZE = PET_NNODES * PET_NPROC_PER_NODE``). A pod-level value
  would be wrong as soon as a pod runs more than one process (docs/scientist-guide.md, "Multi-node training").
- collective-library settings vendors recommend for multi-node runs, unless the user sets them:
  ``TORCH_NCCL_ASYNC_ERROR_HANDLING=1`` (a lost peer aborts the job instead of hanging it; NCCL and RCCL
  alike) and, on AMD, ``HSA_FORCE_FINE_GRAIN_PCIE=1`` (ROCm's RCCL guidance for multi-node performance).
Choice: a batch job without GPUs but with ``replicas > 1`` is also an Indexed Job (upstream ignored replicas for batch
jobs; docs/design/decisions.md D19).
"""

from __future__ import annotations

import copy

from kaiwo.runtime.objects import Obj
from kaiwo.translate.entrypoint import shell_command
from kaiwo.translate.meta import TranslateError, child_labels, child_meta, queue_labels
from kaiwo.translate.podtemplate import Role, Workload, mutate

DEFAULT_TTL_SECONDS = 3600
MASTER_PORT = 29500
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
HOSTNAME_LABEL = "kubernetes.io/hostname"
COMPLETION_INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"


def headless_service(w: Workload) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": child_meta(w.cr, w.name, child_labels(w.cr, w.workload_type)),
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": {JOB_NAME_LABEL: w.name},
            "ports": [{"name": "rendezvous", "port": MASTER_PORT, "protocol": "TCP", "targetPort": MASTER_PORT}],
        },
    }


def _index_ref() -> Obj:
    return {"fieldRef": {"fieldPath": f"metadata.annotations['{COMPLETION_INDEX_ANNOTATION}']"}}


def rendezvous_env(w: Workload) -> tuple[Obj, ...]:
    """The multi-node environment of every pod (see the module docstring)."""
    nodes = str(w.plan.replicas)
    master = f"{w.name}-0.{w.name}"
    return (
        {"name": "PET_NNODES", "value": nodes},
        {"name": "PET_NPROC_PER_NODE", "value": str(max(1, w.plan.gpus_per_replica))},
        {"name": "PET_NODE_RANK", "valueFrom": _index_ref()},
        {"name": "PET_MASTER_ADDR", "value": master},
        {"name": "PET_MASTER_PORT", "value": str(MASTER_PORT)},
        {"name": "NNODES", "value": nodes},
        {"name": "NODE_RANK", "valueFrom": _index_ref()},
        {"name": "MASTER_ADDR", "value": master},
        {"name": "MASTER_PORT", "value": str(MASTER_PORT)},
    )


def collective_env(w: Workload, template: Obj | None) -> tuple[Obj, ...]:
    """Vendor-recommended collective settings; a variable the user sets (``spec.env`` or a container of the
    user's template) wins."""
    env = [{"name": "TORCH_NCCL_ASYNC_ERROR_HANDLING", "value": "1"}]
    if w.plan.resource_key.startswith("amd.com/"):
        env.append({"name": "HSA_FORCE_FINE_GRAIN_PCIE", "value": "1"})
    user = {e.name for e in w.spec.env or []}
    for c in ((template or {}).get("spec") or {}).get("containers") or []:
        user |= {e.get("name") for e in c.get("env") or []}
    return tuple(e for e in env if e["name"] not in user)


def one_pod_per_node(affinity: Obj | None, job_name: str, required: bool) -> Obj:
    """``affinity`` plus an anti-affinity against the Job's other pods on the same node: required, or preferred
    (weight 100) where a required one could leave a pod Pending for good (see the module docstring)."""
    out = copy.deepcopy(affinity or {})
    anti = out.setdefault("podAntiAffinity", {})
    term: Obj = {"labelSelector": {"matchLabels": {JOB_NAME_LABEL: job_name}}, "topologyKey": HOSTNAME_LABEL}
    entry: Obj
    if required:
        key, entry = "requiredDuringSchedulingIgnoredDuringExecution", term
    else:
        key, entry = "preferredDuringSchedulingIgnoredDuringExecution", {"weight": 100, "podAffinityTerm": term}
    terms = anti.setdefault(key, [])
    if entry not in terms:
        terms.append(entry)
    return out


def build(w: Workload, base_job: Obj | None, entrypoint: str | None) -> tuple[list[Obj], list[str]] | TranslateError:
    """([Service?, Job], warnings)."""
    warnings: list[str] = []
    spec: Obj = copy.deepcopy((base_job or {}).get("spec") or {})
    indexed = w.plan.indexed
    role = Role(
        where="spec.job.spec.template" if spec.get("template") is not None else "the generated pod template",
        gpus=w.plan.gpus_per_replica,
        command=shell_command(entrypoint) if entrypoint else None,
        env=rendezvous_env(w) + collective_env(w, spec.get("template")) if indexed else (),
    )
    template = mutate(spec.get("template"), w, role)
    if isinstance(template, TranslateError):
        return template
    if spec.get("backoffLimit") not in (None, 0):
        warnings.append(
            f"spec.job.spec.backoffLimit: {spec['backoffLimit']} replaced by 0 (Kaiwo jobs are not "
            f"retried by the Job controller)"
        )
    spec["backoffLimit"] = 0
    spec.setdefault("ttlSecondsAfterFinished", DEFAULT_TTL_SECONDS)
    spec["suspend"] = True
    if indexed:
        spec["completionMode"] = "Indexed"
        spec["completions"] = spec["parallelism"] = w.plan.replicas
        template["spec"]["subdomain"] = w.name
        exclusive = w.plan.exclusive_nodes
        template["spec"]["affinity"] = one_pod_per_node(template["spec"].get("affinity"), w.name, exclusive)
        if not exclusive and w.plan.gpus_per_replica:
            warnings.append(
                f"spec.gpusPerReplica: {w.plan.gpus_per_replica} GPUs per pod is at most half of a node's GPUs, so "
                f"two pods may share a node (Kueue's topology-aware placement ignores pod anti-affinity); ask for "
                f"more than half of a node's GPUs per pod to get one pod per node"
            )
    labels = {**child_labels(w.cr, w.workload_type), **queue_labels(w.queue, w.spec.priority_class)}
    spec["template"] = template
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": child_meta(w.cr, w.name, labels), "spec": spec}
    return ([headless_service(w), job] if indexed else [job]), warnings
