"""Verdicts on live Kueue objects: terminating, inactive, not yet reported, and what holds them."""

from __future__ import annotations

from kaiwo.runtime.objects import Obj
from kaiwo.translate import kueuestate


def cq(
    name: str,
    *,
    active: str | None = "True",
    reason: str = "Ready",
    deleting: bool = False,
    flavors: tuple[str, ...] = (),
) -> Obj:
    meta: Obj = {"name": name}
    if deleting:
        meta |= {"deletionTimestamp": "2026-01-01T00:00:00Z", "finalizers": ["kueue.x-k8s.io/resource-in-use"]}
    status: Obj = {"admittedWorkloads": 2, "reservingWorkloads": 2}
    if active is not None:
        status["conditions"] = [{"type": "Active", "status": active, "reason": reason, "message": "m"}]
    groups = [{"flavors": [{"name": f} for f in flavors]}]
    return {"metadata": meta, "spec": {"resourceGroups": groups}, "status": status}


def test_active_queue_is_ok_and_a_flavor_without_conditions_too() -> None:
    assert kueuestate.verdict("ClusterQueue", cq("a")).ok
    assert kueuestate.verdict("ResourceFlavor", {"metadata": {"name": "f"}}).ok


def test_inactive_and_unreported_queues_say_so_with_kueues_reason() -> None:
    v = kueuestate.verdict("ClusterQueue", cq("a", active="False", reason="FlavorNotFound"))
    assert (v.state, v.detail) == ("Inactive", "Kueue says FlavorNotFound: m")
    assert kueuestate.verdict("LocalQueue", cq("a", active=None)).state == "Unknown"


def test_terminating_queue_names_finalizer_and_the_workloads_it_holds() -> None:
    workloads = [
        {"metadata": {"name": f"w{i}", "namespace": "ns"}, "status": {"admission": {"clusterQueue": "a"}}}
        for i in range(7)
    ]
    v = kueuestate.verdict(
        "ClusterQueue", cq("a", active="False", reason="Terminating", deleting=True), workloads=workloads
    )
    assert v.state == "Terminating" and not v.ok
    assert "held by finalizer kueue.x-k8s.io/resource-in-use" in v.detail
    assert "2 admitted and 2 reserving workload(s): ns/w0, ns/w1, ns/w2, ns/w3, ns/w4 and 2 more" in v.detail
    assert v.detail.endswith("Kueue says Terminating: m")


def test_finished_and_deleted_workloads_hold_no_quota() -> None:
    """Kueue keeps a finished Workload's admission as a record but releases its quota; naming it as a holder
    would send an admin after a Workload that is not what keeps the ClusterQueue."""

    def wl(name: str, *, finished: str | None = None, deleting: bool = False, active: bool | None = None) -> Obj:
        meta: Obj = {"name": name, "namespace": "ns"} | ({"deletionTimestamp": "t"} if deleting else {})
        status: Obj = {"admission": {"clusterQueue": "a"}}
        if finished is not None:
            status["conditions"] = [{"type": "Finished", "status": finished, "reason": "OwnerNotFound"}]
        return {"metadata": meta, "spec": {} if active is None else {"active": active}, "status": status}

    workloads = [
        wl("running"),
        wl("done", finished="True"),
        wl("gone", deleting=True),
        wl("off", active=False),
        wl("odd", finished="False", active=True),
    ]
    assert kueuestate.workloads_in("a", workloads) == ["ns/running", "ns/odd"]
    v = kueuestate.verdict("ClusterQueue", cq("a", deleting=True), workloads=workloads)
    assert "reserving workload(s): ns/odd, ns/running;" in v.detail, v.detail


def test_terminating_flavor_names_the_cluster_queues_using_it() -> None:
    flavor = {"metadata": {"name": "f", "deletionTimestamp": "t", "finalizers": ["kueue.x-k8s.io/resource-in-use"]}}
    v = kueuestate.verdict("ResourceFlavor", flavor, cluster_queues=[cq("a", flavors=("f",)), cq("b", flavors=("g",))])
    assert v.state == "Terminating" and v.detail.endswith("used by ClusterQueue(s) a")
