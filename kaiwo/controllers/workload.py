"""KaiwoJob and KaiwoService controllers: one shared reconcile (upstream-kaiwo.md §2.2, DECISIONS 3-7, 9-11).

Per reconcile of a workload:
1. terminal (COMPLETE, FAILED, TERMINATED): nothing to do; TERMINATING: delete the children, TERMINATED;
2. translate the CR with the live KaiwoConfig and the node pools (kaiwo.translate.workload); a TranslateError
   or a queue that the KaiwoQueueConfig does not offer (to this namespace) -> ERROR, ``Schedulable=False``;
3. apply the storage children; while the download Job runs -> DOWNLOADING, if it failed -> FAILED;
4. ensure the LocalQueue (only for ClusterQueues without a ``namespaces`` list, DECISIONS 9), then apply
   the workload children by server-side apply (skipped when unchanged, so spec edits propagate and a settled
   workload costs no writes); an immutable-field rejection -> ``SpecApplied=False`` and a Warning event;
5. derive the phase from the child and Kueue's Workload (kaiwo.translate.status); a Deployment is PENDING
   until its pods have passed Kueue's admission gate;
6. duration preemption (kaiwo.translate.preemption, DECISIONS 12): a RUNNING workload with ``spec.duration``
   gets ``Preemptable`` and is requeued at its deadline; once expired it becomes TERMINATING when a KaiwoJob or
   KaiwoService of the same ClusterQueue and GPU vendor has pended with GPUs for longer than
   ``pendingThresholdForPreemption`` (then step 1 deletes its children). Each controller also watches both
   Kaiwo kinds and maps a pending GPU workload to the RUNNING workloads with a duration it could preempt, and
   an expired workload requeues itself for when young demand crosses the threshold: level-triggered, no timers
   elsewhere;
7. write the status only when it changed, with one event per phase transition (and one ``Preemptable``).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kaiwo.api.config import KaiwoConfigSpec
from kaiwo.controllers import settings
from kaiwo.runtime.apply import Applier, Expectations
from kaiwo.runtime.client import ApiError, Client
from kaiwo.runtime.controller import Controller, Request, Result
from kaiwo.runtime.events import EventRecorder
from kaiwo.runtime.informer import Informer, object_key
from kaiwo.runtime.manager import Manager
from kaiwo.translate import gpus, nodepools
from kaiwo.translate import preemption as pre
from kaiwo.translate import status as st
from kaiwo.translate.meta import TranslateError
from kaiwo.translate.queueconfig import KUEUE_API
from kaiwo.translate.workload import Children, Facts, desired_children

log = logging.getLogger(__name__)
Obj = dict[str, Any]
API = "kaiwo.silogen.ai/v1alpha1"
RUN_ID_LABEL = "kaiwo.silogen.ai/run-id"
NAME_LABEL = "kaiwo.silogen.ai/name"
KAIWO_KINDS = ("KaiwoJob", "KaiwoService")
ERROR_RETRY = 60.0
CHILD_KINDS = {
    # kind -> (apiVersion, owner kinds that may own it)
    "Job": "batch/v1",
    "Deployment": "apps/v1",
    "Service": "v1",
    "PersistentVolumeClaim": "v1",
    "ConfigMap": "v1",
    "RayJob": "ray.io/v1",
    "AppWrapper": "workload.codeflare.dev/v1beta2",
}
WORKLOAD_KINDS = ("Job", "RayJob", "Deployment", "AppWrapper")
EVENTS = {
    "PENDING": "WorkloadPending",
    "STARTING": "WorkloadStarting",
    "RUNNING": "WorkloadRunning",
    "COMPLETE": "WorkloadComplete",
    "FAILED": "WorkloadFailed",
    "ERROR": "WorkloadError",
    "DOWNLOADING": "WorkloadDownloading",
    "TERMINATING": "WorkloadTermination",
    "TERMINATED": "WorkloadTerminated",
}
WARNING_PHASES = ("FAILED", "ERROR", "TERMINATING")


@dataclass
class Caches:
    primary: Informer
    children: dict[str, Informer]  # kind -> informer of objects labelled with a Kaiwo run id
    workloads: Informer | None  # Kueue Workloads
    pods: Informer
    nodes: Informer
    kaiwo_configs: Informer | None
    queue_configs: Informer | None
    local_queues: Informer | None
    kaiwo_workloads: tuple[Informer, ...] = ()  # KaiwoJobs and KaiwoServices: where GPU demand is looked for
    ray_services: Informer | None = None  # RayServices the AppWrapper controller made (KaiwoService only)


def _rfc3339(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class WorkloadReconciler:
    def __init__(
        self, client: Client, kind: str, caches: Caches, field_manager: str, wall: Callable[[], float] = time.time
    ) -> None:
        self.client = client
        self.kind = kind
        self.caches = caches
        self.wall = wall  # wall-clock epoch seconds: status times and duration deadlines are wall-clock
        self.applier = Applier(client, field_manager)
        self.events = EventRecorder(client, field_manager)
        # LocalQueues created but not yet in the cache: concurrent reconciles in one namespace create it once.
        self.queue_creates = Expectations(ttl=30.0)

    async def reconcile(self, req: Request) -> Result | None:
        cr = self.caches.primary.get_by(req.name, req.namespace)
        if cr is None:
            return None
        old = cr.get("status") or {}
        phase = old.get("status") or ""
        if phase in st.TERMINAL:
            return None
        if phase == "TERMINATING":
            await self._delete_children(cr)
            why: Obj = next((c for c in old.get("conditions") or [] if c.get("type") == "WorkloadTerminatedEarly"), {})
            await self._set(
                cr,
                "TERMINATED",
                [
                    st.condition(
                        "WorkloadTerminatedEarly",
                        True,
                        why.get("reason") or "EarlyTermination",
                        why.get("message") or "the workload was terminated",
                    )
                ],
            )
            return None
        cfg = settings.current(self.caches.kaiwo_configs)
        pools = nodepools.discover(
            self.caches.nodes.objects(), exclude_control_plane=cfg.nodes.exclude_master_nodes_from_node_pools
        )
        built = desired_children(cr, Facts(config=cfg, gpu_pools=gpus.gpu_pools(pools)))
        if isinstance(built, TranslateError):
            await self._set(cr, "ERROR", [st.condition("Schedulable", False, built.reason, built.message)])
            return Result(requeue_after=ERROR_RETRY)
        queue = (cr.get("spec") or {}).get("clusterQueue") or cfg.default_cluster_queue_name
        problem = self._queue_problem(cr, queue)
        if problem:
            await self._set(cr, "ERROR", [st.condition("Schedulable", False, *problem)])
            return Result(requeue_after=ERROR_RETRY)
        schedulable = st.condition("Schedulable", True, "Schedulable", "the workload fits the cluster")
        conditions = [schedulable]

        failures = await self._apply(built.storage)
        download = next((o for o in built.storage if o["kind"] == "Job"), None)
        if download is not None:
            dl = self._live(download)
            d_phase = st.job_phase(dl, True)
            if d_phase.status == "FAILED":
                await self._set(
                    cr,
                    "FAILED",
                    [*conditions, st.condition("DownloadJobSucceeded", False, "JobFailed", d_phase.message)],
                )
                return None
            if d_phase.status != "COMPLETE":
                await self._set(
                    cr,
                    "DOWNLOADING",
                    [
                        *conditions,
                        st.condition(
                            "DownloadJobSucceeded", False, "JobInProgress", "downloading into the storage volumes"
                        ),
                    ],
                )
                return None
            conditions.append(st.condition("DownloadJobSucceeded", True, "JobCompleted", "downloads complete"))

        await self._ensure_local_queue(cr, queue)
        failures += await self._apply(built.workload)
        if failures:
            message = "; ".join(failures)
            immutable = "immutable" in message.lower()
            await self.events.emit(cr, "SpecNotApplied", message, warning=True)
            conditions.append(
                st.condition("SpecApplied", False, "ImmutableField" if immutable else "InvalidChild", message)
            )
        else:
            conditions.append(st.condition("SpecApplied", True, "Applied", "children match the spec"))
        phase_now, observed = self._observe(built)
        conditions += observed
        main = next((o for o in built.workload if o["kind"] in WORKLOAD_KINDS), None)
        if failures and main is not None and self._live(main) is None:
            phase_now = st.Phase("ERROR")  # the child cannot be created at all: say so instead of STARTING forever
        status, recheck = phase_now.status, None
        if status == "RUNNING" and (cr.get("spec") or {}).get("duration"):
            status, recheck = self._duration(cr, cfg, conditions)
        await self._set(cr, status, conditions)
        if status == "ERROR":
            return Result(requeue_after=ERROR_RETRY)
        return Result(requeue_after=recheck) if recheck else None

    # --- helpers ----------------------------------------------------------------------------------------

    def _queue_problem(self, cr: Obj, queue: str) -> tuple[str, str] | None:
        qcs = self.caches.queue_configs
        qc = qcs.get_by("kaiwo") if qcs is not None else None
        if qc is None:
            return None  # no KaiwoQueueConfig (yet): Kueue itself decides whether the queue exists
        for cq in (qc.get("spec") or {}).get("clusterQueues") or []:
            if cq.get("name") == queue:
                namespaces = cq.get("namespaces") or []
                ns = cr["metadata"].get("namespace")
                if namespaces and ns not in namespaces:
                    return (
                        "WrongQueueNamespace",
                        f"spec.clusterQueue: ClusterQueue {queue!r} only serves namespaces {namespaces}",
                    )
                return None
        return ("ClusterQueueNotFound", f"spec.clusterQueue: no ClusterQueue {queue!r} in KaiwoQueueConfig kaiwo")

    def _live(self, obj: Obj) -> Obj | None:
        inf = self.caches.children.get(obj["kind"])
        return inf.get(object_key(obj)) if inf is not None else None

    async def _apply(self, objs: tuple[Obj, ...]) -> list[str]:
        """Apply each object; the apiserver's rejections (422) come back as messages, other errors raise."""
        failures = []
        for obj in objs:
            try:
                await self.applier.apply(obj, self._live(obj))
            except ApiError as e:
                if e.status != 422:
                    raise
                failures.append(f"{obj['kind']} {obj['metadata']['name']}: {e.message}")
        return failures

    async def _ensure_local_queue(self, cr: Obj, queue: str) -> None:
        """Lazily create the LocalQueue for ClusterQueues that do not list namespaces (DECISIONS 9)."""
        ns = cr["metadata"]["namespace"]
        key = f"{ns}/{queue}"
        if self.caches.local_queues is None:
            return
        if self.caches.local_queues.get_by(queue, ns) is not None:
            self.queue_creates.observed(key, key)
            return
        if not self.queue_creates.satisfied(key):
            return  # created a moment ago; the cache has not shown it yet
        qcs = self.caches.queue_configs
        qc = qcs.get_by("kaiwo") if qcs is not None else None
        listed = any(
            cq.get("name") == queue and cq.get("namespaces")
            for cq in ((qc or {}).get("spec") or {}).get("clusterQueues") or []
        )
        if listed:
            return  # the KaiwoQueueConfig controller owns LocalQueues of this ClusterQueue
        self.queue_creates.expect(key, key)  # before the await: a concurrent reconcile must see it
        try:
            await self.client.create(
                {
                    "apiVersion": KUEUE_API,
                    "kind": "LocalQueue",
                    "metadata": {
                        "name": queue,
                        "namespace": ns,
                        "labels": {"kaiwo.silogen.ai/managed-by": "kaiwo-workload"},
                    },
                    "spec": {"clusterQueue": queue},
                }
            )
        except ApiError as e:
            if not e.conflict:
                self.queue_creates.forget(key)
                raise

    def _observe(self, built: Children) -> tuple[st.Phase, list[Obj]]:
        """The phase from the workload child, with the conditions that explain it (Admitted, Progressing)."""
        main = next((o for o in built.workload if o["kind"] in WORKLOAD_KINDS), None)
        if main is None:
            return st.Phase("STARTING"), []
        live = self._live(main)
        kind = main["kind"]
        if kind == "Deployment":
            return self._observe_deployment(main, live)
        admitted, message = self._admission(live)
        cond = st.condition("Admitted", admitted, "Admitted" if admitted else "Pending", message)
        if kind == "Job":
            return st.job_phase(live, admitted), [cond]
        if kind == "RayJob":
            phase = st.rayjob_phase(live, admitted)
            finished = st.rayjob_condition(phase)
            return phase, [cond, finished] if finished else [cond]
        phase = st.rayservice_phase(live, self._ray_service(main))
        return phase, [cond, st.serve_condition(phase)] if live is not None else [cond]

    def _ray_service(self, appwrapper: Obj) -> Obj | None:
        """The RayService inside ``appwrapper`` (created by the AppWrapper controller), if it is this run's."""
        if self.caches.ray_services is None:
            return None
        meta = appwrapper["metadata"]
        rs = self.caches.ray_services.get_by(meta["name"], meta.get("namespace"))
        if rs is None or (rs["metadata"].get("labels") or {}).get(RUN_ID_LABEL) != meta["labels"][RUN_ID_LABEL]:
            return None
        return rs

    def _observe_deployment(self, desired: Obj, live: Obj | None) -> tuple[st.Phase, list[Obj]]:
        """Kueue admits each pod of a Deployment (a Workload per pod): admitted once pods exist and none is gated."""
        pods, gated = self._deployment_pods(desired)
        admitted = pods > 0 and gated == 0
        message = (
            "admitted by Kueue"
            if admitted
            else f"{gated} of {pods} pod(s) wait for Kueue admission"
            if pods
            else "waiting for the Deployment's pods"
        )
        phase = st.deployment_phase(live, pods, gated)
        conditions = [st.condition("Admitted", admitted, "Admitted" if admitted else "Pending", message)]
        if live is not None:  # the deadline message must be visible on the Kaiwo object, and clear on recovery
            stuck = phase.reason == "ProgressDeadlineExceeded"
            conditions.append(
                st.condition(
                    "Progressing",
                    not stuck,
                    phase.reason if stuck else "WithinDeadline",
                    phase.message if stuck else "the Deployment progresses",
                )
            )
        return phase, conditions

    def _admission(self, child: Obj | None) -> tuple[bool, str]:
        if child is None or self.caches.workloads is None:
            return False, st.WAITING_FOR_ADMISSION
        owned = self.caches.workloads.by_index("owner", child["metadata"]["uid"])
        return st.admission(owned[0] if owned else None)

    def _deployment_pods(self, deployment: Obj) -> tuple[int, int]:
        """(live pods, pods still behind Kueue's admission gate) of a Deployment; terminating pods do not count."""
        meta = deployment["metadata"]
        pods = [
            p
            for p in self.caches.pods.objects(meta["namespace"])
            if (p["metadata"].get("labels") or {}).get(NAME_LABEL) == meta["name"]
            and not p["metadata"].get("deletionTimestamp")
        ]
        gated = sum(
            1
            for p in pods
            if any(g.get("name") == st.KUEUE_ADMISSION_GATE for g in (p.get("spec") or {}).get("schedulingGates") or [])
        )
        return len(pods), gated

    def _duration(self, cr: Obj, cfg: KaiwoConfigSpec, conditions: list[Obj]) -> tuple[str, float | None]:
        """A RUNNING workload with ``spec.duration``: its Preemptable condition, and TERMINATING once it is expired
        and same-queue, same-vendor GPU demand has waited long enough. Returns (phase, seconds until a recheck)."""
        now = self.wall()
        start = (cr.get("status") or {}).get("startTime")
        p = pre.preemptability(pre.epoch(start) if start else now, cr["spec"]["duration"], now)
        conditions.append(p.condition)
        if not p.expired:
            return "RUNNING", p.seconds_left
        queue = cfg.default_cluster_queue_name
        candidates = (obj for inf in self.caches.kaiwo_workloads for obj in inf.objects())
        threshold = pre.go_duration(cfg.scheduling.pending_threshold_for_preemption)
        d = pre.demand(pre.claim(cr, queue), candidates, queue, threshold, now)
        if not d.now:
            return "RUNNING", d.next_check
        conditions.append(
            st.condition(
                "WorkloadTerminatedEarly",
                False,
                "DurationExceededWithActiveGpuDemand",
                "terminated: the duration was exceeded and GPU work of the same queue and vendor is waiting",
            )
        )
        return "TERMINATING", None

    async def _set(self, cr: Obj, phase: str, conditions: list[Obj]) -> None:
        old = cr.get("status") or {}
        epoch = self.wall()
        new = st.next_status(
            old, phase, conditions, now=_rfc3339(epoch), now_epoch=epoch, generation=cr["metadata"].get("generation", 0)
        )
        if await self.applier.write_status(cr, new, st.differs) is None:
            return  # nothing changed, or the cache has not shown our identical last write yet
        if old.get("status") != phase and phase in EVENTS:
            message = next((c["message"] for c in conditions if c["status"] == "False"), f"workload is {phase}")
            await self.events.emit(cr, EVENTS[phase], message, warning=phase in WARNING_PHASES)
        expired = next((c for c in conditions if c["type"] == "Preemptable" and c["status"] == "True"), None)
        was: Obj = next((c for c in old.get("conditions") or [] if c.get("type") == "Preemptable"), {})
        if expired is not None and was.get("status") != "True":
            await self.events.emit(cr, "Preemptable", expired["message"])

    async def _delete_children(self, cr: Obj) -> None:
        uid = cr["metadata"]["uid"]
        for kind, inf in self.caches.children.items():
            for obj in inf.by_index("owner", uid):
                meta = obj["metadata"]
                await self.client.delete(
                    CHILD_KINDS[kind], kind, meta["name"], meta.get("namespace"), propagation="Foreground"
                )


async def _optional(manager: Manager, api_version: str, kind: str, **kw: Any) -> Informer | None:
    try:
        return await manager.informer(api_version, kind, **kw)
    except ApiError as e:
        if e.not_found:
            log.warning("%s/%s is not served by this cluster; related features are off", api_version, kind)
            return None
        raise


async def setup(manager: Manager, kind: str, workers: int = 2) -> Controller:
    """Register the KaiwoJob or KaiwoService controller with ``manager``."""
    children: dict[str, Informer] = {}
    for child_kind, api_version in CHILD_KINDS.items():
        inf = await _optional(manager, api_version, child_kind, label_selector=RUN_ID_LABEL)
        if inf is not None:
            children[child_kind] = inf
    caches = Caches(
        primary=await manager.informer(API, kind),
        children=children,
        workloads=await _optional(manager, KUEUE_API, "Workload"),
        pods=await manager.informer("v1", "Pod", label_selector=RUN_ID_LABEL),
        nodes=await manager.informer("v1", "Node"),
        kaiwo_configs=await _optional(manager, settings.KAIWO_CONFIG_API, "KaiwoConfig"),
        queue_configs=await _optional(manager, API, "KaiwoQueueConfig"),
        local_queues=await _optional(manager, KUEUE_API, "LocalQueue"),
    )
    caches.kaiwo_workloads = tuple([await manager.informer(API, k) for k in KAIWO_KINDS])
    if kind == "KaiwoService":  # Ray services: readiness comes from the RayService inside the AppWrapper
        caches.ray_services = await _optional(manager, "ray.io/v1", "RayService", label_selector=RUN_ID_LABEL)
    name = kind.lower()
    ctrl = Controller(name, WorkloadReconciler(manager.client, kind, caches, f"kaiwo-{name}"), workers=workers)
    ctrl.watches(caches.primary)

    def victims(changed: Obj) -> list[Request]:
        """A pending GPU workload (either kind) -> the RUNNING workloads with a duration it may preempt."""
        if pre.pending_since(changed) is None:
            return []
        queue = settings.current(caches.kaiwo_configs).default_cluster_queue_name
        return [Request.of(v) for v in caches.primary.objects() if pre.is_demand_for(changed, v, queue)]

    for peer in caches.kaiwo_workloads:
        ctrl.watches(peer, victims)
    for inf in children.values():
        ctrl.owns(inf, API, kind)
    if caches.workloads is not None:
        wl_children = children

        def workload_owner(wl: Obj) -> list[Request]:
            out = []
            for ref in wl["metadata"].get("ownerReferences") or []:
                child_inf = wl_children.get(ref.get("kind", ""))
                child = child_inf.get_by(ref["name"], wl["metadata"].get("namespace")) if child_inf else None
                if child is not None:
                    out += [
                        Request(wl["metadata"].get("namespace"), r["name"])
                        for r in child["metadata"].get("ownerReferences") or []
                        if r.get("kind") == kind
                    ]
            return out

        ctrl.watches(caches.workloads, workload_owner)
    ctrl.watches(
        caches.pods,
        lambda p: (
            [Request(p["metadata"].get("namespace"), p["metadata"]["labels"][NAME_LABEL])]
            if NAME_LABEL in (p["metadata"].get("labels") or {})
            else []
        ),
    )
    if caches.ray_services is not None:  # owned by the AppWrapper, so mapped by the name label, not the owner
        ctrl.watches(
            caches.ray_services,
            lambda rs: (
                [Request(rs["metadata"].get("namespace"), rs["metadata"]["labels"][NAME_LABEL])]
                if NAME_LABEL in (rs["metadata"].get("labels") or {})
                else []
            ),
        )
    manager.add(ctrl)
    return ctrl
