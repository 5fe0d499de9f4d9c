"""KaiwoJob and KaiwoService controllers: one shared reconcile (docs/design/upstream.md#workload-reconcile,
docs/design/decisions.md D3-D7, D9-D11).

Per reconcile of a workload:
1. terminal (COMPLETE, FAILED, TERMINATED): nothing to do; TERMINATING: delete the children, TERMINATED;
2. translate the CR with the live KaiwoConfig and the node pools (kaiwo.translate.workload); a TranslateError
   or a queue that the KaiwoQueueConfig does not offer (to this namespace) -> ERROR, ``Schedulable=False``.
   These checks judge only what is still to be created: once the workload child exists, a capacity
   shortfall (cordoned or drained GPU nodes) changes nothing shown, an invalid edit is ``SpecApplied=False``,
   and the phase comes from the child (``_from_existing``);
3. apply the storage children; while the download Job runs -> DOWNLOADING, if it failed -> FAILED;
4. ensure the LocalQueue (only for ClusterQueues without a ``namespaces`` list, docs/design/decisions.md D9), then apply
   the workload children by server-side apply (skipped when unchanged, so spec edits propagate and a settled
   workload costs no writes). ``spec.suspend`` of a Job or RayJob is sent only on creation: afterwards it is
   Kueue's (``_apply_one``), so no re-apply suspends an admitted workload or restarts its pods. A rejection
   (immutable field, invalid child, an admission webhook that denies or cannot be called) ->
   ``SpecApplied=False`` naming the child and the webhook, one Warning event per generation and reason, and
   the same rejected object is not resent until it or the child changes; a webhook that is down is retried
   with backoff (1 s doubling to 20 s) and keeps the phase (the user has nothing to fix);
5. derive the phase from the child and Kueue's Workload (kaiwo.translate.status); a Deployment is PENDING
   until its pods have passed Kueue's admission gate. A pass that has just created the workload child stops
   here: the child's own event brings the next pass, which writes the status (docs/design/decisions.md D35);
6. duration preemption (kaiwo.translate.preemption, docs/design/decisions.md D12): a RUNNING workload with
   ``spec.duration`` gets ``Preemptable`` and is requeued at its deadline; once expired it becomes TERMINATING when a
   KaiwoJob or KaiwoService of the same ClusterQueue and GPU vendor has pended with GPUs for longer than
   ``pendingThresholdForPreemption`` (then step 1 deletes its children). Each controller also watches both Kaiwo kinds
   and maps a pending GPU workload to the RUNNING workloads with a duration it could preempt, and an expired workload
   requeues itself for when young demand crosses the threshold: level-triggered, no timers elsewhere;
7. write the status only when it changed, with one event per phase transition (and one ``Preemptable``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from opentelemetry import trace

from kaiwo.api import groups
from kaiwo.api.common import WorkloadCondition as Cond
from kaiwo.api.common import WorkloadEvent as Event
from kaiwo.api.common import WorkloadStatus as Status
from kaiwo.api.config import KaiwoConfigSpec
from kaiwo.controllers import settings
from kaiwo.runtime.apply import Applier, Expectations, desired_hash
from kaiwo.runtime.builder import ControllerSpec, For, Owns, Reads, Sources, Watches, build
from kaiwo.runtime.client import ApiError, Client
from kaiwo.runtime.controller import Controller, Request, Result
from kaiwo.runtime.events import EventRecorder
from kaiwo.runtime.informer import Informer, object_key
from kaiwo.runtime.manager import Manager
from kaiwo.runtime.objects import Obj, condition
from kaiwo.runtime.timestamps import epoch as timestamp_epoch
from kaiwo.runtime.timestamps import rfc3339
from kaiwo.translate import gpus, nodepools, storage
from kaiwo.translate import preemption as pre
from kaiwo.translate import status as st
from kaiwo.translate.meta import INVALID_SPEC, TranslateError
from kaiwo.translate.queueconfig import KUEUE_API, KUEUE_APIS
from kaiwo.translate.workload import Children, Facts, desired_children

log = logging.getLogger(__name__)
API = groups.KAIWO_API
RUN_ID_LABEL = "kaiwo.silogen.ai/run-id"
NAME_LABEL = "kaiwo.silogen.ai/name"
KAIWO_KINDS = ("KaiwoJob", "KaiwoService")
ERROR_RETRY = 60.0
SHARED_DOWNLOAD_POLL = 2.0  # seconds between looks at a download shared through the download cache
EVENTS = {
    Status.PENDING: Event.PENDING,
    Status.STARTING: Event.STARTING,
    Status.RUNNING: Event.RUNNING,
    Status.COMPLETE: Event.COMPLETE,
    Status.FAILED: Event.FAILED,
    Status.ERROR: Event.ERROR,
    Status.DOWNLOADING: Event.DOWNLOADING,
    Status.TERMINATING: Event.TERMINATION,
    Status.TERMINATED: Event.TERMINATED,
}
WARNING_PHASES = ("FAILED", "ERROR", "TERMINATING")
SUSPEND_MANAGER_SUFFIX = "-suspend"
WEBHOOK_UNAVAILABLE = "WebhookUnavailable"  # an admission webhook could not be called (its server is down)
WEBHOOK_DENIED = "WebhookDenied"
WEBHOOK_DOWN = (WEBHOOK_UNAVAILABLE,)  # transient: the workload stays as it is and is retried with backoff
WEBHOOK_RETRY_MAX = 20.0
MAX_REMEMBERED = 10_000  # per-object memos (events sent, webhook attempts); the oldest is dropped first
Observed = tuple[st.Phase, list[Obj]]  # a workload child's phase, with the conditions that explain it
# Concurrent reconciles per workload controller. A reconcile mostly waits on the apiserver and a worker is an
# asyncio task, so many are cheap; 2 (a Go operator's habit) left a burst queueing, and 64 beat 32 in bursts of
# 1,000 and 5,000 (docs/performance.md#workers).
DEFAULT_WORKERS = 64
# Children, Kueue Workloads and pods change in bursts (created, admitted, unsuspended, scheduled, running). The
# status pass they ask for waits this long, so one pass (one status write, one event) covers a burst of them;
# a new or edited KaiwoJob or KaiwoService does not wait (docs/design/runtime.md#related-batch;
# docs/design/decisions.md D36).
RELATED_BATCH_SECONDS = 1.0


@dataclass(frozen=True)
class Failure:
    """A child the apiserver would not take: the SpecApplied reason and a message naming the child."""

    reason: str
    message: str


def failure(obj: Obj, e: ApiError) -> Failure | None:
    """Classify a rejected write; None for errors that are not about this object (they raise)."""
    what = f"{obj['kind']} {obj['metadata']['name']}: {e.message}"
    text = e.message.lower()
    if "webhook" in text and "denied the request" in text:
        return Failure(WEBHOOK_DENIED, what)
    if "webhook" in text:  # "failed calling webhook ...": the webhook's server does not answer
        return Failure(WEBHOOK_UNAVAILABLE, what)
    if e.status == 422:
        return Failure("ImmutableField" if "immutable" in text else "InvalidChild", what)
    return None


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

    @classmethod
    def of(cls, sources: Sources, kind: str) -> Caches:
        """The caches of the ``kind`` controller, from its resolved sources (``spec(kind)``)."""
        return cls(
            primary=sources[kind],
            children={k: inf for k in CHILD_KINDS if (inf := sources.get(k)) is not None},
            workloads=sources.get("Workload"),
            pods=sources["Pod"],
            nodes=sources["Node"],
            kaiwo_configs=sources.get("KaiwoConfig"),
            queue_configs=sources.get("KaiwoQueueConfig"),
            local_queues=sources.get("LocalQueue"),
            kaiwo_workloads=tuple(sources[k] for k in KAIWO_KINDS),
            ray_services=sources.get("RayService"),
        )


class WorkloadReconciler:
    def __init__(
        self,
        client: Client,
        kind: str,
        caches: Caches,
        field_manager: str,
        wall: Callable[[], float] = time.time,
        kueue_api: str = KUEUE_API,
        downloader_image: str = storage.DOWNLOADER_IMAGE,
        background_events: bool = False,
    ) -> None:
        self.client = client
        self.kueue_api = kueue_api  # the Kueue API version this cluster serves (discovered at setup)
        self.kind = kind
        self.caches = caches
        self.wall = wall  # wall-clock epoch seconds: status times and duration deadlines are wall-clock
        self.applier = Applier(client, field_manager)
        # In the manager, events are sent in the background: a reconcile never waits for one (runtime/events.py).
        self.events = EventRecorder(client, field_manager, background=background_events, wall=wall)
        # LocalQueues created but not yet in the cache: concurrent reconciles in one namespace create it once.
        self.queue_creates = Expectations(ttl=30.0)
        self._spec_events: dict[str, tuple[int, str]] = {}  # uid -> (generation, reason) of the last SpecNotApplied
        self._webhook_attempts: dict[str, int] = {}  # uid -> tries while an admission webhook is down
        # child key -> ((desired hash, live resourceVersion), failure) of the last rejected apply
        self._rejected: dict[str, tuple[tuple[str, str], Failure]] = {}
        self.downloader_image = downloader_image  # the manager's --downloader-image
        # The GPU pools of the last node set seen, by (exclude control plane, (name, resourceVersion) of each node):
        # every reconcile needs them, and nodes change far less often than workloads.
        self._gpu_pools: tuple[tuple[bool, tuple[tuple[str, str], ...]], tuple[gpus.GpuPool, ...]] | None = None

    def gpu_pools(self, exclude_control_plane: bool) -> tuple[gpus.GpuPool, ...]:
        """The cluster's GPU pools, discovered again only when a node changed."""
        nodes = self.caches.nodes.objects()
        versions = tuple((n["metadata"]["name"], n["metadata"].get("resourceVersion", "")) for n in nodes)
        key = (exclude_control_plane, versions)
        if self._gpu_pools is None or self._gpu_pools[0] != key:
            pools = nodepools.discover(nodes, exclude_control_plane=exclude_control_plane)
            self._gpu_pools = (key, gpus.gpu_pools(pools))
        return self._gpu_pools[1]

    async def reconcile(self, req: Request) -> Result | None:
        trace.get_current_span().set_attribute("kaiwo.kind", self.kind)  # the reconcile span names the Kaiwo kind
        cr = self.caches.primary.get_by(req.name, req.namespace)
        if cr is None:
            return None
        old = cr.get("status") or {}
        phase = old.get("status") or ""
        if phase in st.TERMINAL:
            return None
        if phase == Status.TERMINATING:
            await self._delete_children(cr)
            why = condition(cr, Cond.WORKLOAD_TERMINATED_EARLY) or {}
            await self._set(
                cr,
                Status.TERMINATED,
                [
                    st.condition(
                        Cond.WORKLOAD_TERMINATED_EARLY,
                        True,
                        why.get("reason") or "EarlyTermination",
                        why.get("message") or "the workload was terminated",
                    )
                ],
            )
            return None
        cfg = settings.current(self.caches.kaiwo_configs)
        gpu_pools = self.gpu_pools(cfg.nodes.exclude_master_nodes_from_node_pools)
        facts = Facts(config=cfg, gpu_pools=gpu_pools, downloader_image=self.downloader_image)
        built = desired_children(cr, facts)
        existing = self._existing_workload(cr)
        if isinstance(built, TranslateError):
            if existing is not None:  # the child runs: its state is the truth, capacity checks no longer apply
                return await self._from_existing(cr, cfg, existing, built)
            await self._set(cr, Status.ERROR, [st.condition(Cond.SCHEDULABLE, False, built.reason, built.message)])
            return Result(requeue_after=ERROR_RETRY)
        queue = (cr.get("spec") or {}).get("clusterQueue") or cfg.default_cluster_queue_name
        problem = None if existing is not None else self._queue_problem(cr, queue)
        if problem:
            await self._set(cr, Status.ERROR, [st.condition(Cond.SCHEDULABLE, False, *problem)])
            return Result(requeue_after=ERROR_RETRY)
        schedulable = st.condition(Cond.SCHEDULABLE, True, "Schedulable", "the workload fits the cluster")
        conditions = [schedulable]

        failures = await self._ensure_local_queue(cr, queue)  # before the download Job, which is queued too
        # A download Job is applied once: its pod template is immutable and Kueue owns `suspend` after creation.
        failures += await self._apply(tuple(o for o in built.storage if o["kind"] != "Job" or self._live(o) is None))
        download = next((o for o in built.storage if o["kind"] == "Job"), None)
        if download is not None:
            dl = self._live(download)
            d_phase = st.job_phase(dl, True)
            if d_phase.status == Status.FAILED:
                pods = self.caches.pods.objects(cr["metadata"]["namespace"])
                message = storage.download_failure(download, pods, d_phase.message)
                await self._set(
                    cr,
                    Status.FAILED,
                    [*conditions, st.condition(Cond.DOWNLOAD_JOB_SUCCEEDED, False, "JobFailed", message)],
                )
                return None
            if d_phase.status != Status.COMPLETE:
                waiting = dl is None or bool((dl.get("spec") or {}).get("suspend"))
                progress = (
                    ("JobPending", f"the download job waits for admission into queue {queue!r}")
                    if waiting
                    else ("JobInProgress", "downloading into the storage volumes")
                )
                await self._set(
                    cr, Status.DOWNLOADING, [*conditions, st.condition(Cond.DOWNLOAD_JOB_SUCCEEDED, False, *progress)]
                )
                # A shared (cached) download has no owner, so its changes do not wake this workload: look again.
                shared = not download["metadata"].get("ownerReferences")
                return Result(requeue_after=SHARED_DOWNLOAD_POLL) if shared else None
            conditions.append(st.condition(Cond.DOWNLOAD_JOB_SUCCEEDED, True, "JobCompleted", "downloads complete"))

        main = next((o for o in built.workload if o["kind"] in WORKLOAD_KINDS), None)
        creating = main is not None and self._live(main) is None
        failures += await self._apply(built.workload)
        if creating and not failures:
            # Created just now: the child's own watch event wakes the next pass at once, and that pass writes the
            # status from what the cache shows then. A PENDING written here would be one more CR status write in a
            # burst, by whose end Kueue has often admitted the child (docs/design/decisions.md D35).
            self._webhook_attempts.pop(cr["metadata"].get("uid", ""), None)
            return None
        if failures:
            reason, message = failures[0].reason, "; ".join(f.message for f in failures)
            conditions.append(st.condition(Cond.SPEC_APPLIED, False, reason, message))
            await self._spec_event(cr, reason, message)
        else:
            conditions.append(st.condition(Cond.SPEC_APPLIED, True, "Applied", "children match the spec"))
        phase_now, observed = self._observe(built)
        conditions += observed
        user_error = any(f.reason not in WEBHOOK_DOWN for f in failures)
        if user_error and main is not None and self._live(main) is None:
            phase_now = st.Phase(Status.ERROR)  # the child cannot be created: ERROR (docs/design/decisions.md D31)
        result = await self._finish(cr, cfg, phase_now.status, conditions)
        if any(f.reason in WEBHOOK_DOWN for f in failures):
            return Result(requeue_after=self._webhook_backoff(cr))
        self._webhook_attempts.pop(cr["metadata"].get("uid", ""), None)
        return result

    async def _finish(self, cr: Obj, cfg: KaiwoConfigSpec, status: Status, conditions: list[Obj]) -> Result | None:
        """Duration preemption of a RUNNING workload, then the status write; the requeue that follows."""
        recheck = None
        if status == Status.RUNNING and (cr.get("spec") or {}).get("duration"):
            status, recheck = self._duration(cr, cfg, conditions)
        await self._set(cr, status, conditions)
        if status == Status.ERROR:
            return Result(requeue_after=ERROR_RETRY)
        return Result(requeue_after=recheck) if recheck else None

    async def _from_existing(self, cr: Obj, cfg: KaiwoConfigSpec, live: Obj, error: TranslateError) -> Result | None:
        """The spec cannot be translated (any more) but the workload child exists: nothing is applied, the
        phase comes from the child. A capacity shortfall (cordoned or drained GPU nodes) changes nothing that
        is shown; an invalid edit is ``SpecApplied=False`` with one Warning event per generation."""
        conditions: list[Obj] = []
        if error.reason == INVALID_SPEC:
            conditions.append(st.condition(Cond.SPEC_APPLIED, False, error.reason, error.message))
            await self._spec_event(cr, error.reason, error.message)
        phase, observed = self._observe_live(live)
        return await self._finish(cr, cfg, phase.status, conditions + observed)

    async def _spec_event(self, cr: Obj, reason: str, message: str) -> None:
        """One ``SpecNotApplied`` Warning per generation and reason, not one per pass: remembered here (a
        pass may run before the cache shows our status write) and read from the status (after a restart)."""
        meta = cr["metadata"]
        uid, generation = meta.get("uid", ""), meta.get("generation", 0)
        seen = (generation, reason)
        if self._spec_events.get(uid) == seen:
            return
        old = cr.get("status") or {}
        was = condition(cr, Cond.SPEC_APPLIED) or {}
        self._spec_events[uid] = seen
        if len(self._spec_events) > MAX_REMEMBERED:
            del self._spec_events[next(iter(self._spec_events))]
        if was.get("status") == "False" and was.get("reason") == reason and old.get("observedGeneration") == generation:
            return
        await self.events.emit(cr, Event.SPEC_NOT_APPLIED, message, warning=True)

    def _webhook_backoff(self, cr: Obj) -> float:
        """Seconds until the next try while an admission webhook is down: doubling from 1 s, at most 20 s."""
        uid = cr["metadata"].get("uid", "")
        attempts = self._webhook_attempts.get(uid, 0)
        self._webhook_attempts[uid] = attempts + 1
        return float(min(WEBHOOK_RETRY_MAX, 2**attempts))

    # --- helpers ----------------------------------------------------------------------------------------

    def _queue_problem(self, cr: Obj, queue: str) -> tuple[str, str] | None:
        qcs = self.caches.queue_configs
        qc = qcs.get_by("kaiwo") if qcs is not None else None
        if qc is None:
            return None  # no KaiwoQueueConfig: Kueue decides (docs/design/decisions.md D34)
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

    def _existing_workload(self, cr: Obj) -> Obj | None:
        """The live workload child (Job, RayJob, Deployment or AppWrapper named like ``cr``) owned by ``cr``."""
        meta = cr["metadata"]
        for kind in WORKLOAD_KINDS:
            inf = self.caches.children.get(kind)
            live = inf.get_by(meta["name"], meta.get("namespace")) if inf is not None else None
            if live is not None and any(
                r.get("uid") == meta.get("uid") for r in live["metadata"].get("ownerReferences") or []
            ):
                return live
        return None

    async def _apply(self, objs: tuple[Obj, ...]) -> list[Failure]:
        """Apply each object; rejections by the apiserver or a webhook come back as failures, other errors raise."""
        failures = []
        for obj in objs:
            live = self._live(obj)
            # The same desired object against the same live version was rejected before: the answer would be
            # the same, so no request (a resync of a workload with an immutable-field edit costs no writes).
            attempt = (desired_hash(obj), ((live or {}).get("metadata") or {}).get("resourceVersion", ""))
            key = f"{obj['kind']}/{obj['metadata'].get('namespace')}/{obj['metadata']['name']}"
            rejected = self._rejected.get(key)
            if rejected is not None and rejected[0] == attempt:
                failures.append(rejected[1])
                continue
            try:
                await self._apply_one(obj, live)
                self._rejected.pop(key, None)
            except ApiError as e:
                f = failure(obj, e)
                if f is None:
                    raise
                failures.append(f)
                if f.reason not in WEBHOOK_DOWN:  # a webhook that is down may answer next time
                    self._rejected[key] = (attempt, f)
                    if len(self._rejected) > MAX_REMEMBERED:
                        del self._rejected[next(iter(self._rejected))]
        return failures

    async def _apply_one(self, desired: Obj, live: Obj | None) -> None:
        """Server-side apply ``desired``; once a Job, RayJob or AppWrapper exists its ``spec.suspend`` is Kueue's.

        It is created with ``suspend: true`` under our field manager. Later applies leave the field out, and
        server-side apply resets a field its only owner stops sending: a queued child would be un-suspended
        for a moment (and Kueue would suspend it again). So while the child is suspended, a second manager of
        ours first applies ``suspend: true`` without force, sharing the field (with us, or with Kueue when it
        last wrote it); a conflict means Kueue has just un-suspended it and owns it alone. Kueue's own writes
        take the field from every other manager. The cache holds no managedFields, so this is decided from the
        value alone. Either way the main apply then releases the field without changing it: a re-apply never
        suspends an admitted workload, nor un-suspends a queued one. The hash covers the full desired object,
        so an unchanged workload still costs no request.
        """
        if live is None or desired["kind"] not in KUEUE_SUSPENDS:
            await self.applier.apply(desired, live)
            return
        if self.applier.unchanged(desired, live):
            self.applier.skipped += 1
            return
        manager = self.applier.field_manager
        if (live.get("spec") or {}).get("suspend") is True:
            meta = live["metadata"]
            keep = {
                "apiVersion": desired["apiVersion"],
                "kind": desired["kind"],
                "metadata": {"name": meta["name"], "namespace": meta.get("namespace")},
                "spec": {"suspend": True},
            }
            try:
                await self.client.apply(keep, manager + SUSPEND_MANAGER_SUFFIX, force=False)
            except ApiError as e:
                if not e.conflict:
                    raise
        body, _ = self.applier.with_hash(desired)
        body["spec"] = {k: v for k, v in body["spec"].items() if k != "suspend"}
        self.applier.applied += 1
        await self.client.apply(body, manager, force=True)

    async def _ensure_local_queue(self, cr: Obj, queue: str) -> list[Failure]:
        """Lazily create the LocalQueue for ClusterQueues that do not list namespaces (docs/design/decisions.md D9)."""
        ns = cr["metadata"]["namespace"]
        key = f"{ns}/{queue}"
        if self.caches.local_queues is None:
            return []
        if self.caches.local_queues.get_by(queue, ns) is not None:
            self.queue_creates.observed(key, key)
            return []
        if not self.queue_creates.satisfied(key):
            return []  # created a moment ago; the cache has not shown it yet
        qcs = self.caches.queue_configs
        qc = qcs.get_by("kaiwo") if qcs is not None else None
        listed = any(
            cq.get("name") == queue and cq.get("namespaces")
            for cq in ((qc or {}).get("spec") or {}).get("clusterQueues") or []
        )
        if listed:
            return []  # the KaiwoQueueConfig controller owns LocalQueues of this ClusterQueue
        self.queue_creates.expect(key, key)  # before the await: a concurrent reconcile must see it
        local_queue: Obj = {
            "apiVersion": self.kueue_api,
            "kind": "LocalQueue",
            "metadata": {"name": queue, "namespace": ns, "labels": {"kaiwo.silogen.ai/managed-by": "kaiwo-workload"}},
            "spec": {"clusterQueue": queue},
        }
        try:
            await self.client.create(local_queue)
        except ApiError as e:
            if not e.conflict:
                self.queue_creates.forget(key)
                f = failure(local_queue, e)
                if f is None:
                    raise
                return [f]
        return []

    def _observe(self, built: Children) -> tuple[st.Phase, list[Obj]]:
        """The phase from the workload child, with the conditions that explain it (Admitted, Progressing)."""
        main = next((o for o in built.workload if o["kind"] in WORKLOAD_KINDS), None)
        if main is None:
            return st.Phase(Status.STARTING), []
        return self._observe_child(main, self._live(main))

    def _observe_live(self, live: Obj) -> tuple[st.Phase, list[Obj]]:
        return self._observe_child(live, live)

    def _observe_child(self, main: Obj, live: Obj | None) -> Observed:
        observe = CHILD_KINDS[main["kind"]].observe
        assert observe is not None, main["kind"]  # main is one of WORKLOAD_KINDS
        return observe(self, main, live)

    def _observe_job(self, desired: Obj, live: Obj | None) -> Observed:
        admitted, cond = self._admitted(live)
        return st.job_phase(live, admitted), [cond]

    def _observe_rayjob(self, desired: Obj, live: Obj | None) -> Observed:
        admitted, cond = self._admitted(live)
        phase = st.rayjob_phase(live, admitted)
        finished = st.rayjob_condition(phase)
        return phase, [cond, finished] if finished else [cond]

    def _observe_appwrapper(self, desired: Obj, live: Obj | None) -> Observed:
        """A Ray service: readiness comes from the RayService the AppWrapper controller made."""
        _, cond = self._admitted(live)
        phase = st.rayservice_phase(live, self._ray_service(desired))
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

    def _admitted(self, child: Obj | None) -> tuple[bool, Obj]:
        """Whether Kueue admitted ``child`` (through its Workload), and the Admitted condition saying so."""
        admitted, message = self._admission(child)
        return admitted, st.condition("Admitted", admitted, "Admitted" if admitted else "Pending", message)

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

    def _duration(self, cr: Obj, cfg: KaiwoConfigSpec, conditions: list[Obj]) -> tuple[Status, float | None]:
        """A RUNNING workload with ``spec.duration``: its Preemptable condition, and TERMINATING once it is expired
        and same-queue, same-vendor GPU demand has waited long enough. Returns (phase, seconds until a recheck)."""
        now = self.wall()
        start = (cr.get("status") or {}).get("startTime")
        p = pre.preemptability(timestamp_epoch(start) if start else now, cr["spec"]["duration"], now)
        conditions.append(p.condition)
        if not p.expired:
            return Status.RUNNING, p.seconds_left
        queue = cfg.default_cluster_queue_name
        candidates = (obj for inf in self.caches.kaiwo_workloads for obj in inf.objects())
        threshold = pre.go_duration(cfg.scheduling.pending_threshold_for_preemption)
        d = pre.demand(pre.claim(cr, queue), candidates, queue, threshold, now)
        if not d.now:
            return Status.RUNNING, d.next_check
        conditions.append(
            st.condition(
                Cond.WORKLOAD_TERMINATED_EARLY,
                False,
                "DurationExceededWithActiveGpuDemand",
                "terminated: the duration was exceeded and GPU work of the same queue and vendor is waiting",
            )
        )
        return Status.TERMINATING, None

    async def _set(self, cr: Obj, phase: Status, conditions: list[Obj]) -> None:
        old = cr.get("status") or {}
        epoch = self.wall()
        new = st.next_status(
            old, phase, conditions, now=rfc3339(epoch), now_epoch=epoch, generation=cr["metadata"].get("generation", 0)
        )
        if await self.applier.write_status(cr, new, st.differs) is None:
            return  # nothing changed, or the cache has not shown our identical last write yet
        if old.get("status") != phase and phase in EVENTS:
            message = next((c["message"] for c in conditions if c["status"] == "False"), f"workload is {phase}")
            await self.events.emit(cr, EVENTS[phase], message, warning=phase in WARNING_PHASES)
        expired = next((c for c in conditions if c["type"] == Cond.PREEMPTABLE and c["status"] == "True"), None)
        was = condition(cr, Cond.PREEMPTABLE) or {}
        if expired is not None and was.get("status") != "True":
            await self.events.emit(cr, Event.PREEMPTABLE, expired["message"])

    async def _delete_children(self, cr: Obj) -> None:
        uid = cr["metadata"]["uid"]
        for kind, inf in self.caches.children.items():
            for obj in inf.by_index("owner", uid):
                meta = obj["metadata"]
                await self.client.delete(
                    CHILD_KINDS[kind].api_version, kind, meta["name"], meta.get("namespace"), propagation="Foreground"
                )


@dataclass(frozen=True)
class ChildKind:
    """A kind of object the workload controllers make for a Kaiwo workload (all labelled with its run id)."""

    api_version: str
    # The workload child (at most one per Kaiwo object): how its phase and conditions are observed. None: a
    # supporting child (storage, networking), which does not decide the phase.
    observe: Callable[[WorkloadReconciler, Obj, Obj | None], Observed] | None = None
    # Kueue owns ``spec.suspend`` once the child exists (it admits by un-suspending, preempts by suspending): the
    # operator sets it only on creation (an AppWrapper gets it from its webhook, which the apiserver may book
    # under our manager); see ``WorkloadReconciler._apply_one``.
    kueue_suspends: bool = False


# Every child kind, one line each: the workload controllers cache, own, apply and delete exactly these.
CHILD_KINDS: dict[str, ChildKind] = {
    "Job": ChildKind("batch/v1", WorkloadReconciler._observe_job, kueue_suspends=True),
    "Deployment": ChildKind("apps/v1", WorkloadReconciler._observe_deployment),
    "Service": ChildKind("v1"),
    "PersistentVolumeClaim": ChildKind("v1"),
    "ConfigMap": ChildKind("v1"),
    "RayJob": ChildKind("ray.io/v1", WorkloadReconciler._observe_rayjob, kueue_suspends=True),
    "AppWrapper": ChildKind(
        "workload.codeflare.dev/v1beta2", WorkloadReconciler._observe_appwrapper, kueue_suspends=True
    ),
}
WORKLOAD_KINDS = tuple(kind for kind, c in CHILD_KINDS.items() if c.observe is not None)
KUEUE_SUSPENDS = tuple(kind for kind, c in CHILD_KINDS.items() if c.kueue_suspends)


# --- wiring ------------------------------------------------------------------------------------------------


def victims(r: WorkloadReconciler, changed: Obj) -> list[Request]:
    """A pending GPU workload (either kind) -> the RUNNING workloads of ``r``'s kind with a duration it may
    preempt (looked up by claim in the primary cache's victim index: no scan per event)."""
    if pre.pending_since(changed) is None:
        return []
    queue = settings.current(r.caches.kaiwo_configs).default_cluster_queue_name
    primary = r.caches.primary
    candidates = (v for k in pre.victim_keys(changed, queue) for v in primary.by_index(pre.VICTIM_INDEX, k))
    return [Request.of(v) for v in candidates if pre.is_demand_for(changed, v, queue)]


def workload_owner(r: WorkloadReconciler, wl: Obj) -> list[Request]:
    """A Kueue Workload -> the Kaiwo object (of ``r``'s kind) that owns the child the Workload admits."""
    meta = wl["metadata"]
    out = []
    for ref in meta.get("ownerReferences") or []:
        child_inf = r.caches.children.get(ref.get("kind", ""))
        child = child_inf.get_by(ref["name"], meta.get("namespace")) if child_inf else None
        if child is not None:
            out += [
                Request(meta.get("namespace"), o["name"])
                for o in child["metadata"].get("ownerReferences") or []
                if o.get("kind") == r.kind
            ]
    return out


def pod_owner(r: WorkloadReconciler, pod: Obj) -> list[Request]:
    """A labelled pod -> its Kaiwo object, only if it is of ``r``'s kind (both controllers see every labelled
    pod; a key for the other kind would be a wasted reconcile)."""
    meta = pod["metadata"]
    name = (meta.get("labels") or {}).get(NAME_LABEL)
    if name is None or r.caches.primary.get_by(name, meta.get("namespace")) is None:
        return []
    return [Request(meta.get("namespace"), name)]


def named_owner(_: object, obj: Obj) -> list[Request]:
    """An object labelled with a Kaiwo object's name -> that object (a RayService is owned by its AppWrapper,
    so it is mapped by the name label, not the owner)."""
    meta = obj["metadata"]
    name = (meta.get("labels") or {}).get(NAME_LABEL)
    return [Request(meta.get("namespace"), name)] if name is not None else []


def spec(kind: str) -> ControllerSpec:
    """The KaiwoJob or KaiwoService controller's sources (pure data: ``kaiwo.rbac`` reads it too)."""
    return ControllerSpec(
        kind.lower(),
        (
            For(API, kind, indexes=((pre.VICTIM_INDEX, pre.victim_index),)),
            *(Watches(API, peer, mapper=victims) for peer in KAIWO_KINDS),
            *(Owns(c.api_version, k, selector=RUN_ID_LABEL, optional=True) for k, c in CHILD_KINDS.items()),
            Watches(KUEUE_APIS, "Workload", mapper=workload_owner, optional=True),
            Watches("v1", "Pod", mapper=pod_owner, selector=RUN_ID_LABEL),
            # Ray services: readiness comes from the RayService inside the AppWrapper
            *(
                (Watches("ray.io/v1", "RayService", mapper=named_owner, selector=RUN_ID_LABEL, optional=True),)
                if kind == "KaiwoService"
                else ()
            ),
            Reads("v1", "Node"),
            Reads(settings.KAIWO_CONFIG_API, "KaiwoConfig", optional=True),
            Reads(API, "KaiwoQueueConfig", optional=True),
            Reads(KUEUE_APIS, "LocalQueue", optional=True),
        ),
        related_batch=RELATED_BATCH_SECONDS,
    )


SPECS = {kind: spec(kind) for kind in KAIWO_KINDS}


async def setup(
    manager: Manager, kind: str, workers: int = DEFAULT_WORKERS, downloader_image: str = storage.DOWNLOADER_IMAGE
) -> Controller:
    """Register the KaiwoJob or KaiwoService controller with ``manager``."""

    def reconciler(sources: Sources) -> WorkloadReconciler:
        # Kueue objects are written in the version its Workloads are read in (the preferred one if not served)
        kueue_api = sources.served("Workload") or KUEUE_API
        return WorkloadReconciler(
            manager.client,
            kind,
            Caches.of(sources, kind),
            f"kaiwo-{kind.lower()}",
            kueue_api=kueue_api,
            downloader_image=downloader_image,
            background_events=True,
        )

    ctrl, _ = await build(manager, SPECS[kind], reconciler, workers=workers)
    return ctrl
