"""Hypothesis strategies for embedded Job/Deployment/RayJob/RayService specs: arbitrary JSON built from the
Kubernetes field names the translate builders read, and valid specs with one node replaced by such JSON."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import strategies as st

from kaiwo.runtime.objects import Obj

FIELDS = [
    "spec",
    "template",
    "metadata",
    "labels",
    "annotations",
    "containers",
    "initContainers",
    "name",
    "image",
    "env",
    "value",
    "volumeMounts",
    "mountPath",
    "resources",
    "requests",
    "limits",
    "cpu",
    "memory",
    "volumes",
    "affinity",
    "nodeAffinity",
    "requiredDuringSchedulingIgnoredDuringExecution",
    "nodeSelectorTerms",
    "matchExpressions",
    "tolerations",
    "imagePullSecrets",
    "headGroupSpec",
    "workerGroupSpecs",
    "rayStartParams",
    "rayClusterSpec",
    "rayClusterConfig",
    "entrypoint",
    "submissionMode",
    "backoffLimit",
    "ttlSecondsAfterFinished",
    "restartPolicy",
    "replicas",
    "groupName",
    "serveConfigV2",
    "command",
    "args",
    "parallelism",
    "completions",
    "selector",
]
SCALARS = st.none() | st.booleans() | st.integers(-3, 100) | st.floats(allow_nan=False, width=32) | st.text(max_size=4)
JSON = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=3), inner, max_size=4)
    ),
    max_leaves=12,
)
TEMPLATE: Obj = {
    "metadata": {"labels": {"team": "a"}, "annotations": {"note": "x"}},
    "spec": {
        "containers": [
            {
                "name": "main",
                "image": "busybox",
                "command": ["sh"],
                "env": [{"name": "A", "value": "1"}],
                "volumeMounts": [{"name": "v", "mountPath": "/v"}],
                "resources": {"requests": {"cpu": "1"}, "limits": {"memory": "1Gi"}},
            }
        ],
        "initContainers": [{"name": "init", "image": "busybox"}],
        "volumes": [{"name": "v", "emptyDir": {}}],
        "imagePullSecrets": [{"name": "s"}],
        "tolerations": [{"key": "k", "operator": "Exists"}],
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchExpressions": [{"key": "k", "operator": "Exists"}]}]
                }
            }
        },
        "restartPolicy": "Never",
    },
}
RAY_CLUSTER: Obj = {
    "headGroupSpec": {"rayStartParams": {"num-cpus": "1"}, "template": copy.deepcopy(TEMPLATE)},
    "workerGroupSpecs": [{"groupName": "g", "rayStartParams": {}, "template": copy.deepcopy(TEMPLATE)}],
}
VALID: dict[str, Obj] = {
    "job": {"spec": {"template": copy.deepcopy(TEMPLATE), "backoffLimit": 0, "ttlSecondsAfterFinished": 10}},
    "rayJob": {"spec": {"entrypoint": "python x.py", "rayClusterSpec": copy.deepcopy(RAY_CLUSTER)}},
    "deployment": {"spec": {"template": copy.deepcopy(TEMPLATE), "replicas": 1}},
    "rayService": {"spec": {"rayClusterConfig": copy.deepcopy(RAY_CLUSTER), "serveConfigV2": "applications: []"}},
}
KIND_OF = {"job": "KaiwoJob", "rayJob": "KaiwoJob", "deployment": "KaiwoService", "rayService": "KaiwoService"}


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*prefix, i))
    return out


@st.composite
def mutated(draw: st.DrawFn, field: str) -> Obj:
    """``VALID[field]`` with one node (not the root) replaced by arbitrary JSON."""
    obj = copy.deepcopy(VALID[field])
    path = draw(st.sampled_from(_paths(obj)[1:]))
    node = obj
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = draw(JSON)
    return obj
