"""Idle-GPU reclamation: the GpuWorkload controller (docs/design/gpu-utilisation.md).

Switched on by ``--gpu-preemption`` (``GPU_PREEMPTION_ENABLED=true``). Four parts share the caches, all running
only while this replica leads:

- **discovery** (key: a GPU pod, or a Kueue Workload asking for GPUs, whose workload has no pods while it
  waits). For a pod asking for ``amd.com/gpu`` or ``nvidia.com/gpu`` it walks the
  controller ownerReferences up to the root owner (at most 10 steps, GETs of the owners), merges the
  ``kaiwo.silogen.ai/gpu-preemption.*`` annotations of the namespace and the root owner (the owner's win) and,
  when they opt in, creates the GpuWorkload ``<lowercase kind>-<name>-<uid[:8]>`` (no ownerReference, so the
  record outlives the workload). Owners it may not read end the walk without a record. The reconcile keeps the
  record's spec equal to the annotations, and deletes the record when they opt out.
- **the GpuWorkload reconcile** (key: a GpuWorkload). Preempting -> delete the root owner (Background);
  forbidden -> back to Idle with ``PreemptionFailed`` (condition and Warning event; the workload is not picked
  again until it has been Active). Preempted/Deleted -> delete the record once ``ttlAfterFinished`` has passed
  since ``finishedAt`` (0 keeps it). Owner gone or re-created (other UID) -> Deleted. Otherwise it tracks the
  workload's unfinished pods, their GPU samples (a sample is rewritten only when it moves by more than 0.01, so
  a steady workload costs no writes), the aggregated utilisation and the phase (kaiwo.gpumetrics.reclaim.phase),
  with one event per phase change.
- **the scraper** (a periodic task): reads the exporters every ``--gpu-preemption-polling-interval`` and
  enqueues every live GpuWorkload, whose reconcile picks the new samples up.
- **the evaluator** (a periodic task, also run when a record turns Idle, PendingGpu or Active and when Kueue
  Workloads change): holding the
  Lease ``gpu-preemption-eval`` in the operator namespace, it gathers pending GPU demand (Kueue Workloads
  without quota, unschedulable GPU pods) and the idle workloads, asks kaiwo.gpumetrics.reclaim.decide whom to
  preempt, and marks them Preempting with ``preemptedFor`` and a reason.

Settings of each record: its spec (from the annotations) -> KaiwoConfig ``gpuPreemption`` ->
``GPU_PREEMPTION_DEFAULT_*`` -> 5 %, 10m, OnPressure, Max, 24h.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp
from prometheus_client import Counter

from kaiwo.api import groups
from kaiwo.api.gpuworkload import TERMINAL_PHASES
from kaiwo.api.gpuworkload import GpuWorkloadCondition as GpuCond
from kaiwo.api.gpuworkload import GpuWorkloadEvent as GpuEvent
from kaiwo.api.gpuworkload import GpuWorkloadPhase as GpuPhase
from kaiwo.controllers import settings
from kaiwo.gpumetrics import reclaim
from kaiwo.gpumetrics.config import EnvDefaults, GpuFeatures
from kaiwo.gpumetrics.reader import MetricsError, PodUtilization, Source, by_pod, read
from kaiwo.runtime.builder import ControllerSpec, For, Reads, Watches, resolve, wire
from kaiwo.runtime.client import ApiError, Client
from kaiwo.runtime.controller import Controller, Request, Result
from kaiwo.runtime.events import EventRecorder
from kaiwo.runtime.informer import Informer
from kaiwo.runtime.leader import LeaderElectionConfig, LeaderElector, identity_from_env
from kaiwo.runtime.manager import Manager
from kaiwo.runtime.objects import Obj, has_condition, merge_condition, status_condition
from kaiwo.runtime.timestamps import epoch, rfc3339
from kaiwo.translate import status as st
from kaiwo.translate.queueconfig import KUEUE_API

log = logging.getLogger(__name__)
API = groups.KAIWO_API
KIND = "GpuWorkload"
FIELD_MANAGER = "kaiwo-gpuworkload"
MAX_DEPTH = 10
EVAL_LEASE = "gpu-preemption-eval"
EVAL_KEY = Request(None, "evaluate")
SCRAPE_KEY = Request(None, "scrape")
NOT_OPTED_TTL = 60.0  # seconds a pod found not opted in is not resolved again
PHASE_EVENTS: dict[str, tuple[GpuEvent, bool]] = {  # phase -> (event reason, warning)
    GpuPhase.IDLE: (GpuEvent.IDLE, False),
    GpuPhase.ACTIVE: (GpuEvent.ACTIVE, False),
    GpuPhase.PENDING_GPU: (GpuEvent.PENDING_GPU, True),
    GpuPhase.PENDING_OTHER: (GpuEvent.PENDING, False),
}
# Owner kinds the operator reads to find a root owner, and may delete to preempt it (the chart's RBAC).
OWNER_KINDS = {
    "ReplicaSet": "apps/v1",
    "Deployment": "apps/v1",
    "StatefulSet": "apps/v1",
    "Job": "batch/v1",
    "KaiwoJob": API,
    "KaiwoService": API,
    "RayJob": "ray.io/v1",
    "RayCluster": "ray.io/v1",
    "RayService": "ray.io/v1",
    "AppWrapper": "workload.codeflare.dev/v1beta2",
}


def record_name(kind: str, name: str, uid: str) -> str:
    return f"{kind.lower()}-{name}-{uid[:8]}"[:253]


def _controller_ref(obj: Obj) -> Obj | None:
    return next((r for r in obj["metadata"].get("ownerReferences") or [] if r.get("controller")), None)


@dataclass
class Root:
    """What discovery learnt about a pod's workload."""

    gpu_workload: str  # name of its GpuWorkload (same namespace)
    uids: frozenset[str]  # UIDs along the owner chain, the pod's and the root's included


@dataclass
class Shared:
    """State the four parts share (in memory: rebuilt by discovery after a restart)."""

    roots: dict[str, Root] = field(default_factory=dict)  # pod UID -> its workload
    not_opted: dict[str, float] = field(default_factory=dict)  # pod UID -> until when it is not looked at again
    samples: dict[tuple[str, str], PodUtilization] = field(default_factory=dict)  # (namespace, pod) -> GPUs
    chains: dict[tuple[str, str], str] = field(default_factory=dict)  # record -> "Pod/x -> Job/y -> KaiwoJob/z"


@dataclass
class Caches:
    pods: Informer
    namespaces: Informer
    records: Informer
    nodes: Informer
    configs: Informer | None
    kueue_workloads: Informer | None
    local_queues: Informer | None
    cluster_queues: Informer | None


class Discovery:
    """Keys are GPU pods, or (``kind="Workload"``) Kueue Workloads asking for GPUs: a workload that waits in Kueue
    has no pods yet, and its record shows it PendingGpu."""

    def __init__(
        self,
        client: Client,
        caches: Caches,
        shared: Shared,
        records: Controller,
        wall: Callable[[], float],
        kind: str = "Pod",
    ) -> None:
        self.client = client
        self.caches = caches
        self.shared = shared
        self.records = records
        self.wall = wall
        self.kind = kind
        self.events = EventRecorder(client, FIELD_MANAGER, wall=wall)

    def _start(self, req: Request) -> tuple[Obj | None, dict[str, int]]:
        if self.kind == "Pod":
            pod = self.caches.pods.get_by(req.name, req.namespace)
            return pod, reclaim.pod_gpus(pod) if pod else {}
        wls = self.caches.kueue_workloads
        wl = wls.get_by(req.name, req.namespace) if wls is not None else None
        return wl, reclaim.workload_gpus(wl) if wl else {}

    async def reconcile(self, req: Request) -> Result | None:
        start, gpus = self._start(req)
        if start is None or not gpus:
            return None
        uid = start["metadata"]["uid"]
        if uid in self.shared.roots:
            self.records.queue.add(Request(req.namespace, self.shared.roots[uid].gpu_workload))
            return None
        if self.shared.not_opted.get(uid, 0) > self.wall():
            return None
        chain, uids, root = [f"{self.kind}/{req.name}"], {uid}, start
        for _ in range(MAX_DEPTH):
            ref = _controller_ref(root)
            if ref is None:
                break
            try:
                parent = await self.client.get_or_none(ref["apiVersion"], ref["kind"], ref["name"], req.namespace)
            except ApiError as e:
                if e.status in (403, 404):  # not readable (RBAC, or an API this cluster does not serve)
                    log.info(
                        "pod %s/%s: cannot read owner %s/%s: %s", req.namespace, req.name, ref["kind"], ref["name"], e
                    )
                    self.shared.not_opted[uid] = self.wall() + NOT_OPTED_TTL
                    return None
                raise
            if parent is None or parent["metadata"].get("uid") != ref.get("uid"):
                return Result(requeue_after=5.0)  # the owner is being replaced: look again shortly
            root = parent
            chain.append(f"{root['kind']}/{root['metadata']['name']}")
            uids.add(root["metadata"]["uid"])
        if root is start and self.kind != "Pod":
            return None  # a Kueue Workload without an owner is not a workload of its own
        namespace = self.caches.namespaces.get_by(req.namespace or "")
        ns_annotations = ((namespace or {}).get("metadata") or {}).get("annotations") or {}
        merged = reclaim.opted_in(ns_annotations, root["metadata"].get("annotations") or {})
        if merged is None:
            self.shared.not_opted[uid] = self.wall() + NOT_OPTED_TTL
            return None
        meta = root["metadata"]
        name = record_name(root["kind"], meta["name"], meta["uid"])
        overrides, problems = reclaim.spec_overrides(merged)
        record = {
            "apiVersion": API,
            "kind": KIND,
            "metadata": {"name": name, "namespace": req.namespace},
            "spec": {
                "workloadRef": {
                    "apiVersion": root["apiVersion"],
                    "kind": root["kind"],
                    "name": meta["name"],
                    "uid": meta["uid"],
                },
                "gpuResources": gpus,
                **overrides,
            },
        }
        if self.caches.records.get_by(name, req.namespace) is None:
            try:
                created = await self.client.create(record)
                for problem in problems:
                    await self.events.emit(created, GpuEvent.INVALID_ANNOTATION, problem, warning=True)
            except ApiError as e:
                if not e.conflict:
                    raise
        self.shared.roots[uid] = Root(name, frozenset(uids))
        if self.kind == "Pod" or (req.namespace or "", name) not in self.shared.chains:  # a pod's chain says more
            self.shared.chains[(req.namespace or "", name)] = " -> ".join(chain)
        self.records.queue.add(Request(req.namespace, name))
        return None


async def write_status(client: Client, record: Obj, status: Obj) -> Obj | None:
    """Patch ``record``'s status to ``status`` unless equal; the patch carries the cached resourceVersion, so a
    write based on a stale cache (the evaluator and the reconcile both write) fails with a conflict instead of
    undoing the other's write. Returns the new object, or None if nothing was sent."""
    if (record.get("status") or {}) == status:
        return None
    meta = record["metadata"]
    try:
        written: Obj = await client.patch(
            API,
            KIND,
            meta["name"],
            {"metadata": {"resourceVersion": meta["resourceVersion"]}, "status": status},
            meta["namespace"],
            subresource="status",
        )
    except ApiError as e:
        if e.conflict:
            return None  # the cache is behind; the watch event of the newer version enqueues the key again
        raise
    return written


class Records:
    """The GpuWorkload reconcile."""

    def __init__(
        self, client: Client, caches: Caches, shared: Shared, env: EnvDefaults, wall: Callable[[], float]
    ) -> None:
        self.client = client
        self.caches = caches
        self.shared = shared
        self.env = env
        self.wall = wall
        self.events = EventRecorder(client, FIELD_MANAGER, wall=wall)
        self.evaluator: Controller | None = None

    def settings_of(self, record: Obj) -> reclaim.Settings:
        return reclaim.resolve(record.get("spec") or {}, settings.current(self.caches.configs).gpu_preemption, self.env)

    def pods_of(self, record: Obj) -> list[Obj]:
        ns, name = record["metadata"]["namespace"], record["metadata"]["name"]
        out = []
        for p in self.caches.pods.objects(ns):
            root = self.shared.roots.get(p["metadata"]["uid"])
            if (
                root is not None
                and root.gpu_workload == name
                and (p.get("status") or {}).get("phase")
                not in (
                    "Succeeded",
                    "Failed",
                )
            ):
                out.append(p)
        return sorted(out, key=lambda p: p["metadata"]["name"])

    def owner_workload(self, record: Obj, pods: list[Obj]) -> Obj | None:
        """The Kueue Workload of the tracked workload (owned by an object of its owner chain)."""
        if self.caches.kueue_workloads is None:
            return None
        uids = {record["spec"]["workloadRef"]["uid"]}
        name = record["metadata"]["name"]
        for root in self.shared.roots.values():  # pods' and Kueue Workloads' chains up to this record's owner
            if root.gpu_workload == name:
                uids |= root.uids
        for wl in self.caches.kueue_workloads.objects(record["metadata"]["namespace"]):
            if any(r.get("uid") in uids for r in wl["metadata"].get("ownerReferences") or []):
                return wl
        return None

    async def reconcile(self, req: Request) -> Result | None:
        record = self.caches.records.get_by(req.name, req.namespace)
        if record is None:
            return None
        s = self.settings_of(record)
        old: Obj = record.get("status") or {}
        phase = old.get("phase") or ""
        now = self.wall()
        stamp = rfc3339(now)
        if phase == GpuPhase.PREEMPTING:
            return await self._preempt(record, old, s, stamp)
        if phase in TERMINAL_PHASES:
            return await self._expire(record, old, s, now)
        ref = record["spec"]["workloadRef"]
        owner = await self.client.get_or_none(ref["apiVersion"], ref["kind"], ref["name"], req.namespace)
        if owner is None or owner["metadata"].get("uid") != ref["uid"]:
            new = {**old, "phase": GpuPhase.DELETED.value, "finishedAt": stamp}
            for k in ("idleSince", "aggregatedUtilization", "trackedPods"):
                new.pop(k, None)
            if await write_status(self.client, record, new) is not None:
                await self.events.emit(
                    record, GpuEvent.DELETED, f"{ref['kind']}/{ref['name']} is gone; this record is kept for its TTL"
                )
            return Result(requeue_after=s.ttl) if s.ttl > 0 else None
        namespace = self.caches.namespaces.get_by(req.namespace or "")
        merged = reclaim.opted_in(
            ((namespace or {}).get("metadata") or {}).get("annotations") or {},
            owner["metadata"].get("annotations") or {},
        )
        if merged is None:  # opted out since: no longer tracked, never preempted
            await self.client.delete(API, KIND, req.name, req.namespace)
            return None
        pods = self.pods_of(record)
        new = self._observe(record, old, pods, s, now)
        spec_patch: Obj = {}
        overrides, _ = reclaim.spec_overrides(merged)
        for key in reclaim.OVERRIDE_FIELDS:  # annotations edited since: the record follows them
            if record["spec"].get(key) != overrides.get(key):
                spec_patch[key] = overrides.get(key)
        if pods:
            totals: dict[str, int] = {}
            for p in pods:
                for r, n in reclaim.pod_gpus(p).items():
                    totals[r] = totals.get(r, 0) + n
            if totals != record["spec"].get("gpuResources"):
                spec_patch["gpuResources"] = totals
        if spec_patch:
            await self.client.patch(API, KIND, req.name, {"spec": spec_patch}, req.namespace)
        written = await write_status(self.client, record, new)
        new_phase = new.get("phase") or ""
        if written is not None and new_phase != phase and new_phase in PHASE_EVENTS:
            reason, warning = PHASE_EVENTS[new_phase]
            util = new.get("aggregatedUtilization")
            detail = f" (utilisation {util}%, threshold {s.threshold:g}%)" if util is not None else ""
            await self.events.emit(record, reason, f"the workload is {new_phase}{detail}", warning=warning)
            if self.evaluator is not None and new_phase in (GpuPhase.IDLE, GpuPhase.PENDING_GPU, GpuPhase.ACTIVE):
                self.evaluator.queue.add(EVAL_KEY)
        return None

    def _observe(self, record: Obj, old: Obj, pods: list[Obj], s: reclaim.Settings, now: float) -> Obj:
        ns = record["metadata"]["namespace"]
        stamp = rfc3339(now)
        previous = {tp["podName"]: tp.get("gpuMetrics") or [] for tp in old.get("trackedPods") or []}
        tracked, changed = [], False
        for p in pods:
            name = p["metadata"]["name"]
            metrics = {m.get("gpuId"): m for m in previous.get(name, [])}
            sample = self.shared.samples.get((ns, name))
            if sample is not None:
                for gpu, value in sample.gpus.items():
                    m = metrics.get(gpu)
                    if m is None or abs(m["utilization"] - value) > 0.01:
                        metrics[gpu] = {"gpuId": gpu, "utilization": round(value, 2), "lastUpdate": stamp}
                        changed = True
            entry: Obj = {"podName": name}
            if metrics:
                entry["gpuMetrics"] = [metrics[k] for k in sorted(metrics, key=str)]
            tracked.append(entry)
        util = reclaim.aggregate(tracked, s.aggregation)
        resources = list((record["spec"].get("gpuResources") or {}).keys()) or list(reclaim.GPU_RESOURCES)
        phase = reclaim.phase(
            pods, self.owner_workload(record, pods), resources, old.get("phase") or "", util, s.threshold
        )
        new = {k: v for k, v in old.items() if k not in ("trackedPods", "aggregatedUtilization", "idleSince")}
        new["phase"] = str(phase)
        if tracked:
            new["trackedPods"] = tracked
        if util is not None:
            new["aggregatedUtilization"] = util
        if changed:
            new["lastMetricsUpdate"] = stamp
        chain = self.shared.chains.get((ns, record["metadata"]["name"]))
        if chain:
            new["ownerChain"] = chain
        if phase == GpuPhase.IDLE:
            new["idleSince"] = old.get("idleSince") or stamp
        if phase == GpuPhase.ACTIVE and status_condition(new, GpuCond.PREEMPTION_FAILED):
            back = st.condition(GpuCond.PREEMPTION_FAILED, False, "Active", "the workload became active again")
            new["conditions"] = merge_condition(new.get("conditions") or [], back, stamp)
        return new

    async def _preempt(self, record: Obj, old: Obj, s: reclaim.Settings, stamp: str) -> Result | None:
        ref = record["spec"]["workloadRef"]
        ns = record["metadata"]["namespace"]
        try:
            await self.client.delete(ref["apiVersion"], ref["kind"], ref["name"], ns, propagation="Background")
        except ApiError as e:
            if e.status != 403:
                raise
            new = {**old, "phase": GpuPhase.IDLE.value}
            message = f"may not delete {ref['kind']}/{ref['name']}: {e.message}"
            forbidden = st.condition(GpuCond.PREEMPTION_FAILED, True, "Forbidden", message)
            new["conditions"] = merge_condition(new.get("conditions") or [], forbidden, stamp)
            if await write_status(self.client, record, new) is not None:
                await self.events.emit(record, GpuEvent.PREEMPTION_FAILED, message, warning=True)
            return None
        new = {**old, "phase": GpuPhase.PREEMPTED.value, "finishedAt": stamp}
        new.pop("idleSince", None)
        if await write_status(self.client, record, new) is not None:
            why = old.get("preemptionReason") or "idle"
            await self.events.emit(record, GpuEvent.PREEMPTED, f"deleted {ref['kind']}/{ref['name']}: {why}")
        return Result(requeue_after=s.ttl) if s.ttl > 0 else None

    async def _expire(self, record: Obj, old: Obj, s: reclaim.Settings, now: float) -> Result | None:
        if s.ttl <= 0:
            return None
        finished = epoch(old["finishedAt"]) if old.get("finishedAt") else now
        left = finished + s.ttl - now
        if left > 0:
            return Result(requeue_after=left)
        meta = record["metadata"]
        await self.client.delete(API, KIND, meta["name"], meta["namespace"])
        return None


class Scraper:
    """Reads the exporters, keeps the samples in ``shared``, and enqueues the live records."""

    def __init__(self, source: Source, caches: Caches, shared: Shared, records: Controller, errors: Counter) -> None:
        self.source = source
        self.caches = caches
        self.shared = shared
        self.records = records
        self.errors = errors

    async def reconcile(self, req: Request) -> Result:
        try:
            async with aiohttp.ClientSession() as session:
                self.shared.samples = by_pod(await read(session, self.source))
        except MetricsError as e:
            self.errors.labels("gpu-preemption").inc()
            log.warning("GPU metrics unavailable, GpuWorkload samples unchanged: %s", e)
            return Result(requeue_after=self.source.interval)
        live = {p["metadata"]["uid"] for p in self.caches.pods.objects()}
        if self.caches.kueue_workloads is not None:
            live |= {w["metadata"]["uid"] for w in self.caches.kueue_workloads.objects()}
        self.shared.roots = {uid: root for uid, root in self.shared.roots.items() if uid in live}
        self.shared.not_opted = {uid: t for uid, t in self.shared.not_opted.items() if uid in live}
        for record in self.caches.records.objects():
            if ((record.get("status") or {}).get("phase") or "") not in TERMINAL_PHASES:
                self.records.queue.add(Request.of(record))
        return Result(requeue_after=self.source.interval)


class Evaluator:
    """Marks idle workloads Preempting when their GPUs meet pending demand (or the Always policy says so)."""

    def __init__(
        self,
        client: Client,
        caches: Caches,
        shared: Shared,
        records: Records,
        lease: LeaderElectionConfig,
        interval: float,
        wall: Callable[[], float],
    ) -> None:
        self.client = client
        self.caches = caches
        self.shared = shared
        self.records = records
        self.elector = LeaderElector(client, lease, wall=wall)
        self.renewed = -1e9  # monotonic time of the last successful renewal
        self.interval = interval
        self.wall = wall
        self.events = EventRecorder(client, FIELD_MANAGER, wall=wall)

    def demands(self) -> list[reclaim.Demand]:
        out: list[reclaim.Demand] = []
        if self.caches.kueue_workloads is not None:
            for wl in self.caches.kueue_workloads.objects():
                lq_name = (wl.get("spec") or {}).get("queueName")
                lq = (
                    self.caches.local_queues.get_by(lq_name, wl["metadata"].get("namespace"))
                    if (lq_name and self.caches.local_queues is not None)
                    else None
                )
                out += reclaim.kueue_demand(wl, ((lq or {}).get("spec") or {}).get("clusterQueue"))
        for p in self.caches.pods.objects():
            out += reclaim.pod_demand(p)
        return out

    def candidates(self) -> list[reclaim.Candidate]:
        out = []
        for record in self.caches.records.objects():
            status = record.get("status") or {}
            phase = status.get("phase")
            if phase not in (GpuPhase.IDLE, GpuPhase.PREEMPTING):
                continue
            idle = phase == GpuPhase.IDLE
            if idle and has_condition(record, GpuCond.PREEMPTION_FAILED):
                continue  # it cannot be deleted; it is picked again once it has been Active
            resources = record["spec"].get("gpuResources") or {}
            if not resources:
                continue
            resource, gpus = max(resources.items(), key=lambda kv: kv[1])
            pods = self.records.pods_of(record)
            nodes: dict[str, int] = {}
            for p in pods:
                node = (p.get("spec") or {}).get("nodeName")
                if node:
                    nodes[node] = nodes.get(node, 0) + reclaim.pod_gpus(p).get(resource, 0)
            wl = self.records.owner_workload(record, pods)
            admission = ((wl or {}).get("status") or {}).get("admission") or {}
            s = self.records.settings_of(record)
            out.append(
                reclaim.Candidate(
                    key=f"{record['metadata']['namespace']}/{record['metadata']['name']}",
                    resource=resource,
                    gpus=gpus,
                    idle_since=epoch(status["idleSince"]) if idle and status.get("idleSince") else None,
                    grace=s.grace,
                    policy=s.policy,
                    cluster_queue=admission.get("clusterQueue"),
                    nodes=nodes,
                    preempting_for=(status.get("preemptedFor") or "Always") if phase == GpuPhase.PREEMPTING else None,
                )
            )
        return out

    async def holds_lease(self) -> bool:
        """Renew the Lease only when a third of its duration has passed since the last renewal (an evaluation
        triggered by every change must not write the Lease every time)."""
        now = self.elector.clock.now()
        if now - self.renewed < self.elector.config.lease_duration / 3:
            return True
        if await self.elector.try_acquire_or_renew():
            self.renewed = now
            return True
        return False

    async def reconcile(self, req: Request) -> Result:
        if not await self.holds_lease():
            return Result(requeue_after=self.interval)
        quota: dict[tuple[str, str], int] = {}
        for cq in self.caches.cluster_queues.objects() if self.caches.cluster_queues is not None else []:
            for r, n in reclaim.free_quota(cq).items():
                quota[(cq["metadata"]["name"], r)] = n
        nodes = self.caches.nodes.objects()
        free = reclaim.free_on_nodes(nodes, self.caches.pods.objects())
        labels = {n["metadata"]["name"]: n["metadata"].get("labels") or {} for n in nodes}
        now = self.wall()
        for d in reclaim.decide(self.demands(), self.candidates(), quota, free, labels, now):
            ns, name = d.victim.split("/", 1)
            record = self.caches.records.get_by(name, ns)
            if record is None:
                continue
            status = {
                **(record.get("status") or {}),
                "phase": GpuPhase.PREEMPTING.value,
                "preemptedAt": rfc3339(now),
                "preemptionReason": d.reason,
            }
            if d.preempted_for:
                status["preemptedFor"] = d.preempted_for
            if await write_status(self.client, record, status) is not None:
                await self.events.emit(record, GpuEvent.PREEMPTION_STARTED, d.reason, warning=True)
        return Result(requeue_after=self.interval)


@dataclass
class GpuPreemption:
    records: Records
    evaluator: Evaluator
    shared: Shared
    controllers: tuple[Controller, ...]


# --- wiring ------------------------------------------------------------------------------------------------


def record_of_pod(r: Records, pod: Obj) -> list[Request]:
    """A pod discovery resolved -> the record of its root owner."""
    root = r.shared.roots.get(pod["metadata"]["uid"])
    return [Request(pod["metadata"]["namespace"], root.gpu_workload)] if root else []


def record_of_workload(r: Records, wl: Obj) -> list[Request]:
    """A Kueue Workload -> the records whose owner chain it belongs to."""
    owners = {ref.get("uid") for ref in wl["metadata"].get("ownerReferences") or []}
    return [
        Request(wl["metadata"].get("namespace"), root.gpu_workload)
        for root in r.shared.roots.values()
        if root.uids & owners
    ]


def live_gpu_pod(_: object, pod: Obj) -> list[Request]:
    """A pod that asks for GPUs and has not finished -> itself (discovery's keys are pods)."""
    done = (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")
    return [Request.of(pod)] if reclaim.pod_gpus(pod) and not done else []


def gpu_workload(_: object, wl: Obj) -> list[Request]:
    """A Kueue Workload asking for GPUs -> itself (it waits in Kueue, so it has no pods yet)."""
    return [Request.of(wl)] if reclaim.workload_gpus(wl) else []


def namespace_pods(r: Discovery, ns: Obj) -> list[Request]:
    """A namespace's annotations changed: look at its GPU pods again (forgetting that they were not opted in),
    and at its records (which may have been opted out)."""
    name = ns["metadata"]["name"]
    pods = [p for p in r.caches.pods.objects(name) if reclaim.pod_gpus(p)]
    for p in pods:
        r.shared.not_opted.pop(p["metadata"]["uid"], None)
    for record in r.caches.records.objects(name):
        r.records.queue.add(Request.of(record))
    return [Request.of(p) for p in pods]


def annotations_changed(old: Obj, new: Obj) -> bool:
    return bool(old["metadata"].get("annotations") != new["metadata"].get("annotations"))


def to_evaluation(_: object, __: Obj) -> tuple[Request, ...]:
    """Kueue demand changed: evaluate now rather than at the next interval."""
    return (EVAL_KEY,)


RECORDS = ControllerSpec(
    "gpuworkload",
    (
        For(API, KIND),
        Watches("v1", "Pod", mapper=record_of_pod),
        Watches(KUEUE_API, "Workload", mapper=record_of_workload, optional=True),
        # what discovery, the scraper and the evaluator read too (one Caches, shared by all five)
        Reads("v1", "Namespace"),
        Reads("v1", "Node"),
        Reads(settings.KAIWO_CONFIG_API, "KaiwoConfig"),
        Reads(KUEUE_API, "LocalQueue", optional=True),
        Reads(KUEUE_API, "ClusterQueue", optional=True),
    ),
)
DISCOVERY = ControllerSpec(
    "gpuworkload-discovery",
    (
        Watches("v1", "Pod", mapper=live_gpu_pod),
        Watches("v1", "Namespace", mapper=namespace_pods, predicate=annotations_changed),
    ),
)
# Kueue Workloads asking for GPUs: registered only where Kueue serves Workloads
QUEUED = ControllerSpec(
    "gpuworkload-discovery-kueue", (Watches(KUEUE_API, "Workload", mapper=gpu_workload, optional=True),), workers=1
)
# Pollers: one key that requeues itself, so they run only while this replica leads
SCRAPER = ControllerSpec("gpuworkload-scraper", workers=1, seed=(SCRAPE_KEY,))
EVALUATOR = ControllerSpec(
    "gpuworkload-evaluator",
    (Watches(KUEUE_API, "Workload", mapper=to_evaluation, optional=True),),
    workers=1,
    seed=(EVAL_KEY,),
)
SPECS = (RECORDS, DISCOVERY, QUEUED, SCRAPER, EVALUATOR)


async def setup(
    manager: Manager,
    features: GpuFeatures,
    *,
    evaluation_interval: float = 60.0,
    identity: str = "",
    wall: Callable[[], float] = time.time,
) -> GpuPreemption:
    """Register discovery, the GpuWorkload controller, the scraper and the evaluator with ``manager``."""
    assert features.preemption is not None
    sources = await resolve(manager, (s for spec in SPECS for s in spec.sources), owner="GPU reclaim")
    caches = Caches(
        pods=sources["Pod"],
        namespaces=sources["Namespace"],
        records=sources[KIND],
        nodes=sources["Node"],
        configs=sources["KaiwoConfig"],
        kueue_workloads=sources.get("Workload"),
        local_queues=sources.get("LocalQueue"),
        cluster_queues=sources.get("ClusterQueue"),
    )
    shared = Shared()
    records = Records(manager.client, caches, shared, features.defaults, wall)
    records_ctrl = wire(manager, RECORDS, records, sources)
    discovery = Discovery(manager.client, caches, shared, records_ctrl, wall)
    controllers = [records_ctrl, wire(manager, DISCOVERY, discovery, sources)]
    if caches.kueue_workloads is not None:
        queued = Discovery(manager.client, caches, shared, records_ctrl, wall, kind="Workload")
        controllers.append(wire(manager, QUEUED, queued, sources))
    errors = Counter(
        "kaiwo_gpu_preemption_metrics_read_errors",
        "Failed reads of the GPU metrics endpoints by the GpuWorkload scraper",
        ["reader"],
        registry=manager.metrics.registry,
    )
    scraper = Scraper(features.preemption, caches, shared, records_ctrl, errors)
    controllers.append(wire(manager, SCRAPER, scraper, sources))
    lease = LeaderElectionConfig(
        features.preemption_namespace,
        EVAL_LEASE,
        identity or identity_from_env(),
        lease_duration=30.0,
        renew_deadline=20.0,
    )
    evaluator = Evaluator(manager.client, caches, shared, records, lease, evaluation_interval, wall)
    evaluator_ctrl = wire(manager, EVALUATOR, evaluator, sources)
    controllers.append(evaluator_ctrl)
    records.evaluator = evaluator_ctrl
    return GpuPreemption(records, evaluator, shared, tuple(controllers))
