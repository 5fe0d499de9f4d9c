"""KaiwoQueueConfig controller: node-pool discovery, the default config, and the Kueue objects it owns.

Reconcile of the singleton ``kaiwo`` (docs/design/upstream.md#queueconfig-reconcile, docs/design/decisions.md D8-D9):
1. read KaiwoConfig, Nodes and Namespaces from the caches and discover the node pools;
2. if the KaiwoQueueConfig is missing, create the default one (discovered flavors, default ClusterQueue and
   Topology) and stop: its creation event brings us back. In dynamic mode, merge the freshly discovered
   defaults into the existing config (flavors and topologies by name, the default ClusterQueue replaced);
3. label every pool node (``kaiwo/worker``, ``kaiwo/nodepool``, ``kaiwo/gpu-model``, default topology labels
   where missing) with server-side apply under a field manager of its own;
4. sync Topologies -> ResourceFlavors -> ClusterQueues -> LocalQueues -> WorkloadPriorityClasses: apply what
   changed, delete what Kaiwo owns (label + ownerReference) but no longer wants, never touch other objects;
   a ResourceFlavor whose immutable spec changed is deleted (finalizer removed) and recreated; an object that is
   still being deleted, or that names one (Kueue's ``resource-in-use`` finalizer), waits for its deletion;
5. check every wanted Kueue object as Kueue sees it (kaiwo.translate.kueuestate): one that is terminating (e.g. a
   ClusterQueue kept by the ``resource-in-use`` finalizer while workloads are admitted), inactive, or not yet
   reported Active makes the config not ready, with the object, Kueue's reason and what holds it named;
6. write ``status.status`` READY or FAILED with a ``Ready`` condition saying what failed (reason ``SyncFailed``
   when an apply/delete was rejected, ``KueueObjectNotReady`` when Kueue cannot use an object); retry after 30 s.
Every real change of a Kueue object is an event on the KaiwoQueueConfig, named as upstream's
``KaiwoQueueConfig<Kind><Created|Updated|Deleted>`` or ``KaiwoQueueConfig<Kind>Failed`` (Warning); a pass that
changes nothing emits nothing.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kaiwo.api import crds, groups
from kaiwo.api import queueconfig as api_queueconfig
from kaiwo.api.queueconfig import QueueConfigStatus
from kaiwo.api.schema import apply_defaults
from kaiwo.controllers import settings
from kaiwo.runtime.apply import Applier
from kaiwo.runtime.builder import ControllerSpec, For, Reads, Sources, Watches, build
from kaiwo.runtime.client import ApiError, Client
from kaiwo.runtime.controller import Controller, Request, Result
from kaiwo.runtime.events import EventRecorder
from kaiwo.runtime.informer import Informer, object_key
from kaiwo.runtime.manager import Manager
from kaiwo.runtime.objects import Obj, status_condition
from kaiwo.runtime.timestamps import epoch, rfc3339
from kaiwo.translate import kueuestate, nodepools, queueconfig

log = logging.getLogger(__name__)
API = groups.KAIWO_API
KIND = "KaiwoQueueConfig"
NAME = "kaiwo"
FIELD_MANAGER = "kaiwo-queueconfig"
NODE_FIELD_MANAGER = "kaiwo-nodepools"
FAILED_RETRY = 30.0
KUEUE_REPORT_GRACE = 20.0  # seconds a new ClusterQueue/LocalQueue may lack Kueue's Active condition
KUEUE = queueconfig.KUEUE_API
FLAVOR_IN_USE_FINALIZER = "kueue.x-k8s.io/resource-in-use"
TOPOLOGY_VERSIONS = ("kueue.x-k8s.io/v1beta2", "kueue.x-k8s.io/v1beta1", "kueue.x-k8s.io/v1alpha1")


@dataclass
class Caches:
    queue_configs: Informer
    kaiwo_configs: Informer | None
    nodes: Informer
    namespaces: Informer
    kueue: dict[str, Informer]  # kind -> informer (Topology only when the cluster serves it)
    topology_api: str | None
    kueue_api: str = KUEUE  # the Kueue version this cluster serves (the first of KUEUE_APIS, see setup)
    workloads: Informer | None = None  # Kueue Workloads: named as what holds a terminating ClusterQueue


def default_spec(pools: list[nodepools.NodePool], cfg: Any) -> Obj:
    return {
        "clusterQueues": [
            nodepools.default_cluster_queue(
                pools, cfg.default_cluster_queue_name, cfg.default_cluster_queue_cohort_name
            )
        ],
        "resourceFlavors": nodepools.default_flavors(pools, cfg.default_topology_name),
        "topologies": [nodepools.default_topology(cfg.default_topology_name)],
    }


@functools.cache
def _spec_schema() -> Obj:
    crd = crds.crd(api_queueconfig.CRD)
    schema: Obj = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return schema


def with_defaults(spec: Obj) -> Obj:
    result: Obj = apply_defaults(_spec_schema(), spec)
    return result


def merge_defaults(spec: Obj, defaults: Obj, default_queue: str) -> Obj:
    """Dynamic mode: discovered flavors and topologies replace same-named entries, the default CQ is replaced."""

    def by_name(items: list[Obj], new: list[Obj], name: Any) -> list[Obj]:
        names = {name(n) for n in new}
        return [i for i in items if name(i) not in names] + new

    merged = dict(spec)
    merged["resourceFlavors"] = by_name(
        spec.get("resourceFlavors") or [], defaults["resourceFlavors"], lambda f: f["name"]
    )
    merged["topologies"] = by_name(
        spec.get("topologies") or [], defaults["topologies"], lambda t: t["metadata"]["name"]
    )
    queues = [q for q in spec.get("clusterQueues") or [] if q["name"] != default_queue]
    merged["clusterQueues"] = [*queues, *defaults["clusterQueues"]]
    return merged


class QueueConfigReconciler:
    def __init__(self, client: Client, caches: Caches, wall: Callable[[], float] = time.time) -> None:
        self.client = client
        self.caches = caches
        self.wall = wall  # wall-clock epoch seconds: condition transition times and Kueue objects' ages
        self.applier = Applier(client, FIELD_MANAGER)
        self.node_applier = Applier(client, NODE_FIELD_MANAGER, hash_annotation="kaiwo.silogen.ai/nodepool-hash")
        self.events = EventRecorder(client, FIELD_MANAGER, wall=wall)

    async def reconcile(self, req: Request) -> Result | None:
        if req.name != NAME:
            log.warning("ignoring KaiwoQueueConfig %s: only the singleton %r is used", req.name, NAME)
            return None
        c = self.caches
        cfg = settings.current(c.kaiwo_configs)
        pools = nodepools.discover(
            c.nodes.objects(), exclude_control_plane=cfg.nodes.exclude_master_nodes_from_node_pools
        )
        live = c.queue_configs.get_by(NAME)
        defaults = default_spec(pools, cfg)
        if live is None:
            try:
                await self.client.create(
                    {"apiVersion": API, "kind": KIND, "metadata": {"name": NAME}, "spec": defaults}
                )
                log.info("created the default KaiwoQueueConfig", extra={"fields": {"flavors": len(pools)}})
            except ApiError as e:
                if not e.conflict:
                    raise
            return None  # created (by us a moment ago, or by someone else): its watch event brings us back
        if cfg.dynamically_update_default_cluster_queue:
            merged = merge_defaults(live.get("spec") or {}, defaults, cfg.default_cluster_queue_name)
            # Compare as the apiserver stores it (with CRD defaults filled in), or every pass would re-patch.
            if with_defaults(merged) != with_defaults(live.get("spec") or {}):
                await self.client.patch(API, KIND, NAME, {"spec": merged})
                return None  # the update event brings us back with the new spec
        errors = await self._label_nodes(pools)
        namespaces = {
            n["metadata"]["name"] for n in c.namespaces.objects() if not n["metadata"].get("deletionTimestamp")
        }
        for cq in (live.get("spec") or {}).get("clusterQueues") or []:
            missing = sorted(set(cq.get("namespaces") or ()) - namespaces)
            if missing:
                errors.append(
                    f"ClusterQueue {cq['name']}: namespace(s) {', '.join(missing)} do not exist, "
                    "so their LocalQueues cannot be created"
                )
        desired = queueconfig.kueue_objects(
            live,
            topology_api_version=c.topology_api,
            existing_namespaces=namespaces,
            default_topology=cfg.default_topology_name,
            kueue_api=c.kueue_api,
        )
        dying: set[tuple[str, str]] = set()  # wanted objects that are still being deleted
        for kind, objs in desired.in_order():
            informer = c.kueue.get(kind)
            if informer is None:
                continue
            errors += await self._sync(live, kind, objs, informer, self._wait_for(kind, objs, informer, dying))
        problems, unreported = self._not_ready(desired)
        await self._write_status(live, errors, problems)
        if errors or problems:
            return Result(requeue_after=FAILED_RETRY)
        return Result(requeue_after=KUEUE_REPORT_GRACE) if unreported else None

    def _not_ready(self, desired: queueconfig.KueueObjects) -> tuple[list[str], bool]:
        """Wanted Kueue objects that exist but that Kueue cannot use, each named with why and what holds it; and
        whether a new object still waits for Kueue's first report (to look again once its grace is over)."""
        c = self.caches
        cqs = c.kueue["ClusterQueue"].objects() if "ClusterQueue" in c.kueue else []
        workloads = c.workloads.objects() if c.workloads is not None else []
        problems = []
        unreported = False
        for kind, objs in desired.in_order():
            informer = c.kueue.get(kind)
            for obj in objs if informer is not None else ():
                key = object_key(obj)
                existing = informer.get(key) if informer is not None else None
                if existing is None:  # just created: its watch event brings the live state
                    continue
                v = kueuestate.verdict(kind, existing, cluster_queues=cqs, workloads=workloads)
                if v.state == "Unknown" and _age(existing, self.wall()) < KUEUE_REPORT_GRACE:
                    unreported = True  # Kueue reports within moments: no FAILED flicker for a new object
                    continue
                if not v.ok:
                    problems.append(f"{kind} {key} {v.state.lower()}: {v.detail}")
        return problems, unreported

    async def _label_nodes(self, pools: list[nodepools.NodePool]) -> list[str]:
        errors = []
        for pool in pools:
            labels = nodepools.node_labels(pool)
            for name in pool.nodes:
                node = self.caches.nodes.get_by(name)
                if node is None:
                    continue
                current = node["metadata"].get("labels") or {}
                want = dict(labels)
                for topo_label, default in (
                    (nodepools.TOPOLOGY_BLOCK_LABEL, "block-a"),
                    (nodepools.TOPOLOGY_RACK_LABEL, "rack-a"),
                ):
                    want[topo_label] = current.get(topo_label, default)
                if all(current.get(k) == v for k, v in want.items()):
                    continue
                try:
                    await self.client.apply(
                        {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": want}},
                        NODE_FIELD_MANAGER,
                    )
                except ApiError as e:
                    errors.append(f"labelling node {name}: {e.message}")
        return errors

    @staticmethod
    def _wait_for(kind: str, objs: list[Obj], informer: Informer, dying: set[tuple[str, str]]) -> set[str]:
        """Keys of ``objs`` not to apply in this pass (still wanted, so not pruned either): one whose live copy is
        being deleted (an apply would only update the dying object; its deletion brings us back to create it
        anew), and one that names such an object (Kueue's ``resource-in-use`` finalizer would then keep that
        object terminating for ever: e.g. a re-created ResourceFlavor naming the old, terminating Topology)."""
        wait = set()
        for obj in objs:
            key = object_key(obj)
            existing = informer.get(key)
            if existing is not None and existing["metadata"].get("deletionTimestamp"):
                dying.add((kind, obj["metadata"]["name"]))
                wait.add(key)
            elif any(ref in dying for ref in queueconfig.references(kind, obj)):
                wait.add(key)
        return wait

    async def _sync(self, live: Obj, kind: str, objs: list[Obj], informer: Informer, wait: set[str]) -> list[str]:
        errors = []
        wanted = set()
        owner_uid = live["metadata"]["uid"]
        for obj in objs:
            key = object_key(obj)
            wanted.add(key)
            if key in wait:
                continue
            existing = informer.get(key)
            try:
                if await self.applier.apply(obj, existing) is not None:
                    action = "Updated" if existing is not None else "Created"
                    await self.events.emit(live, f"{KIND}{kind}{action}", f"{action.lower()} {kind} {key}")
            except ApiError as e:
                if kind == "ResourceFlavor" and e.status == 422 and existing is not None:
                    failed = await self._recreate_flavor(obj)
                    errors += failed
                    if not failed:
                        await self.events.emit(live, f"{KIND}{kind}Updated", f"recreated {kind} {key}")
                else:
                    errors.append(f"{kind} {key}: {e.message or e}")
                    await self.events.emit(live, f"{KIND}{kind}Failed", f"{kind} {key}: {e.message or e}", warning=True)
        for existing in informer.objects():
            key = object_key(existing)
            refs = existing["metadata"].get("ownerReferences") or []
            ours = queueconfig.owned_by_kaiwo(existing) and any(r.get("uid") == owner_uid for r in refs)
            if ours and key not in wanted and not existing["metadata"].get("deletionTimestamp"):
                meta = existing["metadata"]
                try:
                    await self.client.delete(existing["apiVersion"], kind, meta["name"], meta.get("namespace"))
                    log.info("pruned %s %s", kind, key)
                    await self.events.emit(live, f"{KIND}{kind}Deleted", f"deleted {kind} {key}: no longer wanted")
                except ApiError as e:
                    errors.append(f"pruning {kind} {key}: {e.message}")
                    await self.events.emit(
                        live, f"{KIND}{kind}Failed", f"pruning {kind} {key}: {e.message}", warning=True
                    )
        return errors

    async def _recreate_flavor(self, obj: Obj) -> list[str]:
        """ResourceFlavor specs are immutable once a topology is set: delete (even if in use) and recreate."""
        name = obj["metadata"]["name"]
        try:
            api = self.caches.kueue_api
            live = await self.client.get_or_none(api, "ResourceFlavor", name)
            if live is not None:
                finalizers = [f for f in live["metadata"].get("finalizers") or [] if f != FLAVOR_IN_USE_FINALIZER]
                await self.client.patch(
                    api,
                    "ResourceFlavor",
                    name,
                    {
                        "metadata": {
                            "finalizers": finalizers or None,
                            "resourceVersion": live["metadata"]["resourceVersion"],
                        }
                    },
                )
                await self.client.delete(api, "ResourceFlavor", name)
            await self.applier.apply(obj, None)
            log.info("recreated ResourceFlavor %s (immutable spec changed)", name)
            return []
        except ApiError as e:
            return [f"recreating ResourceFlavor {name}: {e.message or e}"]

    async def _write_status(self, live: Obj, errors: list[str], problems: list[str]) -> None:
        old = live.get("status") or {}
        ok = not errors and not problems
        message = "all Kueue objects are in sync and active" if ok else " | ".join(errors + problems)[:1000]
        reason = "Synced" if ok else "SyncFailed" if errors else "KueueObjectNotReady"
        prev = status_condition(old, "Ready")
        unchanged = (
            prev and prev.get("status") == str(ok) and prev.get("reason") == reason and prev.get("message") == message
        )
        condition = (
            prev
            if unchanged
            else {
                "type": "Ready",
                "status": str(ok),
                "reason": reason,
                "message": message,
                "lastTransitionTime": rfc3339(self.wall()),
                "observedGeneration": live["metadata"].get("generation", 0),
            }
        )
        phase = QueueConfigStatus.READY if ok else QueueConfigStatus.FAILED
        status = {"status": phase.value, "conditions": [condition]}
        await self.applier.write_status(live, status)
        if problems and not unchanged:
            await self.events.emit(live, f"{KIND}KueueObjectNotReady", " | ".join(problems)[:1000], warning=True)


def _age(obj: Obj, now: float) -> float:
    """Seconds since the object was created (0 when unknown)."""
    created = obj["metadata"].get("creationTimestamp")
    return now - epoch(created) if created else 0.0


def _node_changed(old: Obj, new: Obj) -> bool:
    """Only what discovery reads: schedulability, capacity and labels (not heartbeats)."""

    def view(n: Obj) -> tuple[Any, ...]:
        return (
            (n.get("spec") or {}).get("unschedulable"),
            (n.get("status") or {}).get("capacity"),
            n["metadata"].get("labels"),
        )

    return view(old) != view(new)


def _terminating_changed(old: Obj, new: Obj) -> bool:
    return bool(old["metadata"].get("deletionTimestamp")) != bool(new["metadata"].get("deletionTimestamp"))


# --- wiring ------------------------------------------------------------------------------------------------

SINGLETON = (Request(None, NAME),)


def to_singleton(_: object, __: Obj) -> tuple[Request, ...]:
    """Any change -> the one KaiwoQueueConfig."""
    return SINGLETON


def owned_to_singleton(_: object, obj: Obj) -> tuple[Request, ...]:
    """A Kueue object -> the KaiwoQueueConfig, when it is one the operator made (others are not ours)."""
    return SINGLETON if queueconfig.owned_by_kaiwo(obj) else ()


OWNED_KUEUE_KINDS = ("ResourceFlavor", "ClusterQueue", "LocalQueue", "WorkloadPriorityClass")
SPEC = ControllerSpec(
    "kaiwoqueueconfig",
    (
        For(API, KIND),
        Watches("v1", "Node", mapper=to_singleton, predicate=_node_changed),
        Watches("v1", "Namespace", mapper=to_singleton, predicate=_terminating_changed),
        Watches(settings.KAIWO_CONFIG_API, "KaiwoConfig", mapper=to_singleton, optional=True),
        *(Watches(queueconfig.KUEUE_APIS, k, mapper=owned_to_singleton) for k in OWNED_KUEUE_KINDS),
        Watches(TOPOLOGY_VERSIONS, "Topology", mapper=owned_to_singleton, optional=True),
        Reads(queueconfig.KUEUE_APIS, "Workload", optional=True),
    ),
    workers=1,  # a singleton: one worker is all it can use
)


async def setup(manager: Manager, workers: int = 1) -> Controller:
    """Register the controller and its watches with ``manager``."""

    def reconciler(sources: Sources) -> QueueConfigReconciler:
        kinds = (*OWNED_KUEUE_KINDS, "Topology")
        caches = Caches(
            queue_configs=sources[KIND],
            kaiwo_configs=sources.get("KaiwoConfig"),
            nodes=sources["Node"],
            namespaces=sources["Namespace"],
            kueue={k: inf for k in kinds if (inf := sources.get(k)) is not None},
            topology_api=sources.served("Topology"),
            kueue_api=sources.served("ClusterQueue") or KUEUE,
            workloads=sources.get("Workload"),
        )
        return QueueConfigReconciler(manager.client, caches)

    ctrl, _ = await build(manager, SPEC, reconciler, workers=workers)
    return ctrl
