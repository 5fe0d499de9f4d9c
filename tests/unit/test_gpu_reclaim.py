"""Idle-GPU reclamation decisions: opt-in, settings layers, phases, and the all-or-nothing choice of victims."""

from __future__ import annotations

from kaiwo.api.config import KaiwoGpuPreemptionConfig
from kaiwo.gpumetrics.config import EnvDefaults, env_defaults
from kaiwo.gpumetrics.reclaim import (
    PREFIX,
    Candidate,
    Demand,
    aggregate,
    decide,
    free_on_nodes,
    free_quota,
    kueue_demand,
    opted_in,
    phase,
    pod_demand,
    resolve,
    spec_overrides,
)
from kaiwo.runtime.objects import Obj
from tests.builders import NodeBuilder, PodBuilder, WorkloadBuilder

NOW = 10_000.0
AMD, NV = "amd.com/gpu", "nvidia.com/gpu"


def test_opt_in_merges_namespace_and_owner() -> None:
    assert opted_in({}, {"other": "x"}) is None
    ns = {PREFIX + "enabled": "true", PREFIX + "threshold": "10"}
    merged = opted_in(ns, {PREFIX + "threshold": "20"})
    assert merged == {PREFIX + "enabled": "true", PREFIX + "threshold": "20"}
    assert opted_in(ns, {PREFIX + "enabled": "False"}) is None  # the owner opts out of its namespace's setting
    spec, problems = spec_overrides(
        {PREFIX + "threshold": "20", PREFIX + "grace-period": "5s", PREFIX + "policy": "Sometimes", PREFIX + "ttl": "x"}
    )
    assert spec == {"utilizationThreshold": 20.0, "gracePeriod": "5s"}
    assert len(problems) == 2 and "Sometimes" in problems[1]


def test_settings_layers() -> None:
    env = env_defaults({"GPU_PREEMPTION_DEFAULT_GRACE_PERIOD": "2m", "GPU_PREEMPTION_DEFAULT_POLICY": "Always"})
    cfg = KaiwoGpuPreemptionConfig(default_grace_period="1m")
    s = resolve({"utilizationThreshold": 7.0}, cfg, env)
    assert (s.threshold, s.grace, s.policy, s.aggregation, s.ttl) == (7.0, 60.0, "Always", "Max", 86400.0)
    d = resolve({}, None, EnvDefaults())
    assert (d.threshold, d.grace, d.policy, d.aggregation) == (5.0, 600.0, "OnPressure", "Max")


def unschedulable(pod: PodBuilder, message: str) -> Obj:
    return pod.phase("Pending").condition("PodScheduled", False, "Unschedulable", message).obj()


def test_aggregation_and_phase() -> None:
    tracked: list[Obj] = [
        {"podName": "a", "gpuMetrics": [{"utilization": 2.0}, {"utilization": 4.0}]},
        {"podName": "b", "gpuMetrics": [{"utilization": 30.0}]},
        {"podName": "c"},
    ]
    assert (aggregate(tracked, "Min"), aggregate(tracked, "Max"), aggregate(tracked, "Avg")) == (3.0, 30.0, 16.5)
    assert aggregate([{"podName": "c"}], "Max") is None
    running = [{"status": {"phase": "Running"}}]
    assert phase(running, None, [AMD], "", 3.0, 5.0) == "Idle"
    assert phase(running, None, [AMD], "", 5.0, 5.0) == "Active"
    assert phase(running, None, [AMD], "Idle", None, 5.0) == "Active"  # no samples: not known to be idle
    unsched = unschedulable(PodBuilder("u", "ns"), "Insufficient amd.com/gpu")
    assert phase([unsched], None, [AMD], "Active", None, 5.0) == "PendingGpu"
    assert phase([unsched], None, [NV], "", None, 5.0) == "PendingOther"
    quota = WorkloadBuilder("w", "ns").condition("QuotaReserved", False, message="insufficient quota for amd.com/gpu")
    assert phase([], quota.obj(), [AMD], "Active", None, 5.0) == "PendingGpu"
    assert phase([], None, [AMD], "Active", None, 5.0) == "Active"


def kueue_wl(name: str, gpus: int, resource: str = AMD, count: int = 1, reserved: bool = False) -> Obj:
    return (
        WorkloadBuilder(name, "ns")
        .created("1970-01-01T01:00:00Z")
        .queue("kaiwo")
        .pod_set("main", count, limits={resource: str(gpus)})
        .condition("QuotaReserved", reserved)
        .obj()
    )


def test_kueue_and_pod_demand() -> None:
    (d,) = kueue_demand(kueue_wl("w", 2, count=3), "kaiwo")
    assert (d.key, d.resource, d.gpus, d.since, d.cluster_queue) == ("Workload ns/w", AMD, 6, 3600.0, "kaiwo")
    assert kueue_demand(kueue_wl("w", 2, reserved=True), "kaiwo") == []
    assert kueue_demand(kueue_wl("w", 2), None) == []
    pod = unschedulable(
        PodBuilder("p", "ns").node_selector(pool="h100").requests(**{NV: "4"}),
        "0/3 nodes: 3 Insufficient nvidia.com/gpu.",
    )
    (pd,) = pod_demand(pod)
    assert (pd.key, pd.resource, pd.gpus, pd.cluster_queue, dict(pd.node_selector)) == (
        "Pod ns/p",
        NV,
        4,
        None,
        {"pool": "h100"},
    )


def test_free_quota_and_nodes() -> None:
    cq = {
        "spec": {
            "resourceGroups": [
                {
                    "flavors": [
                        {"resources": [{"name": AMD, "nominalQuota": 16}, {"name": "cpu", "nominalQuota": "100"}]}
                    ]
                },
                {"flavors": [{"resources": [{"name": AMD, "nominalQuota": "8"}]}]},
            ]
        },
        "status": {"flavorsReservation": [{"resources": [{"name": AMD, "total": "20"}]}]},
    }
    assert free_quota(cq) == {AMD: 4}
    nodes = [NodeBuilder("n").gpus(8, "amd").obj()]
    pods = [
        PodBuilder("a", "ns").on_node("n").gpus(3, "amd").phase("Running").obj(),
        PodBuilder("b", "ns").on_node("n").gpus(5, "amd").phase("Succeeded").obj(),
    ]
    assert free_on_nodes(nodes, pods) == {"n": {AMD: 5}}


def cand(
    key: str,
    gpus: int,
    idle_for: float | None,
    *,
    resource: str = AMD,
    cq: str | None = "kaiwo",
    policy: str = "OnPressure",
    grace: float = 60,
    node: str = "n0",
    preempting_for: str | None = None,
) -> Candidate:
    return Candidate(
        key,
        resource,
        gpus,
        None if idle_for is None else NOW - idle_for,
        grace,
        policy,
        cq,
        {node: gpus},
        preempting_for,
    )


def test_kueue_demand_is_met_all_or_nothing_by_same_queue_and_vendor() -> None:
    demand = Demand("Workload ns/big", AMD, 8, 0.0, "kaiwo")
    quota = {("kaiwo", AMD): 2}  # lacks 6
    victims = [
        cand("ns/a", 4, idle_for=600),
        cand("ns/b", 4, idle_for=300),
        cand("ns/c", 4, idle_for=900, resource=NV),  # other vendor
        cand("ns/d", 4, idle_for=30),  # within its grace period
        cand("ns/e", 4, idle_for=None),  # active
        cand("ns/f", 4, idle_for=1200, cq="other"),  # other ClusterQueue
    ]
    got = decide([demand], victims, quota, {}, {}, NOW)
    assert [d.victim for d in got] == ["ns/a", "ns/b"] and {d.preempted_for for d in got} == {"Workload ns/big"}
    # one fewer idle workload: 4 idle GPUs cannot cover 6 -> nobody is preempted
    assert decide([demand], [v for v in victims if v.key != "ns/b"], quota, {}, {}, NOW) == []
    # enough free quota: the demand is not waiting for GPUs
    assert decide([demand], victims, {("kaiwo", AMD): 8}, {}, {}, NOW) == []
    # GPUs already being freed for it count: only 2 more are needed
    freeing = cand("ns/z", 4, idle_for=700, preempting_for="Workload ns/big")
    assert [d.victim for d in decide([demand], [*victims, freeing], quota, {}, {}, NOW)] == ["ns/a"]


def test_always_policy_needs_no_demand_and_victims_are_claimed_once() -> None:
    always = cand("ns/a", 2, idle_for=120, policy="Always")
    young = cand("ns/y", 2, idle_for=10, policy="Always")
    got = decide([], [always, young], {}, {}, {}, NOW)
    assert [(d.victim, d.preempted_for) for d in got] == [("ns/a", "")]
    two = [Demand("Workload ns/x", AMD, 4, 1.0, "kaiwo"), Demand("Workload ns/y", AMD, 4, 2.0, "kaiwo")]
    got = decide(two, [cand("ns/a", 4, 600), cand("ns/b", 4, 500)], {}, {}, {}, NOW)
    assert [(d.victim, d.preempted_for) for d in got] == [("ns/a", "Workload ns/x"), ("ns/b", "Workload ns/y")]


def test_unschedulable_pod_is_met_on_one_matching_node() -> None:
    demand = Demand("Pod ns/p", NV, 8, 0.0, None, {"pool": "h100"})
    nodes_free = {"h0": {NV: 2}, "h1": {NV: 4}, "x0": {NV: 8}}
    labels = {"h0": {"pool": "h100"}, "h1": {"pool": "h100"}, "x0": {"pool": "other"}}
    victims = [
        cand("ns/a", 4, 600, resource=NV, cq=None, node="h1"),
        cand("ns/b", 4, 900, resource=NV, cq=None, node="h0"),  # h0 would still lack 2
    ]
    got = decide([demand], victims, {}, nodes_free, labels, NOW)
    assert [d.victim for d in got] == ["ns/a"] and "h1" in got[0].reason
    assert decide([demand], victims[1:], {}, nodes_free, labels, NOW) == []
