"""The GpuWorkload controller's parts on hand-fed caches and an in-memory API: discovery by owner chain and
annotations, phases from samples, Lease-guarded evaluation against Kueue demand, preemption by deleting the root
owner, PreemptionFailed on a forbidden delete, and the TTL."""

from __future__ import annotations

import copy
from typing import Any

from kaiwo.controllers import gpuworkload as gw
from kaiwo.gpumetrics.config import EnvDefaults
from kaiwo.gpumetrics.reader import PodUtilization
from kaiwo.runtime.client import ApiError, Resource
from kaiwo.runtime.controller import Controller, Request
from kaiwo.runtime.informer import Informer, object_key
from kaiwo.runtime.leader import LeaderElectionConfig
from kaiwo.runtime.objects import Obj
from tests.builders import JobBuilder, KaiwoJobBuilder, PodBuilder, WorkloadBuilder
from tests.fakes import cache

T0 = 1_700_000_000.0
OPT = "kaiwo.silogen.ai/gpu-preemption."


class Api:
    """Objects by (kind, namespace, name); records are mirrored into their cache as a watch would."""

    def __init__(self, records: Informer) -> None:
        self.objs: dict[tuple[str, str | None, str], Obj] = {}
        self.records = records
        self.events: list[str] = []
        self.deleted: list[str] = []
        self.forbidden: set[str] = set()
        self.rv = 1

    def put(self, obj: Obj) -> Obj:
        self.rv += 1
        obj = copy.deepcopy(obj)
        obj["metadata"].setdefault("uid", f"uid-{obj['metadata']['name']}")
        obj["metadata"]["resourceVersion"] = str(self.rv)
        self.objs[(obj["kind"], obj["metadata"].get("namespace"), obj["metadata"]["name"])] = obj
        if obj["kind"] == "GpuWorkload":
            self.records.indexer.put(object_key(obj), obj)
        return obj

    async def get_or_none(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> Obj | None:
        return copy.deepcopy(self.objs.get((kind, namespace, name)))

    async def create(self, obj: Obj, **params: Any) -> Obj:
        if obj["kind"] == "Event":
            self.events.append(obj["reason"])
            return obj
        return self.put(obj)

    async def patch(
        self,
        api_version: str,
        kind: str,
        name: str,
        patch: Obj,
        namespace: str | None = None,
        *,
        patch_type: str = "merge",
        subresource: str | None = None,
    ) -> Obj:
        live = self.objs[(kind, namespace, name)]
        rv = (patch.get("metadata") or {}).get("resourceVersion")
        if rv and rv != live["metadata"]["resourceVersion"]:
            raise ApiError(409, {"message": "conflict"})
        new = copy.deepcopy(live)
        if "status" in patch:
            new["status"] = patch["status"]
        if "spec" in patch:
            new["spec"].update(patch["spec"])
        return self.put(new)

    async def resource(self, api_version: str, kind: str) -> Resource:
        assert kind == "Lease"
        return Resource(api_version, kind, "leases", True)

    async def request(self, method: str, path: str, **kw: Any) -> Obj:  # the Lease: GET, then POST or PUT
        if method == "GET":
            namespace, name = path.split("/")[-3], path.split("/")[-1]
            lease = self.objs.get(("Lease", namespace, name))
            if lease is None:
                raise ApiError(404, {"message": "not found"})
            return copy.deepcopy(lease)
        return self.put(kw["body"])

    async def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None, **kw: Any) -> None:
        if kind in self.forbidden:
            raise ApiError(403, {"message": f"cannot delete {kind}"})
        self.deleted.append(f"{kind}/{name}")
        self.objs.pop((kind, namespace, name), None)
        if kind == "GpuWorkload":
            self.records.indexer.remove(f"{namespace}/{name}")


def pod(name: str, owner: Obj, gpus: int = 8, node: str = "n0", phase: str = "Running") -> Obj:
    return PodBuilder(name, "ns").uid(f"uid-{name}").owned_by(owner).on_node(node).gpus(gpus).phase(phase).obj()


def job_tree(name: str, annotations: dict[str, str]) -> tuple[Obj, Obj]:
    kj = KaiwoJobBuilder(name, "ns").uid(f"uid-kj-{name}")
    for key, value in annotations.items():
        kj.annotation(key, value)
    return kj.obj(), JobBuilder(name, "ns").owned_by(kj.obj()).obj()


def kueue_workload(name: str, owner: Obj, gpus: int, admitted: bool) -> Obj:
    wl = (
        WorkloadBuilder(name, "ns")
        .uid(f"uid-wl-{name}")
        .created("2023-11-14T22:00:00Z")
        .owned_by(owner)
        .queue("kaiwo")
        .pod_set("main", 1, limits={"amd.com/gpu": str(gpus)})
    )
    return (wl.quota_reserved("kaiwo") if admitted else wl.condition("QuotaReserved", False)).obj()


class World:
    def __init__(self) -> None:
        self.clock = [T0]
        self.caches = gw.Caches(
            pods=cache(),
            namespaces=cache({"metadata": {"name": "ns"}}),
            records=cache(),
            nodes=cache(),
            configs=None,
            kueue_workloads=cache(),
            local_queues=cache({"metadata": {"name": "kaiwo", "namespace": "ns"}, "spec": {"clusterQueue": "kaiwo"}}),
            cluster_queues=cache(
                {
                    "metadata": {"name": "kaiwo"},
                    "spec": {
                        "resourceGroups": [{"flavors": [{"resources": [{"name": "amd.com/gpu", "nominalQuota": 16}]}]}]
                    },
                    "status": {"flavorsReservation": [{"resources": [{"name": "amd.com/gpu", "total": "16"}]}]},
                }
            ),
        )
        self.api = Api(self.caches.records)
        self.shared = gw.Shared()
        wall = lambda: self.clock[0]  # noqa: E731
        self.records = gw.Records(self.api, self.caches, self.shared, EnvDefaults(), wall)  # type: ignore[arg-type]
        self.records_ctrl = Controller("gpuworkload", self.records)
        self.discovery = gw.Discovery(self.api, self.caches, self.shared, self.records_ctrl, wall)  # type: ignore[arg-type]
        lease = LeaderElectionConfig("kaiwo-system", gw.EVAL_LEASE, "me", lease_duration=30, renew_deadline=20)
        self.evaluator = gw.Evaluator(self.api, self.caches, self.shared, self.records, lease, 2.0, wall)  # type: ignore[arg-type]

    def add(self, inf: Informer | None, *objs: Obj) -> None:
        assert inf is not None
        for o in objs:
            inf.indexer.put(object_key(o), o)

    def record(self, name: str) -> Obj:
        rec = self.caches.records.get_by(name, "ns")
        assert rec is not None
        return rec

    async def reconcile(self, name: str) -> None:
        await self.records.reconcile(Request("ns", name))


async def test_discovery_phases_evaluation_and_preemption() -> None:
    w = World()
    opt = {OPT + "enabled": "true", OPT + "grace-period": "30s", OPT + "ttl": "60s"}
    idle_kj, idle_job = job_tree("idle", opt)
    _, want_job = job_tree("want", {})
    w.add(w.caches.pods, pod("idle-0", idle_job))
    w.api.put(idle_kj)
    w.api.put(idle_job)
    w.add(w.caches.kueue_workloads, kueue_workload("idle-wl", idle_job, 8, admitted=True))
    await w.discovery.reconcile(Request("ns", "idle-0"))
    name = gw.record_name("KaiwoJob", "idle", "uid-kj-idle")
    assert w.record(name)["spec"]["workloadRef"]["uid"] == "uid-kj-idle"
    w.shared.samples = {("ns", "idle-0"): PodUtilization("amd", {"0": 1.0, "1": 2.0})}
    await w.reconcile(name)
    status = w.record(name)["status"]
    assert status["phase"] == "Idle" and status["aggregatedUtilization"] == 1.5
    assert status["ownerChain"] == "Pod/idle-0 -> Job/idle -> KaiwoJob/idle"
    writes = w.api.rv
    await w.reconcile(name)
    assert w.api.rv == writes  # steady: no write

    # demand: 8 GPUs pending in the full ClusterQueue -- but the grace period has not passed
    w.add(w.caches.kueue_workloads, kueue_workload("want-wl", want_job, 8, admitted=False))
    await w.evaluator.reconcile(gw.EVAL_KEY)
    assert w.record(name)["status"]["phase"] == "Idle"
    w.clock[0] += 31
    await w.evaluator.reconcile(gw.EVAL_KEY)
    status = w.record(name)["status"]
    assert status["phase"] == "Preempting" and status["preemptedFor"] == "Workload ns/want-wl"
    await w.reconcile(name)
    assert w.api.deleted == ["KaiwoJob/idle"] and w.record(name)["status"]["phase"] == "Preempted"
    assert w.api.events == ["WorkloadIdle", "PreemptionStarted", "WorkloadPreempted"]
    w.clock[0] += 61
    await w.reconcile(name)
    assert w.caches.records.get_by(name, "ns") is None  # TTL


async def test_forbidden_delete_and_opt_out() -> None:
    w = World()
    bare = pod("bare", {"apiVersion": "v1", "kind": "x", "metadata": {"name": "x", "uid": "x"}})
    bare["metadata"]["ownerReferences"] = []
    bare["metadata"]["annotations"] = {OPT + "policy": "Always", OPT + "grace-period": "1s"}
    w.add(w.caches.pods, bare)
    w.api.put(bare)
    w.api.forbidden.add("Pod")
    await w.discovery.reconcile(Request("ns", "bare"))
    name = gw.record_name("Pod", "bare", "uid-bare")
    w.shared.samples = {("ns", "bare"): PodUtilization("amd", {"0": 0.0})}
    await w.reconcile(name)
    w.clock[0] += 2
    await w.evaluator.reconcile(gw.EVAL_KEY)
    await w.reconcile(name)
    rec = w.record(name)
    cond = next(c for c in rec["status"]["conditions"] if c["type"] == "PreemptionFailed")
    assert rec["status"]["phase"] == "Idle" and cond["status"] == "True" and cond["reason"] == "Forbidden"
    await w.evaluator.reconcile(gw.EVAL_KEY)  # not picked again
    assert w.api.events.count("PreemptionStarted") == 1 and w.api.events.count("PreemptionFailed") == 1

    opted_out = pod("quiet", bare)
    opted_out["metadata"]["ownerReferences"] = []
    opted_out["metadata"]["annotations"] = {OPT + "enabled": "false", OPT + "policy": "Always"}
    w.add(w.caches.pods, opted_out)
    await w.discovery.reconcile(Request("ns", "quiet"))
    assert len(w.caches.records.objects()) == 1


async def test_the_record_follows_annotation_edits_and_opt_out() -> None:
    w = World()
    kj, job = job_tree("j", {OPT + "enabled": "true", OPT + "threshold": "10"})
    w.add(w.caches.pods, pod("j-0", job))
    w.api.put(kj)
    w.api.put(job)
    await w.discovery.reconcile(Request("ns", "j-0"))
    name = gw.record_name("KaiwoJob", "j", "uid-kj-j")
    assert w.record(name)["spec"]["utilizationThreshold"] == 10.0
    kj["metadata"]["annotations"] = {OPT + "enabled": "true", OPT + "policy": "Always"}
    w.api.put(kj)
    await w.reconcile(name)
    spec = w.record(name)["spec"]
    assert spec.get("utilizationThreshold") is None and spec["preemptionPolicy"] == "Always"
    kj["metadata"]["annotations"] = {OPT + "enabled": "false"}
    w.api.put(kj)
    await w.reconcile(name)
    assert w.caches.records.get_by(name, "ns") is None and w.api.deleted == [f"GpuWorkload/{name}"]


async def test_a_workload_waiting_in_kueue_is_recorded_pending_gpu() -> None:
    w = World()
    kj, job = job_tree("queued", {OPT + "enabled": "true"})
    w.api.put(kj)
    w.api.put(job)
    wl = kueue_workload("queued-wl", job, 8, admitted=False)
    wl["status"]["conditions"][0]["message"] = "couldn't assign flavors: insufficient unused quota for amd.com/gpu"
    w.add(w.caches.kueue_workloads, wl)
    queued = gw.Discovery(w.api, w.caches, w.shared, w.records_ctrl, lambda: w.clock[0], kind="Workload")  # type: ignore[arg-type]
    await queued.reconcile(Request("ns", "queued-wl"))
    name = gw.record_name("KaiwoJob", "queued", "uid-kj-queued")
    assert w.record(name)["spec"]["gpuResources"] == {"amd.com/gpu": 8}
    await w.reconcile(name)
    status = w.record(name)["status"]
    assert (
        status["phase"] == "PendingGpu"
        and status["ownerChain"] == "Workload/queued-wl -> Job/queued -> KaiwoJob/queued"
    )
    assert w.api.events == ["WorkloadPendingGpu"]
