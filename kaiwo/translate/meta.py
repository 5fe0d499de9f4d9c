"""Shared pieces of the workload builders: the error value, system labels, owner references, object metadata.

Builders never raise for bad input: they return a ``TranslateError`` (reason + message naming the field),
which the controller turns into status ERROR and condition ``Schedulable=False``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from kaiwo.api import labels as L
from kaiwo.runtime.objects import Obj

# TranslateError reasons (also the Schedulable condition reason).
INVALID_SPEC: Final = "InvalidSpec"
NO_GPUS: Final = "NoGPUs"
INSUFFICIENT_GPUS: Final = "InsufficientGPUs"
UNEVEN_GPUS: Final = "UnevenGPUSplit"

_NOT_LABEL = re.compile(r"[^a-z0-9.-]+")
_LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")


@dataclass(frozen=True)
class TranslateError:
    """Why no children can be built. ``reason`` is a CamelCase condition reason; ``message`` names the field."""

    reason: str
    message: str


def sanitize_user(user: str) -> str:
    """``test@amd.com`` -> ``test-amd.com``: lower case, runs of other characters become '-', at most 63
    characters, alphanumeric at both ends (RFC 1123, as upstream)."""
    value = _NOT_LABEL.sub("-", user.lower())[:63]
    return value.strip("-.")


def system_labels(cr: Obj, workload_type: str) -> dict[str, str]:
    """``kaiwo.silogen.ai/{user,name,type,run-id}`` (+ ``managed`` when the Kaiwo object carries it)."""
    meta = cr["metadata"]
    out = {L.NAME: meta["name"], L.TYPE: workload_type, L.RUN_ID: meta["uid"]}
    user = sanitize_user((cr.get("spec") or {}).get("user") or "")
    if user:
        out[L.USER] = user
    managed = (meta.get("labels") or {}).get(L.MANAGED)
    if managed is not None:
        out[L.MANAGED] = managed
    return out


def propagated_labels(cr: Obj) -> dict[str, str]:
    """The Kaiwo object's own labels that its children inherit: all but the queue label (the child's queue is
    the resolved ``spec.clusterQueue``, set by ``queue_labels``). Builders put these under the system labels,
    so a user label can never spoof ``kaiwo.silogen.ai/*``."""
    return {k: v for k, v in (cr["metadata"].get("labels") or {}).items() if k != L.KUEUE_QUEUE_NAME}


def child_labels(cr: Obj, workload_type: str, base: dict[str, str] | None = None) -> dict[str, str]:
    """Labels of a child object's metadata: ``base`` (e.g. the pod template's
    labels), then the Kaiwo object's labels where ``base`` has no such key, then the system labels, which win."""
    out = dict(base or {})
    for k, v in propagated_labels(cr).items():
        out.setdefault(k, v)
    out.update(system_labels(cr, workload_type))
    return out


def queue_labels(queue: str, priority_class: str | None) -> dict[str, str]:
    out = {L.KUEUE_QUEUE_NAME: queue}
    if priority_class:
        out[L.KUEUE_PRIORITY_CLASS] = priority_class
    return out


def owner_reference(cr: Obj) -> Obj:
    meta = cr["metadata"]
    return {
        "apiVersion": cr["apiVersion"],
        "kind": cr["kind"],
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def child_meta(cr: Obj, name: str, labels: dict[str, str]) -> Obj:
    """Metadata of a child: name, the parent's namespace, sorted labels and a controller ownerReference."""
    meta: Obj = {"name": name}
    namespace = cr["metadata"].get("namespace")
    if namespace:
        meta["namespace"] = namespace
    meta["labels"] = dict(sorted(labels.items()))
    meta["ownerReferences"] = [owner_reference(cr)]
    return meta
