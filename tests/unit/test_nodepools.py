"""Node-pool discovery on the local cluster's default topology and on edge cases."""

from __future__ import annotations

from typing import Any

import pytest

from kaiwo.devcluster import topology
from kaiwo.translate import nodepools as np
from kaiwo.translate.quantity import QuantityError, parse, to_cpu_string, to_memory_string


def default_nodes() -> list[dict[str, Any]]:
    return topology.node_manifests(topology.load(), "v1.35.4")


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("128", 128),
        ("500m", 0.5),
        ("1536Gi", 1536 * 2**30),
        ("1Ti", 2**40),
        ("2k", 2000),
        ("1e3", 1000),
        ("1.5", 1.5),
        (".5Gi", 2**29),
        (8, 8),
    ],
)
def test_quantities(text: str | int, value: float) -> None:
    assert parse(text) == value


@pytest.mark.parametrize("bad", ["", "1.2.3", "Gi", "12 Gi", "1gi", "--1"])
def test_bad_quantities_are_named(bad: str) -> None:
    with pytest.raises(QuantityError, match="not a Kubernetes quantity"):
        parse(bad)


def test_canonical_strings() -> None:
    assert to_cpu_string(parse("115")) == "115" and to_cpu_string(parse("1500m")) == "1500m"
    assert to_memory_string(1382 * 2**30) == "1382Gi" and to_memory_string(2**40) == "1Ti"


def test_models_from_labeller_names() -> None:
    assert np.amd_model("AMD_Instinct_MI300X_OAM") == "mi300x"
    assert np.amd_model("AMD_Radeon_PRO_W7900") == "prow7900"
    assert np.nvidia_model("NVIDIA-H100-80GB-HBM3") == "nvidiah10080gbhbm3"
    assert np.nvidia_model("Tesla-K80") == "teslak80"


def test_default_topology_pools_flavors_and_quotas() -> None:
    pools = np.discover(default_nodes())
    assert [p.flavor for p in pools] == [
        "cpu-only-0gpu-28core-115gi",
        "nvidia-nvidiah10080gbhbm3-8gpu-86core-921gi",
        "amd-mi300x-8gpu-115core-1382gi",
    ]
    amd = pools[2]
    assert amd.nodes == [f"amd-mi300x-{i}" for i in range(4)]
    assert amd.quotas() == {"cpu": "460", "memory": "5528Gi", "amd.com/gpu": "32"}
    assert np.node_labels(amd) == {"kaiwo/worker": "true", "kaiwo/nodepool": amd.flavor, "kaiwo/gpu-model": "mi300x"}
    assert np.node_labels(pools[0]) == {"kaiwo/worker": "true", "kaiwo/nodepool": pools[0].flavor}

    cq = np.default_cluster_queue(pools, "kaiwo", "kaiwo")
    group = cq["spec"]["resourceGroups"][0]
    assert group["coveredResources"] == ["cpu", "memory", "nvidia.com/gpu", "amd.com/gpu"]
    by_flavor = {f["name"]: {r["name"]: r["nominalQuota"] for r in f["resources"]} for f in group["flavors"]}
    assert by_flavor["cpu-only-0gpu-28core-115gi"] == {
        "cpu": "28",
        "memory": "115Gi",
        "nvidia.com/gpu": "0",
        "amd.com/gpu": "0",
    }
    assert by_flavor[amd.flavor]["amd.com/gpu"] == "32" and by_flavor[amd.flavor]["nvidia.com/gpu"] == "0"
    assert cq["spec"]["cohort"] == "kaiwo" and cq["spec"]["namespaceSelector"] == {} and cq["namespaces"] == []
    assert np.default_flavors(pools[:1], "default-topology") == [
        {
            "name": "cpu-only-0gpu-28core-115gi",
            "nodeLabels": {"kaiwo/nodepool": "cpu-only-0gpu-28core-115gi"},
            "topologyName": "default-topology",
        }
    ]
    assert [lvl["nodeLabel"] for lvl in np.default_topology("default-topology")["spec"]["levels"]] == [
        "kaiwo/topology-block",
        "kaiwo/topology-rack",
        "kubernetes.io/hostname",
    ]


def test_cordoned_and_control_plane_nodes_are_skipped() -> None:
    nodes = default_nodes()
    nodes[0]["spec"]["unschedulable"] = True  # amd-mi300x-0
    nodes[6]["metadata"]["labels"]["node-role.kubernetes.io/control-plane"] = ""  # cpu-0
    pools = {p.flavor: p for p in np.discover(nodes, exclude_control_plane=True)}
    assert "cpu-only-0gpu-28core-115gi" not in pools
    assert pools["amd-mi300x-8gpu-115core-1382gi"].quotas()["amd.com/gpu"] == "24"
    assert "cpu-only-0gpu-28core-115gi" in {p.flavor for p in np.discover(nodes)}


def test_gpu_labels_without_count_make_a_cpu_node() -> None:
    node = {
        "metadata": {"name": "n", "labels": {"amd.com/gpu.product-name": "AMD_Instinct_MI250X"}},
        "status": {"capacity": {"cpu": "1500m", "memory": "10Gi"}},
    }
    f = np.node_facts(node)
    assert (f.vendor, f.model, f.gpus, f.cpu, f.memory_gi) == ("cpu", "only", 0, 1, 9)
