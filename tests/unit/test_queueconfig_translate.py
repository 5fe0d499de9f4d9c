"""KaiwoQueueConfig -> Kueue objects."""

from __future__ import annotations

from kaiwo.translate import queueconfig as qc
from tests.builders import KaiwoQueueConfigBuilder

CONFIG = (
    KaiwoQueueConfigBuilder()
    .uid("u-1")
    .topology("rack", "kaiwo/topology-rack", "kubernetes.io/hostname")
    .resource_flavor(
        "mi300x",
        {"kaiwo/nodepool": "mi300x"},
        topology="rack",
        taints=[{"key": "gpu", "value": "true", "effect": "NoSchedule"}],
    )
    .resource_flavor("plain", {"kaiwo/nodepool": "plain"})
    .cluster_queue(
        "team-a",
        namespaces=["a", "a", "missing"],
        quotas={"mi300x": {"amd.com/gpu": 8, "memory": "1Ti", "cpu": 100}},
        covered=["cpu", "memory", "amd.com/gpu"],
        cohort="kaiwo",
        queueingStrategy="BestEffortFIFO",
        unknownField=1,
    )
    .cluster_queue("shared")
    .priority_class("high", 1000, "urgent")
    .obj()
)


def test_objects_are_labelled_and_owned() -> None:
    out = qc.kueue_objects(CONFIG, topology_api_version="kueue.x-k8s.io/v1beta1", existing_namespaces={"a", "b"})
    kinds = {kind: [o["metadata"]["name"] for o in objs] for kind, objs in out.in_order()}
    assert kinds == {
        "Topology": ["rack"],
        "ResourceFlavor": ["mi300x", "plain"],
        "ClusterQueue": ["team-a", "shared"],
        "LocalQueue": ["team-a"],
        "WorkloadPriorityClass": ["high"],
    }
    for _, objs in out.in_order():
        for o in objs:
            assert qc.owned_by_kaiwo(o)
            (ref,) = o["metadata"]["ownerReferences"]
            assert ref["uid"] == "u-1" and ref["controller"] is True and ref["kind"] == "KaiwoQueueConfig"
    (lq,) = out.local_queues
    assert lq["metadata"]["namespace"] == "a" and lq["spec"] == {"clusterQueue": "team-a"}


def test_flavors_topology_and_worker_label() -> None:
    out = qc.kueue_objects(CONFIG, topology_api_version="kueue.x-k8s.io/v1beta1", existing_namespaces=set())
    mi300x, plain = out.resource_flavors
    assert mi300x["spec"] == {
        "nodeLabels": {"kaiwo/nodepool": "mi300x"},
        "topologyName": "rack",
        "nodeTaints": [{"key": "gpu", "value": "true", "effect": "NoSchedule"}],
    }
    assert plain["spec"] == {
        "nodeLabels": {"kaiwo/nodepool": "plain", "kaiwo/worker": "true"},
        "topologyName": "default-topology",
    }
    assert out.topologies[0]["apiVersion"] == "kueue.x-k8s.io/v1beta1"


def test_without_topology_api_topologies_are_skipped_and_flavors_lose_topology_name() -> None:
    out = qc.kueue_objects(CONFIG, topology_api_version=None, existing_namespaces=set())
    assert out.topologies == []
    assert all("topologyName" not in f["spec"] for f in out.resource_flavors)


def test_cluster_queue_keeps_known_fields_and_orders_quotas_by_covered_resources() -> None:
    out = qc.kueue_objects(CONFIG, topology_api_version=None, existing_namespaces=set())
    spec = out.cluster_queues[0]["spec"]
    assert "unknownField" not in spec and spec["cohortName"] == "kaiwo" and "cohort" not in spec  # v1beta2 name
    resources = spec["resourceGroups"][0]["flavors"][0]["resources"]
    assert [r["name"] for r in resources] == ["cpu", "memory", "amd.com/gpu"]
    assert out.priority_classes[0] == {
        "apiVersion": "kueue.x-k8s.io/v1beta2",
        "kind": "WorkloadPriorityClass",
        "metadata": out.priority_classes[0]["metadata"],
        "value": 1000,
        "description": "urgent",
    }


def test_v1beta1_kueue_gets_the_v1beta1_shape() -> None:
    out = qc.kueue_objects(
        CONFIG, topology_api_version=None, existing_namespaces={"a"}, kueue_api="kueue.x-k8s.io/v1beta1"
    )
    assert {o["apiVersion"] for _, objs in out.in_order() for o in objs} == {"kueue.x-k8s.io/v1beta1"}
    assert out.cluster_queues[0]["spec"]["cohort"] == "kaiwo"


def test_to_v1beta2_converts_as_kueue_does() -> None:
    spec = {
        "cohort": "c",
        "admissionChecks": ["prov"],
        "flavorFungibility": {"whenCanBorrow": "Borrow", "whenCanPreempt": "Preempt"},
        "stopPolicy": "None",
    }
    assert qc.to_v1beta2(spec) == {
        "cohortName": "c",
        "admissionChecksStrategy": {"admissionChecks": [{"name": "prov"}]},
        "flavorFungibility": {"whenCanBorrow": "MayStopSearch", "whenCanPreempt": "MayStopSearch"},
        "stopPolicy": "None",
    }


def test_references_name_what_kueue_keeps_alive_for_an_object() -> None:
    """A re-created object must not name one that is being deleted (Kueue's resource-in-use finalizer would keep
    that one terminating for ever); these are the names the queue-config controller checks."""
    rf = {"spec": {"topologyName": "default-topology"}}
    cq = {"spec": {"resourceGroups": [{"flavors": [{"name": "a"}, {"name": "b"}]}, {"flavors": [{"name": "c"}]}]}}
    lq = {"spec": {"clusterQueue": "kaiwo"}}
    assert qc.references("ResourceFlavor", rf) == [("Topology", "default-topology")]
    assert qc.references("ResourceFlavor", {"spec": {}}) == []
    assert qc.references("ClusterQueue", cq) == [("ResourceFlavor", n) for n in "abc"]
    assert qc.references("LocalQueue", lq) == [("ClusterQueue", "kaiwo")]
    assert qc.references("Topology", {"spec": {"levels": []}}) == []
