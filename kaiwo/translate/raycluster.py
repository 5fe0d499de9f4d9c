"""The Ray cluster part shared by RayJob (``rayClusterSpec``) and RayService (``rayClusterConfig``)
(docs/design/upstream.md#gpu-maths, #kaiwojob-children).

Head: no GPUs, ``cpu: 2`` and memory KaiwoConfig ``ray.headPodMemory`` unless the container sets them (choice:
``spec.resources`` is sized for the GPU workers and is not applied to the head), rayStartParams
``dashboard-host: 0.0.0.0`` by default. Workers: every group gets replicas = minReplicas = maxReplicas = the
computed replicas (Kueue does not support Ray autoscaling, so ``enableInTreeAutoscaling`` is false) and
``gpusPerReplica`` GPUs per pod, with a 200Gi ``/dev/shm`` on generated templates. Default group:
``default-worker-group``. Images default to KaiwoConfig ``ray.defaultRayImage``.
"""

from __future__ import annotations

import copy

from kaiwo.runtime.objects import Obj
from kaiwo.translate.meta import TranslateError
from kaiwo.translate.podtemplate import Role, Workload, mutate

DEFAULT_WORKER_GROUP = "default-worker-group"


def build(w: Workload, base: Obj | None, where: str, restart_policy: str | None) -> Obj | TranslateError:
    cluster: Obj = copy.deepcopy(base or {})
    cluster["enableInTreeAutoscaling"] = False
    image = w.config.ray.default_ray_image
    head = cluster["headGroupSpec"] = dict(cluster.get("headGroupSpec") or {})
    head["rayStartParams"] = {"dashboard-host": "0.0.0.0", **(head.get("rayStartParams") or {})}
    head_template = mutate(
        head.get("template"),
        w,
        Role(
            where=f"{where}.headGroupSpec.template",
            container_name="ray-head",
            restart_policy=restart_policy,
            head=True,
            image_fallback=image,
        ),
    )
    if isinstance(head_template, TranslateError):
        return head_template
    head["template"] = head_template
    groups = []
    for i, group in enumerate(cluster.get("workerGroupSpecs") or [{"groupName": DEFAULT_WORKER_GROUP}]):
        g = copy.deepcopy(group)
        g["rayStartParams"] = g.get("rayStartParams") or {}
        g["replicas"] = g["minReplicas"] = g["maxReplicas"] = w.plan.replicas
        template = mutate(
            g.get("template"),
            w,
            Role(
                where=f"{where}.workerGroupSpecs[{i}].template",
                container_name="ray-worker",
                restart_policy=restart_policy,
                shm_size="200Gi",
                gpus=w.plan.gpus_per_replica,
                image_fallback=image,
            ),
        )
        if isinstance(template, TranslateError):
            return template
        g["template"] = template
        groups.append(g)
    cluster["workerGroupSpecs"] = groups
    return cluster
