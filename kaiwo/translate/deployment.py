"""KaiwoService (not Ray) -> apps/v1 Deployment (docs/design/upstream.md#kaiwoservice-children).

Base ``spec.deployment.spec`` or a generated template. ``replicas`` = the computed replicas, each pod with
``gpusPerReplica`` GPUs; selector ``app=<name>`` and template label ``app=<name>``; restartPolicy Always; the
queue and priority labels on the pod template (Kueue's pod integration makes each pod its own Workload);
Deployment labels = the template's labels, the Kaiwo object's own, then the system labels
(``meta.child_labels``). The entrypoint becomes container[0]'s
command. No Service is created (as upstream).
"""

from __future__ import annotations

import copy

from kaiwo.runtime.objects import Obj
from kaiwo.translate.entrypoint import shell_command
from kaiwo.translate.meta import TranslateError, child_labels, child_meta, queue_labels
from kaiwo.translate.podtemplate import Role, Workload, mutate


def build(w: Workload, base: Obj | None, entrypoint: str | None) -> tuple[list[Obj], list[str]] | TranslateError:
    spec: Obj = copy.deepcopy((base or {}).get("spec") or {})
    role = Role(
        where="spec.deployment.spec.template" if spec.get("template") is not None else "the generated pod template",
        restart_policy="Always",
        gpus=w.plan.gpus_per_replica,
        command=shell_command(entrypoint) if entrypoint else None,
        labels={"app": w.name, **queue_labels(w.queue, w.spec.priority_class)},
    )
    template = mutate(spec.get("template"), w, role)
    if isinstance(template, TranslateError):
        return template
    template["spec"]["restartPolicy"] = "Always"
    spec["template"] = template
    spec["replicas"] = w.plan.replicas
    spec["selector"] = {"matchLabels": {"app": w.name}}
    labels = child_labels(w.cr, w.workload_type, template["metadata"]["labels"])
    return [
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": child_meta(w.cr, w.name, labels), "spec": spec}
    ], []
