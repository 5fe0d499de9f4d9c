"""KaiwoService with Ray -> a RayService inside a workload.codeflare.dev/v1beta2 AppWrapper
(docs/design/upstream.md#kaiwoservice-children): Kueue does not manage RayServices itself, so the AppWrapper is what
Kueue admits.

The RayService: base ``spec.rayService.spec`` plus ``serveConfigV2`` (the KaiwoService's wins) and the Ray
cluster of ``kaiwo.translate.raycluster`` as ``rayClusterConfig`` (restart policy left to KubeRay). It is the
AppWrapper's only component, with one pod set for the head (1 replica) and one per worker group (the computed
replicas). The AppWrapper carries the Kaiwo object's labels (but its queue label), the system, queue and
priority labels and the controller ownerReference; the embedded RayService carries the head template's labels,
the Kaiwo object's and the system labels (``meta.child_labels``) and no namespace (the AppWrapper's is used).
Annotations of the Kaiwo object reach the pod templates only (``podtemplate.mutate``), as for every kind.
"""

from __future__ import annotations

import copy

from kaiwo.runtime.objects import Obj
from kaiwo.translate import raycluster
from kaiwo.translate.meta import TranslateError, child_labels, child_meta, queue_labels
from kaiwo.translate.podtemplate import Workload

APPWRAPPER_API = "workload.codeflare.dev/v1beta2"
CLUSTER_PATH = "template.spec.rayClusterConfig"


def build(w: Workload, base: Obj | None, serve_config: str | None) -> tuple[list[Obj], list[str]] | TranslateError:
    spec: Obj = copy.deepcopy((base or {}).get("spec") or {})
    if serve_config:
        spec["serveConfigV2"] = serve_config
    cluster = raycluster.build(w, spec.get("rayClusterConfig"), "spec.rayService.spec.rayClusterConfig", None)
    if isinstance(cluster, TranslateError):
        return cluster
    spec["rayClusterConfig"] = cluster
    own = child_labels(w.cr, w.workload_type, cluster["headGroupSpec"]["template"]["metadata"]["labels"])
    ray_service = {
        "apiVersion": "ray.io/v1",
        "kind": "RayService",
        "metadata": {"name": w.name, "labels": dict(sorted(own.items()))},
        "spec": spec,
    }
    pod_sets = [{"path": f"{CLUSTER_PATH}.headGroupSpec.template", "replicas": 1}]
    pod_sets += [
        {"path": f"{CLUSTER_PATH}.workerGroupSpecs[{i}].template", "replicas": g["replicas"]}
        for i, g in enumerate(cluster["workerGroupSpecs"])
    ]
    labels = {**child_labels(w.cr, w.workload_type), **queue_labels(w.queue, w.spec.priority_class)}
    appwrapper = {
        "apiVersion": APPWRAPPER_API,
        "kind": "AppWrapper",
        "metadata": child_meta(w.cr, w.name, labels),
        "spec": {"components": [{"podSets": pod_sets, "template": ray_service}]},
    }
    return [appwrapper], []
