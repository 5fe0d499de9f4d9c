"""GPU node taints: KaiwoConfig ``nodes.addTaintsToGpuNodes`` (docs/design/gpu-utilisation.md).

When it is set, every node with allocatable ``amd.com/gpu`` or ``nvidia.com/gpu`` carries the taint
``<nodes.defaultGpuTaintKey>=true:NoSchedule``, which the pods Kaiwo generates with GPUs tolerate
(kaiwo.translate.podtemplate): pods without GPUs stay off GPU nodes. When it is unset (or the key changes), the
taint this controller added is removed. The node annotation ``kaiwo.silogen.ai/gpu-taint`` records which key was
added, so taints of the same key put there by an administrator are never removed.

Taints are an atomic list in the Node API, so they are written by a merge patch of the whole list carrying the
node's resourceVersion (a concurrent change of the node makes it fail with a conflict, and it is retried).
"""

from __future__ import annotations

import logging

from kaiwo.controllers import settings
from kaiwo.runtime.builder import ControllerSpec, For, Watches, build
from kaiwo.runtime.client import Client
from kaiwo.runtime.controller import Controller, Request, Result
from kaiwo.runtime.informer import Informer
from kaiwo.runtime.manager import Manager
from kaiwo.runtime.objects import Obj

log = logging.getLogger(__name__)
ANNOTATION = "kaiwo.silogen.ai/gpu-taint"
GPU_RESOURCES = ("amd.com/gpu", "nvidia.com/gpu")


def is_gpu_node(node: Obj) -> bool:
    alloc = (node.get("status") or {}).get("allocatable") or {}
    return any(str(alloc.get(r) or "0") not in ("0", "") for r in GPU_RESOURCES)


def desired_patch(node: Obj, enabled: bool, key: str) -> Obj | None:
    """The merge patch that makes ``node``'s taints right, or None when they already are."""
    meta = node["metadata"]
    current: list[Obj] = list((node.get("spec") or {}).get("taints") or [])
    added = (meta.get("annotations") or {}).get(ANNOTATION)
    want = key if enabled and is_gpu_node(node) else None

    def ours(t: Obj, k: str | None) -> bool:
        return t.get("key") == k and t.get("effect") == "NoSchedule"

    taints = [t for t in current if not (added and added != want and ours(t, added))]
    record = want
    if want and not any(ours(t, want) for t in taints):
        taints.append({"key": want, "value": "true", "effect": "NoSchedule"})
    elif want and added != want:
        record = None  # the taint was there already (an administrator's): not ours to remove later
    if taints == current and record == added:
        return None
    return {
        "metadata": {"resourceVersion": meta.get("resourceVersion"), "annotations": {ANNOTATION: record}},
        "spec": {"taints": taints or None},
    }


class NodeTaints:
    def __init__(self, client: Client, nodes: Informer, configs: Informer | None) -> None:
        self.client = client
        self.nodes = nodes
        self.configs = configs

    async def reconcile(self, req: Request) -> Result | None:
        node = self.nodes.get_by(req.name)
        if node is None:
            return None
        cfg = settings.current(self.configs).nodes
        patch = desired_patch(node, cfg.add_taints_to_gpu_nodes, cfg.default_gpu_taint_key)
        if patch is None:
            return None
        await self.client.patch("v1", "Node", req.name, patch, patch_type="merge")
        log.info(
            "node %s: GPU taint %s", req.name, "set" if patch["metadata"]["annotations"][ANNOTATION] else "removed"
        )
        return None


# --- wiring ------------------------------------------------------------------------------------------------


def taints_may_change(old: Obj, new: Obj) -> bool:
    """Only a node's spec, annotations or GPU capacity decide its taints (status heartbeats do not)."""
    return (
        old.get("spec") != new.get("spec")
        or old["metadata"].get("annotations") != new["metadata"].get("annotations")
        or is_gpu_node(old) != is_gpu_node(new)
    )


def every_node(r: NodeTaints, _: Obj) -> list[Request]:
    """The KaiwoConfig changed: every node's taints may have to change."""
    return [Request(None, n["metadata"]["name"]) for n in r.nodes.objects()]


SPEC = ControllerSpec(
    "gpu-node-taints",
    (
        For("v1", "Node", predicate=taints_may_change),
        Watches(settings.KAIWO_CONFIG_API, "KaiwoConfig", mapper=every_node),
    ),
    workers=1,
)


async def setup(manager: Manager) -> Controller:
    ctrl, _ = await build(
        manager, SPEC, lambda sources: NodeTaints(manager.client, sources["Node"], sources["KaiwoConfig"])
    )
    return ctrl
