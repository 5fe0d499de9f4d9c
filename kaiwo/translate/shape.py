"""Shape checks of the embedded Kubernetes objects (``spec.job``, ``spec.rayJob``, ``spec.deployment``,
``spec.rayService``).

The CRD keeps these unvalidated (``x-kubernetes-preserve-unknown-fields``), so a spec such as ``template: 17``
reaches the builders. ``embedded_error(spec)`` walks the parts the builders read and returns a
``TranslateError`` naming the first field of the wrong type, before any builder touches it. Fields the builders
do not read pass through untouched: the apiserver validates the child when it is applied, and its rejection
becomes ``SpecApplied=False`` naming the child. ``null`` counts as absent everywhere (the builders treat it so).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kaiwo.runtime.objects import Obj
from kaiwo.translate.meta import INVALID_SPEC, TranslateError


@dataclass(frozen=True)
class Scalar:
    types: tuple[type, ...]
    name: str

    def error(self, value: Any, path: str) -> str | None:
        if isinstance(value, bool) and bool not in self.types:
            return f"{path}: must be {self.name}, not {value!r}"
        return None if isinstance(value, self.types) else f"{path}: must be {self.name}, not {_show(value)}"


@dataclass(frozen=True)
class Fields:
    """An object; the listed fields are checked when present."""

    fields: dict[str, Shape] = field(default_factory=dict)

    def error(self, value: Any, path: str) -> str | None:
        if not isinstance(value, dict):
            return f"{path}: must be an object, not {_show(value)}"
        for name, shape in self.fields.items():
            item = value.get(name)
            if item is not None:
                problem = shape.error(item, f"{path}.{name}")
                if problem:
                    return problem
        return None


@dataclass(frozen=True)
class ListOf:
    item: Shape

    def error(self, value: Any, path: str) -> str | None:
        if not isinstance(value, list):
            return f"{path}: must be a list, not {_show(value)}"
        for i, item in enumerate(value):
            problem = self.item.error(item, f"{path}[{i}]")
            if problem:
                return problem
        return None


@dataclass(frozen=True)
class MapOf:
    """An object whose values all have one shape (labels, annotations, resource quantities)."""

    value: Shape

    def error(self, value: Any, path: str) -> str | None:
        if not isinstance(value, dict):
            return f"{path}: must be an object, not {_show(value)}"
        for key, item in value.items():
            problem = self.value.error(item, f"{path}[{key!r}]")
            if problem:
                return problem
        return None


Shape = Scalar | Fields | ListOf | MapOf


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    return repr(value)[:40]


STRING = Scalar((str,), "a string")
INTEGER = Scalar((int,), "an integer")
QUANTITY = Scalar((str, int, float), "a quantity (a string or number)")
NAMED = Fields({"name": STRING})
CONTAINER = Fields(
    {
        "name": STRING,
        "image": STRING,
        "command": ListOf(STRING),
        "args": ListOf(STRING),
        "env": ListOf(NAMED),
        "volumeMounts": ListOf(NAMED),
        "resources": Fields({"requests": MapOf(QUANTITY), "limits": MapOf(QUANTITY)}),
    }
)
NODE_AFFINITY = Fields(
    {
        "requiredDuringSchedulingIgnoredDuringExecution": Fields(
            {"nodeSelectorTerms": ListOf(Fields({"matchExpressions": ListOf(Fields())}))}
        )
    }
)
POD_TEMPLATE = Fields(
    {
        "metadata": Fields({"labels": MapOf(STRING), "annotations": MapOf(STRING)}),
        "spec": Fields(
            {
                "containers": ListOf(CONTAINER),
                "initContainers": ListOf(CONTAINER),
                "volumes": ListOf(NAMED),
                "imagePullSecrets": ListOf(NAMED),
                "tolerations": ListOf(Fields()),
                "affinity": Fields({"nodeAffinity": NODE_AFFINITY}),
                "restartPolicy": STRING,
                "schedulerName": STRING,
            }
        ),
    }
)
RAY_GROUP = Fields({"groupName": STRING, "rayStartParams": MapOf(STRING), "template": POD_TEMPLATE})
RAY_CLUSTER = Fields({"headGroupSpec": RAY_GROUP, "workerGroupSpecs": ListOf(RAY_GROUP)})
JOB = Fields(
    {
        "spec": Fields(
            {
                "template": POD_TEMPLATE,
                "backoffLimit": INTEGER,
                "ttlSecondsAfterFinished": INTEGER,
                "parallelism": INTEGER,
                "completions": INTEGER,
            }
        )
    }
)
RAY_JOB = Fields(
    {
        "spec": Fields(
            {
                "entrypoint": STRING,
                "submissionMode": STRING,
                "rayClusterSpec": RAY_CLUSTER,
                "backoffLimit": INTEGER,
            }
        )
    }
)
DEPLOYMENT = Fields({"spec": Fields({"template": POD_TEMPLATE, "replicas": INTEGER})})
RAY_SERVICE = Fields({"spec": Fields({"rayClusterConfig": RAY_CLUSTER, "serveConfigV2": STRING})})
EMBEDDED = {"job": JOB, "rayJob": RAY_JOB, "deployment": DEPLOYMENT, "rayService": RAY_SERVICE}


def embedded_error(spec: Obj) -> TranslateError | None:
    """The first wrongly typed field the builders would read in the embedded objects of a Kaiwo spec."""
    for name, shape in EMBEDDED.items():
        value = spec.get(name)
        if value is not None:
            problem = shape.error(value, f"spec.{name}")
            if problem:
                return TranslateError(INVALID_SPEC, problem)
    return None
