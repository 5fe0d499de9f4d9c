"""KaiwoJob with Ray -> ray.io/v1 RayJob (docs/design/upstream.md#kaiwojob-children).

Base ``spec.rayJob.spec`` or empty; ``entrypoint`` (trimmed, line continuations joined) replaces the base's;
``shutdownAfterJobFinishes: true`` and ``backoffLimit: 0`` (forced: Kueue requires the first, Kaiwo does not
retry); ``suspend: true`` (Kueue admits by un-suspending); the Ray cluster of ``kaiwo.translate.raycluster``
with restartPolicy Never on generated templates. Labels: the head template's labels, the Kaiwo object's own
(``meta.child_labels``), then system, queue and priority labels. A RayJob without any entrypoint (and not
in InteractiveMode) is InvalidSpec.
"""

from __future__ import annotations

import copy

from kaiwo.runtime.objects import Obj
from kaiwo.translate import raycluster
from kaiwo.translate.entrypoint import ray_entrypoint
from kaiwo.translate.meta import INVALID_SPEC, TranslateError, child_labels, child_meta, queue_labels
from kaiwo.translate.podtemplate import Workload


def build(w: Workload, base: Obj | None, entrypoint: str | None) -> tuple[list[Obj], list[str]] | TranslateError:
    warnings: list[str] = []
    spec: Obj = copy.deepcopy((base or {}).get("spec") or {})
    if entrypoint and entrypoint.strip():
        spec["entrypoint"] = ray_entrypoint(entrypoint)
    if not spec.get("entrypoint") and spec.get("submissionMode") != "InteractiveMode":
        return TranslateError(
            INVALID_SPEC,
            "spec.entrypoint: a Ray job needs an entrypoint (spec.entrypoint or spec.rayJob.spec.entrypoint)",
        )
    cluster = raycluster.build(w, spec.get("rayClusterSpec"), "spec.rayJob.spec.rayClusterSpec", "Never")
    if isinstance(cluster, TranslateError):
        return cluster
    spec["rayClusterSpec"] = cluster
    if spec.get("backoffLimit") not in (None, 0):
        warnings.append(f"spec.rayJob.spec.backoffLimit: {spec['backoffLimit']} replaced by 0")
    spec["backoffLimit"] = 0
    spec["shutdownAfterJobFinishes"] = True
    spec["suspend"] = True
    labels = {
        **child_labels(w.cr, w.workload_type, cluster["headGroupSpec"]["template"]["metadata"]["labels"]),
        **queue_labels(w.queue, w.spec.priority_class),
    }
    return [
        {"apiVersion": "ray.io/v1", "kind": "RayJob", "metadata": child_meta(w.cr, w.name, labels), "spec": spec}
    ], warnings
