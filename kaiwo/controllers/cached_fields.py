"""What the operator's caches keep of the bulky kinds (docs/design/runtime.md#cache-memory).

With 10,000 workloads the caches hold 10,000 each of KaiwoJobs, Jobs, Kueue Workloads and pods, as Python
dicts (several times their JSON size). Most of a Job's or a Workload's bytes are a pod template that no
controller reads from the cache, so each object is trimmed as it arrives (the informer's ``transform``).

Invariant: a transform only removes fields, and never one that a reconciler, mapper, predicate, index or
metrics collector reads from a cache. What they read, by kind:
- Job and Deployment: metadata (the desired-state hash annotation, ``kaiwo/runtime/apply.py``; owners;
  labels), ``spec.suspend``/``replicas`` and the other scalar spec fields, ``status``. The pod template is never
  compared: an unchanged desired state is recognised by its hash, so ``spec.template`` goes.
- Kueue Workload: metadata, ``status`` (admission, conditions), ``spec.queueName``/``active``/``priority``,
  and of each pod set its name, count and its containers' resources (GPU demand,
  ``kaiwo/gpumetrics/reclaim.py``). The rest of each pod set's template goes.
- Pod: everything except, per container and init container, what is not its name or resources (GPU
  requests: ``controllers/metrics.py``, ``gpumetrics/reclaim.py``), and ``spec.volumes``. Pod status, node,
  scheduling gates, tolerations and owners stay.
Kinds not listed are cached whole. A new read of a trimmed field must be added here first.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from kaiwo.runtime.objects import Obj

KEPT_CONTAINER_FIELDS = ("name", "resources")


def _containers(containers: list[Obj] | None) -> list[Obj] | None:
    if not containers:
        return containers
    return [{k: c[k] for k in KEPT_CONTAINER_FIELDS if k in c} for c in containers]


def _pod_spec(spec: Obj) -> None:
    """Trim a pod spec in place: containers keep their name and resources; volumes go."""
    for key in ("containers", "initContainers"):
        if key in spec:
            spec[key] = _containers(spec[key])
    spec.pop("volumes", None)


def without_template(obj: Obj) -> Obj:
    spec = obj.get("spec")
    if isinstance(spec, dict):
        spec.pop("template", None)
    return obj


def workload(obj: Obj) -> Obj:
    for pod_set in (obj.get("spec") or {}).get("podSets") or []:
        template = pod_set.get("template")
        if isinstance(template, dict):
            pod_spec = template.get("spec") or {}
            pod_set["template"] = {"spec": {k: pod_spec[k] for k in ("containers", "initContainers") if k in pod_spec}}
            _pod_spec(pod_set["template"]["spec"])
    return obj


def pod(obj: Obj) -> Obj:
    spec = obj.get("spec")
    if isinstance(spec, dict):
        _pod_spec(spec)
    return obj


# (API group, kind) -> transform, for the manager's ``ManagerOptions.transforms``
TRANSFORMS: Mapping[tuple[str, str], Callable[[Obj], Obj]] = {
    ("batch", "Job"): without_template,
    ("apps", "Deployment"): without_template,
    ("kueue.x-k8s.io", "Workload"): workload,
    ("", "Pod"): pod,
}
