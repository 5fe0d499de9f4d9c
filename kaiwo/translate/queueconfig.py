"""KaiwoQueueConfig spec -> the Kueue objects Kaiwo owns (upstream-kaiwo.md §1.7/§2.10, DECISIONS 8-9).

Every object carries the label ``kaiwo.silogen.ai/managed-by: kaiwoqueueconfig`` and a controller
ownerReference to the KaiwoQueueConfig, which is how the controller knows what it may prune (objects made by
others are never touched). Facts the caller supplies: the Topology API version the cluster serves (None when
the Topology CRD is absent: topologies are skipped and flavors lose their topologyName) and the namespaces
that exist (LocalQueues are made only there).

Choices where upstream differs or is silent:
- flavor ``taints``/``tolerations`` are copied to Kueue's ``nodeTaints``/``tolerations`` (upstream dropped them);
- a flavor without ``topologyName`` gets ``kaiwo/worker: "true"`` in its nodeLabels and the default topology,
  as upstream;
- ClusterQueue quotas are reordered to follow ``coveredResources`` (Kueue requires the same order).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from kaiwo.translate.nodepools import WORKER_LABEL

Obj = dict[str, Any]
KUEUE_API = "kueue.x-k8s.io/v1beta1"
MANAGED_BY_LABEL = "kaiwo.silogen.ai/managed-by"
MANAGED_BY_VALUE = "kaiwoqueueconfig"
CLUSTER_QUEUE_FIELDS = (
    "resourceGroups",
    "cohort",
    "queueingStrategy",
    "namespaceSelector",
    "flavorFungibility",
    "preemption",
    "admissionChecks",
    "admissionChecksStrategy",
    "stopPolicy",
    "fairSharing",
)


@dataclass
class KueueObjects:
    """Desired objects in sync order: Topologies -> ResourceFlavors -> ClusterQueues -> LocalQueues -> WPCs."""

    topologies: list[Obj] = field(default_factory=list)
    resource_flavors: list[Obj] = field(default_factory=list)
    cluster_queues: list[Obj] = field(default_factory=list)
    local_queues: list[Obj] = field(default_factory=list)
    priority_classes: list[Obj] = field(default_factory=list)

    def in_order(self) -> list[tuple[str, list[Obj]]]:
        return [
            ("Topology", self.topologies),
            ("ResourceFlavor", self.resource_flavors),
            ("ClusterQueue", self.cluster_queues),
            ("LocalQueue", self.local_queues),
            ("WorkloadPriorityClass", self.priority_classes),
        ]


def owner_reference(owner: Obj) -> Obj:
    meta = owner["metadata"]
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _meta(name: str, owner: Obj, namespace: str | None = None) -> Obj:
    meta: Obj = {
        "name": name,
        "labels": {MANAGED_BY_LABEL: MANAGED_BY_VALUE},
        "ownerReferences": [owner_reference(owner)],
    }
    if namespace:
        meta["namespace"] = namespace
    return meta


def topology(t: Obj, owner: Obj, api_version: str) -> Obj:
    return {
        "apiVersion": api_version,
        "kind": "Topology",
        "metadata": _meta(t["metadata"]["name"], owner),
        "spec": {"levels": [{"nodeLabel": lvl["nodeLabel"]} for lvl in t["spec"]["levels"]]},
    }


def resource_flavor(f: Obj, owner: Obj, *, default_topology: str, topologies: bool) -> Obj:
    labels = dict(f.get("nodeLabels") or {})
    topology_name = f.get("topologyName") or ""
    if not topology_name:
        labels[WORKER_LABEL] = "true"
        topology_name = default_topology
    spec: Obj = {}
    if labels:
        spec["nodeLabels"] = labels
    if f.get("taints"):
        spec["nodeTaints"] = list(f["taints"])
    if f.get("tolerations"):
        spec["tolerations"] = list(f["tolerations"])
    if topologies and topology_name:
        spec["topologyName"] = topology_name
    return {"apiVersion": KUEUE_API, "kind": "ResourceFlavor", "metadata": _meta(f["name"], owner), "spec": spec}


def _ordered_quotas(groups: Iterable[Obj]) -> list[Obj]:
    out = []
    for g in groups:
        covered = list(g.get("coveredResources") or [])
        flavors = []
        for fl in g.get("flavors") or []:
            rank = {name: i for i, name in enumerate(covered)}
            resources = sorted(fl.get("resources") or [], key=lambda r: rank.get(r["name"], len(rank)))
            flavors.append({**fl, "resources": resources})
        out.append({**g, "coveredResources": covered, "flavors": flavors})
    return out


def cluster_queue(cq: Obj, owner: Obj) -> Obj:
    spec = {k: v for k, v in (cq.get("spec") or {}).items() if k in CLUSTER_QUEUE_FIELDS and v is not None}
    if "resourceGroups" in spec:
        spec["resourceGroups"] = _ordered_quotas(spec["resourceGroups"])
    return {"apiVersion": KUEUE_API, "kind": "ClusterQueue", "metadata": _meta(cq["name"], owner), "spec": spec}


def local_queue(name: str, namespace: str, owner: Obj) -> Obj:
    return {
        "apiVersion": KUEUE_API,
        "kind": "LocalQueue",
        "metadata": _meta(name, owner, namespace),
        "spec": {"clusterQueue": name},
    }


def priority_class(wpc: Obj, owner: Obj) -> Obj:
    obj: Obj = {
        "apiVersion": KUEUE_API,
        "kind": "WorkloadPriorityClass",
        "metadata": _meta(wpc["metadata"]["name"], owner),
        "value": wpc["value"],
    }
    if wpc.get("description"):
        obj["description"] = wpc["description"]
    return obj


def kueue_objects(
    config: Obj,
    *,
    topology_api_version: str | None,
    existing_namespaces: set[str],
    default_topology: str = "default-topology",
) -> KueueObjects:
    """Everything the KaiwoQueueConfig ``config`` asks for, as Kueue objects owned by it."""
    spec = config.get("spec") or {}
    out = KueueObjects()
    if topology_api_version:
        out.topologies = [topology(t, config, topology_api_version) for t in spec.get("topologies") or []]
    out.resource_flavors = [
        resource_flavor(f, config, default_topology=default_topology, topologies=topology_api_version is not None)
        for f in spec.get("resourceFlavors") or []
    ]
    for cq in spec.get("clusterQueues") or []:
        out.cluster_queues.append(cluster_queue(cq, config))
        for ns in sorted(set(cq.get("namespaces") or ())):
            if ns in existing_namespaces:
                out.local_queues.append(local_queue(cq["name"], ns, config))
    out.priority_classes = [priority_class(w, config) for w in spec.get("workloadPriorityClasses") or []]
    return out


def owned_by_kaiwo(obj: Obj) -> bool:
    return (obj["metadata"].get("labels") or {}).get(MANAGED_BY_LABEL) == MANAGED_BY_VALUE
