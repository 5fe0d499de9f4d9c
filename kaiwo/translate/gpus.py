"""GPU maths: how many pods (replicas) and GPUs per pod a workload gets (docs/design/upstream.md#gpu-maths,
docs/design/decisions.md D5).

Input: the workload's ``gpus``/``replicas``/``gpusPerReplica`` and the GPU node pools of its vendor.
Output: a ``Plan`` or a ``TranslateError`` that says what would fit. GPUs are never silently reduced.

Rules:
- ``requested = max(gpus, replicas * gpusPerReplica)``; 0 -> ``replicas`` pods without GPUs.
- explicit ``replicas`` and ``gpusPerReplica`` are used as given when some pool has nodes with at least
  ``gpusPerReplica`` GPUs and enough of them for one pod per node; otherwise InsufficientGPUs.
- otherwise (upstream) ``perNode`` = the smallest GPUs-per-node of the vendor's pools, ``replicas =
  ceil(requested / perNode)``, ``gpusPerReplica = requested / replicas``. When that division is not exact the
  result is an UnevenGPUSplit error naming the nearest totals that split evenly (upstream rounded down).
- no GPU nodes of the vendor -> NoGPUs; more GPUs than the vendor's nodes have -> InsufficientGPUs.
Allocatable GPUs (upstream's second source) are not used (docs/design/decisions.md D18): capacity is what the node pools
describe, and Kueue quota decides when the GPUs are free.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from kaiwo.translate.meta import INSUFFICIENT_GPUS, NO_GPUS, UNEVEN_GPUS, TranslateError
from kaiwo.translate.nodepools import NodePool


@dataclass(frozen=True)
class GpuPool:
    """``nodes`` nodes of ``vendor`` with ``gpus_per_node`` GPUs each."""

    vendor: str
    gpus_per_node: int
    nodes: int


@dataclass(frozen=True)
class Plan:
    gpus: int  # total
    replicas: int
    gpus_per_replica: int
    resource_key: str  # e.g. amd.com/gpu
    # Every pod needs more than half of the GPUs of any node of its vendor, so no two pods can share a node,
    # whoever places them (the scheduler, or Kueue's topology-aware scheduling, which ignores pod affinity).
    exclusive_nodes: bool = False

    @property
    def indexed(self) -> bool:
        """A batch Job with more than one pod runs as an Indexed Job (docs/design/decisions.md D5)."""
        return self.replicas > 1


def gpu_pools(pools: Iterable[NodePool]) -> tuple[GpuPool, ...]:
    """The GPU pools among discovered node pools."""
    return tuple(GpuPool(p.vendor, p.gpus_per_node, len(p.nodes)) for p in pools if p.gpus_per_node > 0)


def _describe(pools: list[GpuPool]) -> str:
    return ", ".join(f"{p.nodes} nodes x {p.gpus_per_node}" for p in sorted(pools, key=lambda p: -p.gpus_per_node))


def plan(
    *,
    gpus: int,
    replicas: int,
    gpus_per_replica: int | None,
    vendor: str,
    resource_key: str,
    pools: Iterable[GpuPool],
) -> Plan | TranslateError:
    vendor = vendor.lower()
    per = gpus_per_replica or 0
    requested = max(gpus, replicas * per)
    if requested == 0:
        return Plan(0, replicas, 0, resource_key)
    mine = [p for p in pools if p.vendor == vendor and p.nodes > 0]
    total = sum(p.gpus_per_node * p.nodes for p in mine)
    if total == 0:
        return TranslateError(
            NO_GPUS, f"spec.gpus: {requested} {vendor} GPUs requested but the cluster has no {vendor} GPU nodes"
        )
    if requested > total:
        return TranslateError(
            INSUFFICIENT_GPUS,
            f"spec.gpus: {requested} {vendor} GPUs requested but the cluster has {total} ({_describe(mine)} GPUs)",
        )
    if replicas > 0 and per > 0:
        nodes_fitting = sum(p.nodes for p in mine if p.gpus_per_node >= per)
        if nodes_fitting < replicas:
            biggest = max(p.gpus_per_node for p in mine)
            return TranslateError(
                INSUFFICIENT_GPUS,
                f"spec.gpusPerReplica: {replicas} replicas x {per} {vendor} GPUs need {replicas} nodes with at "
                f"least {per} GPUs; the cluster has {nodes_fitting} (nodes have at most {biggest} GPUs: "
                f"{_describe(mine)})",
            )
        return Plan(requested, replicas, per, resource_key, 2 * per > max(p.gpus_per_node for p in mine))
    per_node = min(p.gpus_per_node for p in mine)
    count = -(-requested // per_node)
    share = requested // count
    if share * count != requested:
        low = share * count
        options = [f"{low} ({count} x {share})"] if low else []
        if share + 1 <= per_node:
            options.append(f"{(share + 1) * count} ({count} x {share + 1})")
        return TranslateError(
            UNEVEN_GPUS,
            f"spec.gpus: {requested} {vendor} GPUs cannot be split evenly over {count} pods of at most {per_node} "
            f"GPUs (one per node); use {' or '.join(options)}, or set replicas and gpusPerReplica",
        )
    return Plan(requested, count, share, resource_key, 2 * share > max(p.gpus_per_node for p in mine))
