"""Node-pool discovery: Nodes -> GPU pools, Kueue flavors, quotas, the default ClusterQueue and Topology.

Follows upstream Kaiwo's discovery (docs/design/upstream.md#queueconfig-reconcile): a node's pool is identified by its
GPU vendor, model and count (from the AMD node labeller / NVIDIA GPU feature discovery labels) and its nominal CPU and
memory, which are 90 % of capacity. The flavor is named ``<vendor>-<model>-<N>gpu-<cpu>core-<mem>gi``
(``cpu-only-0gpu-...`` for nodes without GPUs); its quota is the sum over the pool's nodes. Cordoned nodes, and
control-plane nodes when asked, are left out.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction

from kaiwo.runtime.objects import Obj
from kaiwo.translate.quantity import GI, QuantityError, parse, to_cpu_string, to_memory_string

NOMINAL_FRACTION = Fraction(9, 10)
NODEPOOL_LABEL = "kaiwo/nodepool"
WORKER_LABEL = "kaiwo/worker"
GPU_MODEL_LABEL = "kaiwo/gpu-model"
TOPOLOGY_BLOCK_LABEL = "kaiwo/topology-block"
TOPOLOGY_RACK_LABEL = "kaiwo/topology-rack"
HOSTNAME_LABEL = "kubernetes.io/hostname"
GPU_RESOURCE = {"amd": "amd.com/gpu", "nvidia": "nvidia.com/gpu"}
CONTROL_PLANE_LABELS = ("node-role.kubernetes.io/control-plane", "node-role.kubernetes.io/master")
_AMD_NOISE = re.compile(r"instinct|radeon|_|oam|amd|series|gpu")


def amd_model(product_name: str) -> str:
    """``AMD_Instinct_MI300X_OAM`` -> ``mi300x``."""
    return _AMD_NOISE.sub("", product_name.lower())


def nvidia_model(product: str) -> str:
    """``NVIDIA-H100-80GB-HBM3`` -> ``nvidiah10080gbhbm3``."""
    return product.lower().replace("-", "")


@dataclass(frozen=True)
class NodeFacts:
    name: str
    vendor: str  # amd | nvidia | cpu
    model: str  # e.g. mi300x, or "only" for CPU nodes
    gpus: int
    cpu: int  # nominal whole cores
    memory_gi: int  # nominal GiB

    @property
    def flavor(self) -> str:
        return f"{self.vendor}-{self.model}-{self.gpus}gpu-{self.cpu}core-{self.memory_gi}gi"


def _int_label(labels: Mapping[str, str], key: str) -> int | None:
    try:
        return int(labels[key])
    except (KeyError, ValueError):
        return None


def node_facts(node: Obj) -> NodeFacts:
    """What discovery sees in one node. Capacity that cannot be parsed counts as 0."""
    meta = node["metadata"]
    labels: Mapping[str, str] = meta.get("labels") or {}
    vendor, model, gpus = "cpu", "only", 0
    if "amd.com/gpu.product-name" in labels:
        model = amd_model(labels["amd.com/gpu.product-name"])
        count = _int_label(labels, "beta.amd.com/gpu.family.AI")
        if count is not None:
            vendor, gpus = "amd", count
    if "nvidia.com/gpu.product" in labels:
        model = nvidia_model(labels["nvidia.com/gpu.product"])
        count = _int_label(labels, "nvidia.com/gpu.count")
        if count is not None:
            vendor, gpus = "nvidia", count
    if vendor == "cpu":
        model = "only"
    capacity = (node.get("status") or {}).get("capacity") or {}
    try:
        cores = math.ceil(parse(capacity.get("cpu", "0")))  # whole cores: resource.Quantity.Value() rounds up
        gib = int(parse(capacity.get("memory", "0"))) // GI
    except QuantityError:
        cores, gib = 0, 0
    return NodeFacts(meta["name"], vendor, model, gpus, int(cores * NOMINAL_FRACTION), int(gib * NOMINAL_FRACTION))


def schedulable(node: Obj, exclude_control_plane: bool) -> bool:
    if (node.get("spec") or {}).get("unschedulable"):
        return False
    labels = node["metadata"].get("labels") or {}
    return not (exclude_control_plane and any(k in labels for k in CONTROL_PLANE_LABELS))


@dataclass
class NodePool:
    flavor: str
    vendor: str
    model: str
    gpus_per_node: int
    nodes: list[str] = field(default_factory=list)
    cpu: int = 0  # summed nominal cores
    memory_gi: int = 0  # summed nominal GiB
    gpus: int = 0  # summed GPUs

    def quotas(self) -> dict[str, str]:
        q = {"cpu": to_cpu_string(Fraction(self.cpu)), "memory": to_memory_string(self.memory_gi * GI)}
        if self.gpus_per_node:
            q[GPU_RESOURCE[self.vendor]] = str(self.gpus)
        return q


def discover(nodes: Iterable[Obj], *, exclude_control_plane: bool = False) -> list[NodePool]:
    """Node pools, ordered CPU-only first, then by GPUs per node, CPU and memory (then name, for stability)."""
    pools: dict[str, NodePool] = {}
    for node in nodes:
        if not schedulable(node, exclude_control_plane):
            continue
        f = node_facts(node)
        pool = pools.setdefault(f.flavor, NodePool(f.flavor, f.vendor, f.model, f.gpus))
        pool.nodes.append(f.name)
        pool.cpu += f.cpu
        pool.memory_gi += f.memory_gi
        pool.gpus += f.gpus
    for pool in pools.values():
        pool.nodes.sort()

    def order(p: NodePool) -> tuple[int, int, int, int, str]:
        per_node = p.flavor.split("-")
        cpu = int(per_node[3].removesuffix("core"))
        mem = int(per_node[4].removesuffix("gi"))
        return (p.gpus_per_node > 0, p.gpus_per_node, cpu, mem, p.flavor)

    return sorted(pools.values(), key=order)


def node_labels(pool: NodePool) -> dict[str, str]:
    """Labels discovery puts on every node of the pool."""
    labels = {WORKER_LABEL: "true", NODEPOOL_LABEL: pool.flavor}
    if pool.gpus_per_node:
        labels[GPU_MODEL_LABEL] = pool.model
    return labels


def default_flavors(pools: Iterable[NodePool], topology_name: str) -> list[Obj]:
    """KaiwoQueueConfig ``spec.resourceFlavors`` entries for the discovered pools."""
    return [{"name": p.flavor, "nodeLabels": {NODEPOOL_LABEL: p.flavor}, "topologyName": topology_name} for p in pools]


def default_cluster_queue(pools: list[NodePool], name: str, cohort: str) -> Obj:
    """The default ClusterQueue entry: one resource group covering every resource seen, missing ones at 0."""
    covered: list[str] = []
    for p in pools:
        for r in p.quotas():
            if r not in covered:
                covered.append(r)
    flavors = []
    for p in pools:
        q = p.quotas()
        flavors.append({"name": p.flavor, "resources": [{"name": r, "nominalQuota": q.get(r, "0")} for r in covered]})
    spec: Obj = {"namespaceSelector": {}, "resourceGroups": [{"coveredResources": covered, "flavors": flavors}]}
    if cohort:
        spec["cohort"] = cohort
    return {"name": name, "namespaces": [], "spec": spec}


def default_topology(name: str) -> Obj:
    return {
        "metadata": {"name": name},
        "spec": {
            "levels": [
                {"nodeLabel": TOPOLOGY_BLOCK_LABEL},
                {"nodeLabel": TOPOLOGY_RACK_LABEL},
                {"nodeLabel": HOSTNAME_LABEL},
            ]
        },
    }
