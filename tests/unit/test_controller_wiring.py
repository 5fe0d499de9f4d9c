"""The controllers' wiring: each named mapper and predicate on builder-made objects, the workload controllers'
child-kinds table, and what every spec declares (kaiwo.runtime.builder runs them; see test_builder.py)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from kaiwo.controllers import gpuworkload as gw
from kaiwo.controllers import nodetaints, queueconfig, utilisation, workload
from kaiwo.gpumetrics.config import EnvDefaults
from kaiwo.runtime.builder import For, Owns, Reads, Watches
from kaiwo.runtime.controller import Controller, Request
from kaiwo.runtime.informer import Informer
from kaiwo.runtime.objects import Obj
from kaiwo.translate import preemption as pre
from kaiwo.translate.queueconfig import MANAGED_BY_LABEL, MANAGED_BY_VALUE
from tests.builders import (
    JobBuilder,
    KaiwoJobBuilder,
    KaiwoServiceBuilder,
    NodeBuilder,
    ObjectBuilder,
    PodBuilder,
    WorkloadBuilder,
)
from tests.fakes import RecordingClient, cache

NAME_LABEL = workload.NAME_LABEL


def reconciler(
    kind: str = "KaiwoJob", primary: Informer | None = None, **children: Informer
) -> workload.WorkloadReconciler:
    caches = workload.Caches(
        primary=primary or cache(),
        children=children,
        workloads=cache(),
        pods=cache(),
        nodes=cache(),
        kaiwo_configs=None,
        queue_configs=None,
        local_queues=None,
    )
    return workload.WorkloadReconciler(RecordingClient(), kind, caches, f"kaiwo-{kind.lower()}")  # type: ignore[arg-type]


def gpu_pod(name: str, namespace: str = "default", phase: str = "Running") -> Obj:
    pod = PodBuilder(name, namespace).uid(f"uid-{name}").phase(phase).obj()
    pod["spec"]["containers"][0]["resources"] = {"limits": {"amd.com/gpu": "1"}}
    return pod


# --- the workload controllers ----------------------------------------------------------------------------------


def test_a_pending_gpu_workload_maps_to_the_running_workloads_it_may_preempt() -> None:
    running = KaiwoJobBuilder("old").uid("u-old").gpus(1).duration("1m").phase("RUNNING")
    no_duration = KaiwoJobBuilder("forever").uid("u-f").gpus(1).phase("RUNNING")
    other_vendor = KaiwoJobBuilder("nv").uid("u-nv").gpus(1, "nvidia").duration("1m").phase("RUNNING")
    primary = cache(running.obj(), no_duration.obj(), other_vendor.obj())
    primary.add_index(pre.VICTIM_INDEX, pre.victim_index)
    r = reconciler(primary=primary)

    pending = KaiwoServiceBuilder("young").gpus(1).phase("PENDING").created("2026-01-01T00:00:00Z").obj()
    assert workload.victims(r, pending) == [Request("default", "old")]
    assert (
        workload.victims(r, KaiwoServiceBuilder("cpu").phase("PENDING").created("2026-01-01T00:00:00Z").obj()) == []
    )  # no GPU demand
    assert workload.victims(r, KaiwoServiceBuilder("run").gpus(1).phase("RUNNING").obj()) == []  # not pending


def test_a_kueue_workload_maps_to_the_kaiwo_owner_of_its_child() -> None:
    train = KaiwoJobBuilder("train").uid("u-train").obj()
    job = JobBuilder("train").uid("u-job").owned_by(train).obj()
    wl = WorkloadBuilder("job-train").owned_by(job).obj()
    assert workload.workload_owner(reconciler(Job=cache(job)), wl) == [Request("default", "train")]
    assert workload.workload_owner(reconciler("KaiwoService", Job=cache(job)), wl) == []  # not this kind's
    assert workload.workload_owner(reconciler(Job=cache()), wl) == []  # the child is not (yet) cached


def test_a_labelled_pod_maps_to_its_workload_of_this_kind_only() -> None:
    r = reconciler(primary=cache(KaiwoJobBuilder("train").obj()))
    assert workload.pod_owner(r, PodBuilder("p").of_workload("train").obj()) == [Request("default", "train")]
    assert workload.pod_owner(r, PodBuilder("q").of_workload("serve").obj()) == []  # a KaiwoService's pod
    assert workload.pod_owner(r, PodBuilder("r").obj()) == []


def test_a_ray_service_maps_to_the_workload_named_in_its_label() -> None:
    rs = ObjectBuilder("ray.io/v1", "RayService", "serve", "ns").label(NAME_LABEL, "serve").obj()
    assert workload.named_owner(None, rs) == [Request("ns", "serve")]
    assert workload.named_owner(None, ObjectBuilder("ray.io/v1", "RayService", "x", "ns").obj()) == []


def test_the_child_kinds_table_decides_what_is_observed_suspended_and_owned() -> None:
    assert set(workload.WORKLOAD_KINDS) == {"Job", "RayJob", "Deployment", "AppWrapper"}
    assert set(workload.KUEUE_SUSPENDS) == {"Job", "RayJob", "AppWrapper"}
    for kind in ("KaiwoJob", "KaiwoService"):
        owned = {s.kind: s for s in workload.SPECS[kind].sources if isinstance(s, Owns)}
        assert owned.keys() == workload.CHILD_KINDS.keys()
        for child_kind, child in workload.CHILD_KINDS.items():
            s = owned[child_kind]
            assert (s.api, s.selector, s.optional) == (child.api_version, workload.RUN_ID_LABEL, True)


@pytest.mark.parametrize(
    ("child", "conditions"),
    [
        (JobBuilder("w"), ["Admitted"]),
        (ObjectBuilder("ray.io/v1", "RayJob", "w", "default"), ["Admitted"]),
        (ObjectBuilder("workload.codeflare.dev/v1beta2", "AppWrapper", "w", "default"), ["Admitted"]),
        (ObjectBuilder("apps/v1", "Deployment", "w", "default"), ["Admitted"]),
    ],
)
def test_a_workload_child_not_created_yet_is_pending_admission(child: ObjectBuilder, conditions: list[str]) -> None:
    desired = child.label(workload.RUN_ID_LABEL, "run-1").obj()
    phase, observed = reconciler()._observe_child(desired, None)
    assert phase.status == "PENDING"
    assert [(c["type"], c["status"]) for c in observed] == [(t, "False") for t in conditions]


def test_only_the_kaiwo_service_controller_watches_ray_services() -> None:
    def kinds(kind: str) -> set[str]:
        return {s.kind for s in workload.SPECS[kind].sources}

    assert kinds("KaiwoService") - kinds("KaiwoJob") == {"RayService"}
    assert workload.SPECS["KaiwoJob"].primary == For(
        workload.API, "KaiwoJob", indexes=((pre.VICTIM_INDEX, pre.victim_index),)
    )


# --- the queue config controller --------------------------------------------------------------------------------


def test_every_change_maps_to_the_one_queue_config() -> None:
    assert queueconfig.to_singleton(None, NodeBuilder("n").obj()) == (Request(None, "kaiwo"),)
    ours = ObjectBuilder(queueconfig.KUEUE, "ClusterQueue", "q").label(MANAGED_BY_LABEL, MANAGED_BY_VALUE).obj()
    theirs = ObjectBuilder(queueconfig.KUEUE, "ClusterQueue", "other").obj()
    assert queueconfig.owned_to_singleton(None, ours) == (Request(None, "kaiwo"),)
    assert queueconfig.owned_to_singleton(None, theirs) == ()


def test_the_queue_config_watches_every_kueue_kind_it_owns() -> None:
    watched = {s.kind: s for s in queueconfig.SPEC.sources if isinstance(s, Watches)}
    for kind in (*queueconfig.OWNED_KUEUE_KINDS, "Topology"):
        assert watched[kind].mapper is queueconfig.owned_to_singleton
    assert watched["Topology"].optional and not watched["ClusterQueue"].optional
    assert {s.kind for s in queueconfig.SPEC.sources if isinstance(s, Reads)} == {"Workload"}


# --- GPU node taints ----------------------------------------------------------------------------------------------


def test_only_spec_annotations_and_gpu_capacity_can_change_taints() -> None:
    node = NodeBuilder("n").gpus(8)
    heartbeat = node.obj()
    heartbeat["status"]["conditions"] = [{"type": "Ready", "status": "True", "lastHeartbeatTime": "later"}]
    assert not nodetaints.taints_may_change(node.obj(), heartbeat)
    assert nodetaints.taints_may_change(node.obj(), NodeBuilder("n").gpus(8).annotation("a", "b").obj())
    assert nodetaints.taints_may_change(node.obj(), NodeBuilder("n").gpus(8).unschedulable().obj())
    assert nodetaints.taints_may_change(NodeBuilder("n").obj(), node.obj())  # it became a GPU node


def test_a_config_change_maps_to_every_node() -> None:
    nodes = cache(NodeBuilder("a").obj(), NodeBuilder("b").obj())
    r = nodetaints.NodeTaints(RecordingClient(), nodes, None)  # type: ignore[arg-type]
    assert sorted(nodetaints.every_node(r, {})) == [Request(None, "a"), Request(None, "b")]


def test_the_utilisation_monitor_is_a_poller() -> None:
    assert utilisation.SPEC.seed == (utilisation.KEY,) and utilisation.SPEC.workers == 1
    assert all(isinstance(s, Reads) for s in utilisation.SPEC.sources)


# --- GPU reclaim --------------------------------------------------------------------------------------------------


def gpu_caches(pods: Informer, records: Informer) -> gw.Caches:
    return gw.Caches(
        pods=pods,
        namespaces=cache(),
        records=records,
        nodes=cache(),
        configs=None,
        kueue_workloads=None,
        local_queues=None,
        cluster_queues=None,
    )


def records_of(pods: Informer | None = None, records: Informer | None = None) -> gw.Records:
    client: Any = RecordingClient()
    return gw.Records(client, gpu_caches(pods or cache(), records or cache()), gw.Shared(), EnvDefaults(), time.time)


def test_pods_and_kueue_workloads_map_to_the_record_of_their_root() -> None:
    r = records_of()
    r.shared.roots["uid-p"] = gw.Root("job-train", frozenset({"uid-p", "uid-job"}))
    assert gw.record_of_pod(r, gpu_pod("p")) == [Request("default", "job-train")]
    assert gw.record_of_pod(r, gpu_pod("unknown")) == []  # not resolved by discovery (yet)
    wl = WorkloadBuilder("w").owned_by(JobBuilder("train").uid("uid-job").obj()).obj()
    assert gw.record_of_workload(r, wl) == [Request("default", "job-train")]
    assert gw.record_of_workload(r, WorkloadBuilder("x").obj()) == []


def test_discovery_keys_are_live_gpu_pods_and_gpu_asking_workloads() -> None:
    assert gw.live_gpu_pod(None, gpu_pod("p")) == [Request("default", "p")]
    assert gw.live_gpu_pod(None, gpu_pod("p", phase="Succeeded")) == []
    assert gw.live_gpu_pod(None, PodBuilder("cpu").obj()) == []
    asking = WorkloadBuilder("w").pod_set("main", 2, {"amd.com/gpu": "1"}).obj()
    assert gw.gpu_workload(None, asking) == [Request("default", "w")]
    assert gw.gpu_workload(None, WorkloadBuilder("cpu").obj()) == []
    assert gw.to_evaluation(None, asking) == (gw.EVAL_KEY,)


async def test_a_namespace_annotation_change_looks_at_its_gpu_pods_and_records_again() -> None:
    pods = cache(gpu_pod("p", "ns"), PodBuilder("cpu", "ns").obj(), gpu_pod("elsewhere", "other"))
    record = ObjectBuilder(gw.API, gw.KIND, "job-train", "ns").obj()
    records = records_of(pods, cache(record))
    records_ctrl = Controller("gpuworkload", records)
    discovery = gw.Discovery(RecordingClient(), records.caches, records.shared, records_ctrl, time.time)  # type: ignore[arg-type]
    discovery.shared.not_opted["uid-p"] = time.time() + 60

    ns: Obj = ObjectBuilder("v1", "Namespace", "ns").obj()
    assert gw.namespace_pods(discovery, ns) == [Request("ns", "p")]
    assert "uid-p" not in discovery.shared.not_opted
    assert await records_ctrl.queue.get() == Request("ns", "job-train")
    assert gw.annotations_changed(ns, ObjectBuilder("v1", "Namespace", "ns").annotation("a", "b").obj())
    assert not gw.annotations_changed(ns, ObjectBuilder("v1", "Namespace", "ns").label("a", "b").obj())


def test_the_gpu_reclaim_pollers_and_the_kueue_discovery() -> None:
    assert gw.SCRAPER.seed == (gw.SCRAPE_KEY,) and gw.EVALUATOR.seed == (gw.EVAL_KEY,)
    assert all(s.optional for s in (*gw.QUEUED.sources, *gw.EVALUATOR.sources))
