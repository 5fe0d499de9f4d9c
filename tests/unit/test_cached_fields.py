"""The caches' transforms (kaiwo/controllers/cached_fields.py) drop the bulky fields and nothing any reader uses:
every reader of a trimmed kind answers the same on the trimmed object as on the whole one."""

from __future__ import annotations

import copy

import orjson

from kaiwo.api.config import KaiwoConfigSpec
from kaiwo.controllers import cached_fields
from kaiwo.controllers.metrics import _pod_gpus
from kaiwo.gpumetrics import reclaim
from kaiwo.runtime.apply import Applier
from kaiwo.runtime.manager import Manager, ManagerOptions
from kaiwo.runtime.objects import Obj
from kaiwo.translate import gpus, nodepools
from kaiwo.translate import status as st
from kaiwo.translate.meta import TranslateError
from kaiwo.translate.workload import Facts, desired_children
from tests.builders import KaiwoJobBuilder, NodeBuilder, WorkloadBuilder
from tests.fakes import Discovery


def translated_job() -> tuple[Obj, Obj]:
    """A GPU KaiwoJob's Job as translated (env, volumes and all), and as it lives (hash annotation, status)."""
    cr = KaiwoJobBuilder("train", "team").uid("uid-train").gpus(2, "amd").env("MODEL", "llama").obj()
    nodes = [NodeBuilder(f"amd-{i}").gpus(8, "amd").obj() for i in range(2)]
    facts = Facts(config=KaiwoConfigSpec(), gpu_pools=gpus.gpu_pools(nodepools.discover(nodes)))
    built = desired_children(cr, facts)
    assert not isinstance(built, TranslateError), built
    job = next(o for o in built.workload if o["kind"] == "Job")
    live, _ = Applier(None, "kaiwo-kaiwojob").with_hash(job)  # type: ignore[arg-type]
    live["status"] = {"active": 1, "ready": 1}
    return job, live


def pod_of(job: Obj) -> Obj:
    template = copy.deepcopy(job["spec"]["template"])
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {**template.get("metadata", {}), "name": "train-abc", "namespace": "team"},
        "spec": {**template["spec"], "nodeName": "amd-0", "schedulingGates": [{"name": "kueue.x-k8s.io/admission"}]},
        "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False"}]},
    }


def workload_of(job: Obj) -> Obj:
    wl = WorkloadBuilder("job-train-1", "team").queue("kaiwo").admitted().obj()
    wl["spec"]["podSets"] = [{"name": "main", "count": 2, "template": copy.deepcopy(job["spec"]["template"])}]
    return wl


def size(obj: Obj) -> int:
    return len(orjson.dumps(obj))


def test_a_job_loses_its_template_and_keeps_what_the_phase_and_the_hash_read() -> None:
    desired, job = translated_job()
    slim = cached_fields.without_template(copy.deepcopy(job))
    assert "template" not in slim["spec"] and slim["metadata"] == job["metadata"] and slim["status"] == job["status"]
    assert slim["spec"]["suspend"] == job["spec"]["suspend"]
    assert st.job_phase(slim, True) == st.job_phase(job, True)
    assert Applier(None, "kaiwo-kaiwojob").unchanged(desired, slim)  # type: ignore[arg-type]
    assert size(slim) < size(job) * 0.6


def test_a_workload_keeps_its_pod_sets_gpu_demand_and_status() -> None:
    wl = workload_of(translated_job()[1])
    slim = cached_fields.workload(copy.deepcopy(wl))
    assert reclaim.workload_gpus(slim) == reclaim.workload_gpus(wl) == {"amd.com/gpu": 4}
    assert slim["status"] == wl["status"] and slim["spec"]["queueName"] == "kaiwo"
    containers = slim["spec"]["podSets"][0]["template"]["spec"]["containers"]
    assert all(set(c) <= {"name", "resources"} for c in containers)
    assert size(slim) < size(wl) * 0.6


def test_a_pod_keeps_its_gpus_gates_node_and_status() -> None:
    pod = pod_of(translated_job()[1])
    slim = cached_fields.pod(copy.deepcopy(pod))
    assert _pod_gpus(slim) == _pod_gpus(pod) and _pod_gpus(pod)
    assert reclaim.pod_gpus(slim) == reclaim.pod_gpus(pod)
    for key in ("nodeName", "schedulingGates"):
        assert slim["spec"][key] == pod["spec"][key]
    assert slim["status"] == pod["status"] and slim["metadata"] == pod["metadata"]
    assert "volumes" not in slim["spec"]
    assert size(slim) < size(pod)


async def test_the_manager_gives_every_informer_of_a_kind_its_transform() -> None:
    mgr = Manager(
        Discovery(every=True),  # type: ignore[arg-type]
        ManagerOptions(health_address="", metrics_address="", transforms=cached_fields.TRANSFORMS),
    )
    labelled = await mgr.informer("batch/v1", "Job", label_selector="kaiwo.silogen.ai/run-id")
    assert labelled.transform is cached_fields.without_template
    assert (await mgr.informer("kueue.x-k8s.io/v1beta2", "Workload")).transform is cached_fields.workload
    assert (await mgr.informer("v1", "Pod")).transform is cached_fields.pod
    assert (await mgr.informer("v1", "Node")).transform is None
