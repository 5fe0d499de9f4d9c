"""The test builders make objects the real code accepts, and the shared RecordingClient behaves like the parts
of the apiserver the reconcilers rely on."""

from __future__ import annotations

import pytest

from kaiwo.api.config import KaiwoConfig
from kaiwo.api.kaiwojob import KaiwoJob
from kaiwo.api.kaiwoservice import KaiwoService
from kaiwo.api.queueconfig import KaiwoQueueConfig
from kaiwo.runtime.apply import Applier
from kaiwo.runtime.client import ApiError
from kaiwo.runtime.controller import Request
from kaiwo.translate import nodepools
from kaiwo.translate import queueconfig as qc
from kaiwo.translate import status as st
from tests.builders import (
    JobBuilder,
    KaiwoConfigBuilder,
    KaiwoJobBuilder,
    KaiwoQueueConfigBuilder,
    KaiwoServiceBuilder,
    NodeBuilder,
    PodBuilder,
    WorkloadBuilder,
)
from tests.fakes import RecordingClient, cache, merge_patch, workload_reconciler


def test_kaiwo_builders_make_objects_the_api_models_accept() -> None:
    job = KaiwoJobBuilder("train", "ns").gpus(8, "amd").image("rocm/pytorch").replicas(2).duration("1h").obj()
    model = KaiwoJob.model_validate(job)
    assert (model.spec.gpus, model.spec.replicas, model.spec.image) == (8, 2, "rocm/pytorch")
    svc = KaiwoServiceBuilder("serve", "ns").ray().serve_config("applications: []").obj()
    assert KaiwoService.model_validate(svc).spec.ray is True
    config = (
        KaiwoQueueConfigBuilder()
        .resource_flavor("mi300x", {"kaiwo/nodepool": "mi300x"}, topology="rack")
        .topology("rack", "kaiwo/topology-rack", "kubernetes.io/hostname")
        .cluster_queue("team-a", namespaces=["a"], quotas={"mi300x": {"cpu": 100, "amd.com/gpu": 8}}, cohort="k")
        .priority_class("high", 1000, "urgent")
        .obj()
    )
    KaiwoQueueConfig.model_validate(config)
    [cq] = config["spec"]["clusterQueues"]
    assert cq["spec"]["resourceGroups"][0]["coveredResources"] == ["cpu", "amd.com/gpu"]
    assert cq["spec"]["cohort"] == "k"


def test_obj_returns_independent_copies_and_conditions_replace_by_type() -> None:
    b = JobBuilder("j", "ns").condition("Complete", False)
    first = b.obj()
    first["metadata"]["name"] = "changed"
    b.condition("Complete", True, "Done", "all pods succeeded")
    second = b.obj()
    assert second["metadata"]["name"] == "j"
    assert second["status"]["conditions"] == [
        {"type": "Complete", "status": "True", "reason": "Done", "message": "all pods succeeded"}
    ]


def test_owned_by_makes_a_controller_reference() -> None:
    owner = JobBuilder("j", "ns").obj()
    wl = WorkloadBuilder("job-j", "ns").owned_by(owner).obj()
    assert wl["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "name": "j",
            "uid": "uid-job-j",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]


def test_nodes_form_the_pools_the_translation_sees() -> None:
    nodes = [NodeBuilder(f"gpu-{i}").gpus(8, "amd").obj() for i in range(2)]
    nodes.append(NodeBuilder("cp").control_plane().obj())
    pools = nodepools.discover(nodes, exclude_control_plane=True)
    assert [(p.vendor, p.model, p.gpus_per_node, len(p.nodes)) for p in pools] == [("amd", "mi300x", 8, 2)]


def test_workload_admission_as_the_status_machine_reads_it() -> None:
    assert st.admission(WorkloadBuilder("w").admitted().obj()) == (True, "admitted by Kueue")
    assert st.admission(WorkloadBuilder("w").pending("couldn't assign flavors").obj()) == (
        False,
        "couldn't assign flavors",
    )
    assert st.admission(WorkloadBuilder("w").quota_reserved().obj())[0] is False


def test_pods_of_a_workload_carry_its_labels_and_gates() -> None:
    pod = PodBuilder("p", "ns").of_workload("serve").gated().obj()
    assert pod["metadata"]["labels"]["kaiwo.silogen.ai/name"] == "serve"
    assert pod["spec"]["schedulingGates"] == [{"name": st.KUEUE_ADMISSION_GATE}]


# --- the shared fake client ---------------------------------------------------------------------------------


def test_merge_patch_follows_rfc_7386() -> None:
    assert merge_patch({"a": {"b": 1, "c": 2}, "d": [1]}, {"a": {"b": None, "e": 3}, "d": [2]}) == {
        "a": {"c": 2, "e": 3},
        "d": [2],
    }


async def test_recording_client_stores_writes_like_the_apiserver() -> None:
    jobs = cache()
    client = RecordingClient({"Job": jobs})
    first = await client.apply(JobBuilder("j", "ns").uid("u-1").obj(), "mgr")
    jobs.indexer.put("ns/j", {**first, "status": {"active": 1}})  # the Job controller's status
    again = await client.apply(JobBuilder("j", "ns").suspend(False).obj(), "mgr")
    assert again["metadata"]["uid"] == "u-1"
    assert again["status"] == {"active": 1}, "an apply by another field manager keeps the status"
    assert int(again["metadata"]["resourceVersion"]) > int(first["metadata"]["resourceVersion"])
    patched = await client.patch("batch/v1", "Job", "j", {"status": {"ready": 1}}, "ns", subresource="status")
    assert patched["status"] == {"active": 1, "ready": 1}
    with pytest.raises(ApiError) as conflict:
        await client.create(JobBuilder("j", "ns").obj())
    assert conflict.value.conflict
    await client.delete("batch/v1", "Job", "j", "ns")
    assert jobs.get_by("j", "ns") is None
    assert client.writes == ["apply Job", "apply Job", "patch Job/status", "create Job", "delete Job"]


async def test_recording_client_without_stores_echoes_and_can_fail() -> None:
    client = RecordingClient()
    applier = Applier(client, "mgr")  # type: ignore[arg-type]
    live = KaiwoJobBuilder("t", "ns").obj()
    written = await applier.write_status(live, {"status": "PENDING"})
    assert written == {"status": {"status": "PENDING"}}
    assert client.calls[0].body == {"status": {"status": "PENDING"}}
    client.fail("apply", "Job", ApiError(422, {"message": "field is immutable"}))
    with pytest.raises(ApiError, match="immutable"):
        await client.apply(JobBuilder("j", "ns").obj(), "mgr")
    assert client.writes == ["patch KaiwoJob/status", "apply Job"]


async def test_the_story_of_a_reconcile_and_its_apply_records() -> None:
    """workload_reconciler() is the KaiwoJob reconcile of test_workload_writes on the shared fake; ``story`` names
    the phase of a status write and the reason of an Event, ``applies`` keeps the field manager and force."""
    reconciler, client, caches = workload_reconciler()
    await reconciler.reconcile(Request("ns", "train"))  # creates the Job (docs/design/decisions.md D35)
    await reconciler.reconcile(Request("ns", "train"))  # the Job is in the cache: the status follows
    assert client.writes == ["create LocalQueue", "apply Job", "patch KaiwoJob/status", "create Event"]
    assert client.story == ["create LocalQueue", "apply Job", "status PENDING", "event WorkloadPending"]
    assert client.event_reasons == ["WorkloadPending"]
    [apply] = client.applies()
    assert (apply.field_manager, apply.force) == ("kaiwo-kaiwojob", True) and client.applies("other") == []
    assert (caches.primary.get_by("train", "ns") or {})["status"]["status"] == "PENDING"
    client.clear()
    assert client.calls == [] and caches.children["Job"].get_by("train", "ns") is not None
    client.fail("apply", "Job", ApiError(500, {"message": "boom"}))
    client.fail("apply", "Job", None)
    await client.apply(JobBuilder("j", "ns").obj(), "mgr")  # let through again
    assert WorkloadBuilder("w").obj()["apiVersion"] == qc.KUEUE_API


def test_manifest_leaves_out_what_the_apiserver_sets() -> None:
    job = KaiwoJobBuilder("t", None).created("2026-01-01T00:00:00Z").phase("RUNNING").unset("entrypoint")
    assert job.manifest() == {
        "apiVersion": "kaiwo.silogen.ai/v1alpha1",
        "kind": "KaiwoJob",
        "metadata": {"name": "t"},
        "spec": {"image": "busybox"},
    }
    assert job.spec({"ray": True}).obj()["spec"] == {"ray": True}


def test_pods_nodes_and_workloads_with_resources() -> None:
    pod = PodBuilder("p").sidecar().gpus(4, "nvidia").requests(cpu="2").node_selector(pool="h100").obj()
    side, main = pod["spec"]["containers"]
    assert side["name"] == "side" and "resources" not in side
    assert main["resources"] == {"limits": {"nvidia.com/gpu": "4"}, "requests": {"cpu": "2"}}
    assert pod["spec"]["nodeSelector"] == {"pool": "h100"}
    bare = NodeBuilder("n").gpus(2, "amd", labelled=False).obj()
    assert (
        bare["status"]["allocatable"]["amd.com/gpu"] == "2"
        and "amd.com/gpu.product-name" not in bare["metadata"]["labels"]
    )
    wl = WorkloadBuilder("w").pod_set("main", 2, limits={"amd.com/gpu": "1"}).obj()
    assert wl["spec"]["podSets"] == [
        {
            "name": "main",
            "count": 2,
            "template": {"spec": {"containers": [{"name": "main", "resources": {"limits": {"amd.com/gpu": "1"}}}]}},
        }
    ]
    config = KaiwoConfigBuilder().spec_field("resourceMonitoring", {"lowUtilizationThreshold": 5}).obj()
    assert KaiwoConfig.model_validate(config).spec.resource_monitoring.low_utilization_threshold == 5
