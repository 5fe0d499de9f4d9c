"""``kaiwo status`` findings from objects: namespaces Kueue ignores, pending reasons, volumes, pods, queues."""

from __future__ import annotations

from typing import Any

from kaiwo.cli import explain
from kaiwo.runtime.objects import Obj
from tests.builders import KaiwoJobBuilder

SELECTOR = {"matchLabels": {"kueue-managed": "true"}}


def job(phase: str = "PENDING") -> Obj:
    return (
        KaiwoJobBuilder("train", "team").uid("u").phase(phase).condition("Admitted", False, "Pending", "waiting").obj()
    )


def ns(**labels: str) -> Obj:
    return {"metadata": {"name": "team", "labels": labels}}


def lq(active: str = "True") -> Obj:
    cond = {"type": "Active", "status": active, "reason": "Ready", "message": ""}
    return {"metadata": {"name": "kaiwo"}, "spec": {"clusterQueue": "kaiwo"}, "status": {"conditions": [cond]}}


def run(**kw: Any) -> list[explain.Finding]:
    args: dict[str, Any] = {
        "queue": "kaiwo",
        "children": [],
        "pods": [],
        "kueue": [],
        "local_queue": lq(),
        "cluster_queue": None,
        "namespace": ns(**{"kueue-managed": "true"}),
        "kueue_selector": SELECTOR,
        "events": [],
    }
    args.update(kw)
    return explain.findings(job(), **args)


def test_selector_semantics() -> None:
    expr = {
        "matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system"]}]
    }
    assert explain.selector_matches(expr, {"kubernetes.io/metadata.name": "team"})
    assert not explain.selector_matches(expr, {"kubernetes.io/metadata.name": "kube-system"})
    assert explain.selector_matches(None, {}) and not explain.selector_matches(SELECTOR, {})
    exists = {"matchExpressions": [{"key": "a", "operator": "Exists"}]}
    assert explain.selector_matches(exists, {"a": ""}) and not explain.selector_matches(exists, {})


def test_unmanaged_namespace_blocks_first_and_says_what_to_do() -> None:
    (first, *_) = run(namespace=ns())
    assert first.severity == "blocking" and first.subject == "Namespace/team"
    assert "kueue-managed=true" in first.message and "kubectl label namespace team" in first.hint
    assert not run(kueue_selector=None)  # Kueue's configuration unreadable: no guess


def test_pending_workload_reason_and_missing_local_queue() -> None:
    wl = {
        "metadata": {"name": "pod-web-1"},
        "status": {
            "conditions": [
                {
                    "type": "QuotaReserved",
                    "status": "False",
                    "reason": "Pending",
                    "message": "couldn't assign flavors to pod set main: insufficient quota for amd.com/gpu",
                }
            ]
        },
    }
    found = run(kueue=[wl], local_queue=None)
    assert [f.subject for f in found] == ["LocalQueue/kaiwo", "Workload/pod-web-1"]
    assert "insufficient quota for amd.com/gpu" in found[1].message


def test_preempted_workload_is_a_warning() -> None:
    wl = {
        "metadata": {"name": "w"},
        "status": {
            "conditions": [
                {"type": "Admitted", "status": "True"},
                {"type": "Preempted", "status": "True", "reason": "InClusterQueue", "message": "by higher priority"},
            ]
        },
    }
    (f,) = run(kueue=[wl])
    assert f.severity == "warning" and "preempted (InClusterQueue): by higher priority" in f.message


def test_pvc_pending_with_its_event_lost_pvc_and_unschedulable_pod() -> None:
    pending = {
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data", "uid": "p1"},
        "status": {"phase": "Pending"},
    }
    lost = {"kind": "PersistentVolumeClaim", "metadata": {"name": "hf", "uid": "p2"}, "status": {"phase": "Lost"}}
    event = {"involvedObject": {"uid": "p1"}, "reason": "ProvisioningFailed", "message": 'storageclass "x" not found'}
    pod = {
        "kind": "Pod",
        "metadata": {"name": "train-abc"},
        "status": {
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": "0/9 nodes: Insufficient amd.com/gpu",
                }
            ]
        },
    }
    found = {f.subject: f for f in run(children=[pending, lost], pods=[pod], events=[event])}
    assert "ProvisioningFailed" in found["PersistentVolumeClaim/data"].message
    assert found["PersistentVolumeClaim/hf"].message.startswith("Lost")
    assert "Insufficient amd.com/gpu" in found["Pod/train-abc"].message


def test_download_job_progress_and_usage_line() -> None:
    dl = {"kind": "Job", "metadata": {"name": "train-download"}, "status": {"active": 1, "startTime": "t0"}}
    (f,) = run(children=[dl])
    assert f.severity == "info" and "downloading (active=1, started t0)" in f.message
    cq = {
        "metadata": {"name": "kaiwo"},
        "spec": {"resourceGroups": [{"flavors": [{"resources": [{"name": "amd.com/gpu", "nominalQuota": 32}]}]}]},
        "status": {
            "flavorsReservation": [{"resources": [{"name": "amd.com/gpu", "total": "8"}]}],
            "pendingWorkloads": 3,
        },
    }
    assert explain.usage_line(cq) == "ClusterQueue kaiwo usage/quota: amd.com/gpu 8/32; 0 admitted, 3 pending"


def test_phase_reason_prefers_the_failing_condition() -> None:
    assert explain.phase_reason(job()) == ("PENDING", "Pending: waiting")
