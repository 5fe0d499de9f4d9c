"""Idle-GPU reclamation, the pure part (docs/design/gpu-utilisation.md): opt-in annotations, settings, the phase
of a tracked workload, and which idle workloads to preempt for which pending demand.

Nothing here reads the cluster or a clock: kaiwo.controllers.gpuworkload passes objects from its caches and
``now`` (epoch seconds).

Demand is real pending GPU work of any kind, opted in or not:
- a Kueue Workload that has no quota reserved, asks for GPUs, and whose ClusterQueue (through its LocalQueue)
  lacks the free quota for them. Only idle workloads admitted in *that* ClusterQueue can make room (deleting
  them returns their quota to it; borrowing across a cohort is not counted);
- a pod the scheduler left ``Unschedulable`` with ``Insufficient <gpu resource>``. Only idle workloads with pods
  on one node that matches the pod's nodeSelector can make room, and only on that node.

A demand is met all or nothing: victims (idle past their grace period, longest idle first, not already
claimed) are chosen only when their GPUs cover what the demand lacks; otherwise none are. GPUs of workloads
already being preempted for a demand count towards it. The ``Always`` policy preempts any workload idle past
its grace period, demand or not.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kaiwo.api.config import KaiwoGpuPreemptionConfig
from kaiwo.api.gpuworkload import GpuWorkloadPhase
from kaiwo.gpumetrics.config import EnvDefaults
from kaiwo.runtime.objects import Obj, condition
from kaiwo.runtime.timestamps import epoch
from kaiwo.translate import quantity
from kaiwo.translate.preemption import go_duration

PREFIX = "kaiwo.silogen.ai/gpu-preemption."
GPU_RESOURCES = ("amd.com/gpu", "nvidia.com/gpu")
DEFAULT_THRESHOLD = 5.0
DEFAULT_GRACE = "10m"
DEFAULT_POLICY = "OnPressure"
DEFAULT_AGGREGATION = "Max"
DEFAULT_TTL = "24h"
# GpuWorkload spec fields set from the annotations
OVERRIDE_FIELDS = ("utilizationThreshold", "gracePeriod", "preemptionPolicy", "aggregationPolicy", "ttlAfterFinished")

# --- opt-in and settings ------------------------------------------------------------------------------------


def opted_in(namespace_annotations: Mapping[str, str], owner_annotations: Mapping[str, str]) -> dict[str, str] | None:
    """The merged ``kaiwo.silogen.ai/gpu-preemption.*`` annotations (the owner's win over the namespace's); None
    when there are none, or ``.enabled`` is "false"."""
    merged = {k: v for k, v in namespace_annotations.items() if k.startswith(PREFIX)}
    merged.update({k: v for k, v in owner_annotations.items() if k.startswith(PREFIX)})
    if not merged or merged.get(PREFIX + "enabled", "true").strip().lower() == "false":
        return None
    return merged


def spec_overrides(annotations: Mapping[str, str]) -> tuple[Obj, list[str]]:
    """GpuWorkload spec fields from the annotations, and a problem per invalid value (which is left out)."""
    spec: Obj = {}
    problems: list[str] = []

    def get(key: str) -> str | None:
        value = annotations.get(PREFIX + key)
        return value.strip() if value and value.strip() else None

    if (text := get("threshold")) is not None:
        try:
            value = float(text)
            if not 0 <= value <= 100:
                raise ValueError
            spec["utilizationThreshold"] = value
        except ValueError:
            problems.append(f"{PREFIX}threshold={text!r}: expected a percentage 0..100")
    for key, name in (("grace-period", "gracePeriod"), ("ttl", "ttlAfterFinished")):
        if (text := get(key)) is not None:
            try:
                go_duration(text)
                spec[name] = text
            except ValueError:
                problems.append(f"{PREFIX}{key}={text!r}: expected a duration such as 10m")
    for key, name, allowed in (
        ("policy", "preemptionPolicy", ("OnPressure", "Always")),
        ("aggregation", "aggregationPolicy", ("Min", "Max", "Avg")),
    ):
        if (text := get(key)) is not None:
            if text in allowed:
                spec[name] = text
            else:
                problems.append(f"{PREFIX}{key}={text!r}: expected one of {', '.join(allowed)}")
    return spec, problems


@dataclass(frozen=True)
class Settings:
    threshold: float
    grace: float  # seconds
    policy: str
    aggregation: str
    ttl: float  # seconds; 0 keeps the record forever


def resolve(spec: Obj, cfg: KaiwoGpuPreemptionConfig | None, env: EnvDefaults) -> Settings:
    """GpuWorkload spec -> KaiwoConfig ``gpuPreemption`` -> ``GPU_PREEMPTION_DEFAULT_*`` -> built-in defaults."""

    def pick(spec_key: str, cfg_value: Any, env_value: Any, default: Any) -> Any:
        for v in (spec.get(spec_key), cfg_value, env_value):
            if v is not None:
                return v
        return default

    c = cfg or KaiwoGpuPreemptionConfig()
    return Settings(
        threshold=float(pick("utilizationThreshold", c.default_threshold, env.threshold, DEFAULT_THRESHOLD)),
        grace=go_duration(pick("gracePeriod", c.default_grace_period, env.grace_period, DEFAULT_GRACE)),
        policy=str(pick("preemptionPolicy", c.default_policy, env.policy, DEFAULT_POLICY)),
        aggregation=str(pick("aggregationPolicy", c.default_aggregation, env.aggregation, DEFAULT_AGGREGATION)),
        ttl=go_duration(pick("ttlAfterFinished", c.default_ttl, env.ttl, DEFAULT_TTL)),
    )


# --- pods, workloads, phases -------------------------------------------------------------------------------


def gpu_requests(containers: Iterable[Obj]) -> dict[str, int]:
    """GPUs per resource name asked for by ``containers`` (limits win over requests, as for extended resources)."""
    out: dict[str, int] = {}
    for c in containers:
        res = c.get("resources") or {}
        for name in GPU_RESOURCES:
            value = (res.get("limits") or {}).get(name) or (res.get("requests") or {}).get(name)
            if value:
                out[name] = out.get(name, 0) + int(quantity.parse(value))
    return {k: v for k, v in out.items() if v}


def pod_gpus(pod: Obj) -> dict[str, int]:
    return gpu_requests((pod.get("spec") or {}).get("containers") or [])


def quota_pending_for_gpu(workload: Obj | None, resources: Iterable[str]) -> bool:
    """A Kueue Workload whose QuotaReserved=False message names one of ``resources``."""
    c = condition(workload, "QuotaReserved")
    if c is None or c.get("status") != "False":
        return False
    message = (c.get("message") or "").lower()
    return any(r.lower() in message for r in resources)


def unschedulable_for_gpu(pod: Obj, resources: Iterable[str]) -> bool:
    """PodScheduled=False/Unschedulable because of ``Insufficient <gpu resource>``."""
    c = condition(pod, "PodScheduled")
    if c is None or c.get("status") != "False" or c.get("reason") != "Unschedulable":
        return False
    message = (c.get("message") or "").lower()
    return any(f"insufficient {r.lower()}" in message for r in resources)


def aggregate(tracked_pods: Iterable[Obj], policy: str) -> float | None:
    """Per-pod mean utilisation over its GPUs, combined by Min, Max or Avg (2 decimals); None without samples."""
    means = []
    for tp in tracked_pods:
        values = [m["utilization"] for m in tp.get("gpuMetrics") or []]
        if values:
            means.append(sum(values) / len(values))
    if not means:
        return None
    combined = min(means) if policy == "Min" else max(means) if policy == "Max" else sum(means) / len(means)
    return round(float(combined), 2)


def phase(
    pods: list[Obj],
    owner_workload: Obj | None,
    resources: Iterable[str],
    current: str,
    util: float | None,
    threshold: float,
) -> str:
    """PendingGpu, PendingOther, Active or Idle (``current`` is kept when nothing tells otherwise)."""
    resources = list(resources)
    if not pods:
        if quota_pending_for_gpu(owner_workload, resources):
            return GpuWorkloadPhase.PENDING_GPU
        return current or GpuWorkloadPhase.PENDING_OTHER
    for p in pods:
        if (p.get("status") or {}).get("phase") == "Pending" and unschedulable_for_gpu(p, resources):
            return GpuWorkloadPhase.PENDING_GPU
    if not any((p.get("status") or {}).get("phase") == "Running" for p in pods):
        if quota_pending_for_gpu(owner_workload, resources):
            return GpuWorkloadPhase.PENDING_GPU
        return GpuWorkloadPhase.PENDING_OTHER
    # Without samples a workload is not known to be idle, so it is not: reclaiming GPUs on no evidence (an
    # exporter that lags, or labels that do not name the pod) would stop running work.
    return GpuWorkloadPhase.ACTIVE if util is None or util >= threshold else GpuWorkloadPhase.IDLE


# --- demand and victims --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Demand:
    key: str  # "Workload ns/name" or "Pod ns/name"
    resource: str
    gpus: int
    since: float
    cluster_queue: str | None = None  # Kueue demand: its ClusterQueue; pod demand: None
    node_selector: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Candidate:
    key: str  # GpuWorkload ns/name
    resource: str
    gpus: int
    idle_since: float | None  # None unless Idle
    grace: float
    policy: str
    cluster_queue: str | None  # where its Kueue Workload is admitted
    nodes: Mapping[str, int]  # node -> its GPUs there
    preempting_for: str | None = None  # set while Preempting

    def idle_past_grace(self, now: float) -> bool:
        return self.idle_since is not None and now - self.idle_since >= self.grace


@dataclass(frozen=True)
class Decision:
    victim: str  # GpuWorkload ns/name
    preempted_for: str  # demand key, or "" for the Always policy
    reason: str


def workload_gpus(workload: Obj) -> dict[str, int]:
    """GPUs per resource name a Kueue Workload asks for (all pods of all its pod sets)."""
    totals: dict[str, int] = {}
    for ps in (workload.get("spec") or {}).get("podSets") or []:
        spec = (ps.get("template") or {}).get("spec") or {}
        for name, n in gpu_requests(spec.get("containers") or []).items():
            totals[name] = totals.get(name, 0) + n * int(ps.get("count") or 1)
    return totals


def kueue_demand(workload: Obj, cluster_queue: str | None) -> list[Demand]:
    """The GPU demand of a Kueue Workload that waits for quota (none once reserved, finished or inactive)."""
    if (condition(workload, "QuotaReserved") or {}).get("status") == "True":
        return []
    if condition(workload, "Finished") or (workload.get("spec") or {}).get("active") is False or not cluster_queue:
        return []
    totals = workload_gpus(workload)
    meta = workload["metadata"]
    since = _epoch(meta.get("creationTimestamp"))
    key = f"Workload {meta.get('namespace')}/{meta['name']}"
    return [Demand(key, r, n, since, cluster_queue) for r, n in sorted(totals.items())]


def pod_demand(pod: Obj) -> list[Demand]:
    if (pod.get("status") or {}).get("phase") != "Pending" or not unschedulable_for_gpu(pod, GPU_RESOURCES):
        return []
    meta = pod["metadata"]
    key = f"Pod {meta.get('namespace')}/{meta['name']}"
    selector = (pod.get("spec") or {}).get("nodeSelector") or {}
    since = _epoch(meta.get("creationTimestamp"))
    return [Demand(key, r, n, since, None, selector) for r, n in sorted(pod_gpus(pod).items())]


def _epoch(ts: str | None) -> float:
    return epoch(ts) if ts else 0.0


def free_quota(cluster_queue: Obj) -> dict[str, int]:
    """GPUs of each resource a ClusterQueue could still reserve: nominal quota minus reservations."""
    nominal: dict[str, float] = {}
    for group in (cluster_queue.get("spec") or {}).get("resourceGroups") or []:
        for flavor in group.get("flavors") or []:
            for r in flavor.get("resources") or []:
                if r.get("name") in GPU_RESOURCES:
                    nominal[r["name"]] = nominal.get(r["name"], 0) + float(quantity.parse(r.get("nominalQuota", 0)))
    status = cluster_queue.get("status") or {}
    for flavor in status.get("flavorsReservation") or status.get("flavorsUsage") or []:
        for r in flavor.get("resources") or []:
            if r.get("name") in nominal:
                nominal[r["name"]] -= float(quantity.parse(r.get("total", 0)))
    return {k: int(v) for k, v in nominal.items()}


def free_on_nodes(nodes: Iterable[Obj], pods: Iterable[Obj]) -> dict[str, dict[str, int]]:
    """node -> GPUs per resource not requested by its pods that have not finished."""
    free: dict[str, dict[str, int]] = {}
    for n in nodes:
        alloc = (n.get("status") or {}).get("allocatable") or {}
        name = n["metadata"]["name"]
        free[name] = {r: int(quantity.parse(alloc[r])) for r in GPU_RESOURCES if alloc.get(r)}
    for p in pods:
        node = (p.get("spec") or {}).get("nodeName")
        if node in free and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
            for r, count in pod_gpus(p).items():
                if r in free[node]:
                    free[node][r] -= count
    return free


def decide(
    demands: Iterable[Demand],
    candidates: Iterable[Candidate],
    quota_free: Mapping[tuple[str, str], int],  # (ClusterQueue, resource) -> free GPUs
    nodes_free: Mapping[str, Mapping[str, int]],  # node -> resource -> free GPUs
    node_labels: Mapping[str, Mapping[str, str]],
    now: float,
) -> list[Decision]:
    """The workloads to preempt now, and for what."""
    pool = list(candidates)
    out: list[Decision] = []
    claimed: set[str] = {c.key for c in pool if c.preempting_for is not None}
    for c in pool:
        if c.policy == "Always" and c.preempting_for is None and c.idle_past_grace(now):
            out.append(Decision(c.key, "", f"idle for {now - (c.idle_since or now):.0f}s (policy Always)"))
            claimed.add(c.key)

    def eligible(d: Demand) -> list[Candidate]:
        ok = [
            c
            for c in pool
            if c.key not in claimed and c.resource == d.resource and c.policy == "OnPressure" and c.idle_past_grace(now)
        ]
        return sorted(ok, key=lambda c: (c.idle_since or now, c.key))  # longest idle first

    for d in sorted(demands, key=lambda d: (d.since, d.key)):
        freeing = [c for c in pool if c.preempting_for == d.key]
        if d.cluster_queue is not None:
            lacking = d.gpus - quota_free.get((d.cluster_queue, d.resource), 0) - sum(c.gpus for c in freeing)
            if lacking <= 0:
                continue  # quota is there (or on its way): GPUs are not what it waits for
            chosen, total = [], 0
            for c in eligible(d):
                if c.cluster_queue == d.cluster_queue:
                    chosen.append(c)
                    total += c.gpus
                    if total >= lacking:
                        break
            if total < lacking:
                continue  # all or nothing
            what = f"{d.key} waits for {d.gpus} {d.resource} in ClusterQueue {d.cluster_queue}"
        else:
            best: list[Candidate] | None = None
            best_node = ""
            for node, free in sorted(nodes_free.items()):
                labels = node_labels.get(node, {})
                if any(labels.get(k) != v for k, v in d.node_selector.items()) or d.resource not in free:
                    continue
                lacking = d.gpus - free[d.resource] - sum(c.nodes.get(node, 0) for c in freeing)
                if lacking <= 0:
                    best = None  # it fits a node already: GPUs are not what it waits for
                    break
                picked, total = [], 0
                for c in eligible(d):
                    if c.nodes.get(node):
                        picked.append(c)
                        total += c.nodes[node]
                        if total >= lacking:
                            break
                if total >= lacking and (best is None or len(picked) < len(best)):
                    best, best_node = picked, node
            if not best:
                continue
            chosen = best
            what = f"{d.key} needs {d.gpus} {d.resource} on one node ({best_node})"
        for c in chosen:
            claimed.add(c.key)
            out.append(Decision(c.key, d.key, f"idle past its grace period; {what}"))
    return out
