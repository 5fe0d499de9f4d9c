"""KaiwoQueueConfig spec -> the Kueue objects Kaiwo owns (docs/design/upstream.md#queueconfig-spec,
#queueconfig-reconcile, docs/design/decisions.md D8-D9).

Every object carries the label ``kaiwo.silogen.ai/managed-by: kaiwoqueueconfig`` and a controller
ownerReference to the KaiwoQueueConfig, which is how the controller knows what it may prune (objects made by
others are never touched). Facts the caller supplies: the Topology API version the cluster serves (None when
the Topology CRD is absent: topologies are skipped and flavors lose their topologyName) and the namespaces
that exist (LocalQueues are made only there).

Choices where upstream differs or is silent:
- flavor ``taints``/``tolerations`` are copied to Kueue's ``nodeTaints``/``tolerations`` (upstream dropped them;
  docs/design/decisions.md D25);
- a flavor without ``topologyName`` gets ``kaiwo/worker: "true"`` in its nodeLabels and the default topology,
  as upstream;
- ClusterQueue quotas are reordered to follow ``coveredResources`` (Kueue requires the same order).

Kueue API version: objects are written in ``KUEUE_API`` (``v1beta2``, Kueue's storage version, so reads and
writes need no conversion webhook and keep working while Kueue is down). A cluster whose Kueue serves only
``v1beta1`` gets ``v1beta1`` objects (the controllers' Kueue sources list ``KUEUE_APIS``; the first served
wins, kaiwo.runtime.builder). The KaiwoQueueConfig's ClusterQueue spec keeps the ``v1beta1`` shape users
know; for ``v1beta2`` it is converted as Kueue's own conversion does: ``cohort`` -> ``cohortName``,
``admissionChecks`` -> ``admissionChecksStrategy.admissionChecks[].name``, flavor fungibility
``Borrow``/``Preempt`` -> ``MayStopSearch``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from kaiwo.runtime.objects import Obj
from kaiwo.translate.nodepools import WORKER_LABEL

KUEUE_GROUP = "kueue.x-k8s.io"
KUEUE_API = f"{KUEUE_GROUP}/v1beta2"  # the version everything Kueue-related is read and written in
KUEUE_V1BETA1 = f"{KUEUE_GROUP}/v1beta1"  # the fallback for a Kueue older than 0.15 (no v1beta2)
KUEUE_APIS = (KUEUE_API, KUEUE_V1BETA1)  # in order of preference
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


def resource_flavor(
    f: Obj, owner: Obj, *, default_topology: str, topologies: bool, api_version: str = KUEUE_API
) -> Obj:
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
    return {"apiVersion": api_version, "kind": "ResourceFlavor", "metadata": _meta(f["name"], owner), "spec": spec}


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


def to_v1beta2(spec: Obj) -> Obj:
    """A ClusterQueue spec in ``v1beta1`` shape -> ``v1beta2`` (as Kueue's conversion webhook converts it)."""
    out = dict(spec)
    cohort = out.pop("cohort", None)
    if cohort:
        out["cohortName"] = cohort
    checks = out.pop("admissionChecks", None)
    if checks:
        strategy = dict(out.get("admissionChecksStrategy") or {})
        strategy["admissionChecks"] = [{"name": name} for name in checks]
        out["admissionChecksStrategy"] = strategy
    fungibility = out.get("flavorFungibility")
    if fungibility:
        renamed = {"Borrow": "MayStopSearch", "Preempt": "MayStopSearch"}
        out["flavorFungibility"] = {k: renamed.get(v, v) if isinstance(v, str) else v for k, v in fungibility.items()}
    return out


def cluster_queue(cq: Obj, owner: Obj, api_version: str = KUEUE_API) -> Obj:
    spec = {k: v for k, v in (cq.get("spec") or {}).items() if k in CLUSTER_QUEUE_FIELDS and v is not None}
    if "resourceGroups" in spec:
        spec["resourceGroups"] = _ordered_quotas(spec["resourceGroups"])
    if api_version != KUEUE_V1BETA1:
        spec = to_v1beta2(spec)
    return {"apiVersion": api_version, "kind": "ClusterQueue", "metadata": _meta(cq["name"], owner), "spec": spec}


def local_queue(name: str, namespace: str, owner: Obj, api_version: str = KUEUE_API) -> Obj:
    return {
        "apiVersion": api_version,
        "kind": "LocalQueue",
        "metadata": _meta(name, owner, namespace),
        "spec": {"clusterQueue": name},
    }


def priority_class(wpc: Obj, owner: Obj, api_version: str = KUEUE_API) -> Obj:
    obj: Obj = {
        "apiVersion": api_version,
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
    kueue_api: str = KUEUE_API,
) -> KueueObjects:
    """Everything the KaiwoQueueConfig ``config`` asks for, as Kueue objects (of ``kueue_api``) owned by it."""
    spec = config.get("spec") or {}
    out = KueueObjects()
    if topology_api_version:
        out.topologies = [topology(t, config, topology_api_version) for t in spec.get("topologies") or []]
    out.resource_flavors = [
        resource_flavor(
            f,
            config,
            default_topology=default_topology,
            topologies=topology_api_version is not None,
            api_version=kueue_api,
        )
        for f in spec.get("resourceFlavors") or []
    ]
    for cq in spec.get("clusterQueues") or []:
        out.cluster_queues.append(cluster_queue(cq, config, kueue_api))
        for ns in sorted(set(cq.get("namespaces") or ())):
            if ns in existing_namespaces:
                out.local_queues.append(local_queue(cq["name"], ns, config, kueue_api))
    out.priority_classes = [priority_class(w, config, kueue_api) for w in spec.get("workloadPriorityClasses") or []]
    return out


def references(kind: str, obj: Obj) -> list[tuple[str, str]]:
    """The Kueue objects ``obj`` names, as (kind, name): a ResourceFlavor its Topology, a ClusterQueue its
    flavors, a LocalQueue its ClusterQueue. Kueue keeps a referenced object alive (its ``resource-in-use``
    finalizer), so a new reference to one that is being deleted would keep it terminating for ever."""
    spec = obj.get("spec") or {}
    if kind == "ResourceFlavor" and spec.get("topologyName"):
        return [("Topology", spec["topologyName"])]
    if kind == "ClusterQueue":
        return [
            ("ResourceFlavor", f["name"])
            for group in spec.get("resourceGroups") or []
            for f in group.get("flavors") or []
            if f.get("name")
        ]
    if kind == "LocalQueue" and spec.get("clusterQueue"):
        return [("ClusterQueue", spec["clusterQueue"])]
    return []


def owned_by_kaiwo(obj: Obj) -> bool:
    return (obj["metadata"].get("labels") or {}).get(MANAGED_BY_LABEL) == MANAGED_BY_VALUE
