"""Golden cases of the queue-config translation (kaiwo.translate.queueconfig.kueue_objects): a KaiwoQueueConfig
built with the test builders plus the cluster facts -> the Kueue objects, in sync order. Each golden file
(tests/unit/golden/queueconfig/<case>.yaml) shows the input and the output; ``KAIWO_UPDATE_GOLDEN=1`` rewrites
them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from kaiwo.translate.queueconfig import kueue_objects
from tests import golden
from tests.builders import KaiwoQueueConfigBuilder

FOLDER = Path(__file__).parent / "golden" / "queueconfig"
TOPOLOGY_API = "kueue.x-k8s.io/v1alpha1"
GPU_TAINT = {"key": "amd.com/gpu", "value": "present", "effect": "NoSchedule"}


@dataclass
class Case:
    config: KaiwoQueueConfigBuilder
    topology_api: str | None = None
    namespaces: set[str] = field(default_factory=set)


CASES: dict[str, Case] = {
    "empty-spec": Case(KaiwoQueueConfigBuilder()),
    "one-flavor-no-topology-api": Case(
        KaiwoQueueConfigBuilder()
        .resource_flavor("cpu-only", {"kaiwo/nodepool": "cpu"})
        .cluster_queue("kaiwo", quotas={"cpu-only": {"cpu": 96, "memory": "900Gi"}})
    ),
    "topologies-when-the-api-is-served": Case(
        KaiwoQueueConfigBuilder()
        .topology("default-topology", "kaiwo/topology-block", "kaiwo/topology-rack", "kubernetes.io/hostname")
        .topology("rack", "kaiwo/topology-rack")
        .resource_flavor("mi300x", {"kaiwo/nodepool": "mi300x"}, topology="rack")
        .resource_flavor("plain", {"kaiwo/nodepool": "plain"}),
        topology_api=TOPOLOGY_API,
    ),
    "topologies-dropped-without-the-api": Case(
        KaiwoQueueConfigBuilder()
        .topology("rack", "kaiwo/topology-rack")
        .resource_flavor("mi300x", {"kaiwo/nodepool": "mi300x"}, topology="rack")
    ),
    "taints-and-tolerations-are-copied": Case(
        KaiwoQueueConfigBuilder().resource_flavor(
            "mi300x",
            {"kaiwo/nodepool": "mi300x"},
            taints=[GPU_TAINT],
            tolerations=[{"key": "amd.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        )
    ),
    "quotas-follow-covered-resources-and-unknown-fields-drop": Case(
        KaiwoQueueConfigBuilder()
        .resource_flavor("mi300x", {"kaiwo/nodepool": "mi300x"})
        .cluster_queue(
            "team-a",
            quotas={"mi300x": {"amd.com/gpu": 8, "memory": "1Ti", "cpu": 100}},
            covered=["cpu", "memory", "amd.com/gpu"],
            cohort="kaiwo",
            queueingStrategy="BestEffortFIFO",
            preemption={"withinClusterQueue": "LowerPriority"},
            notAKueueField=1,
        )
    ),
    "local-queues-only-in-existing-listed-namespaces": Case(
        KaiwoQueueConfigBuilder()
        .cluster_queue("team-a", namespaces=["b", "a", "a", "missing"])
        .cluster_queue("shared")
        .cluster_queue("nobody", namespaces=[]),
        namespaces={"a", "b", "c"},
    ),
    "priority-classes": Case(
        KaiwoQueueConfigBuilder().priority_class("high", 1000, "urgent work").priority_class("low", -10)
    ),
}


def render(case: Case) -> dict[str, Any]:
    config = case.config.obj()
    out = kueue_objects(config, topology_api_version=case.topology_api, existing_namespaces=case.namespaces)
    return {
        "input": {
            "spec": config["spec"],
            "topologyApiVersion": case.topology_api,
            "existingNamespaces": sorted(case.namespaces),
        },
        "output": [{kind: objs} for kind, objs in out.in_order() if objs],  # a list: the sync order matters
    }


@pytest.mark.parametrize("name", sorted(CASES))
def test_queueconfig_golden(name: str) -> None:
    golden.check(FOLDER / f"{name}.yaml", render(CASES[name]))


def test_input_is_not_modified() -> None:
    for case in CASES.values():
        config = case.config.obj()
        before = golden.dump(config)
        kueue_objects(config, topology_api_version=case.topology_api, existing_namespaces=case.namespaces)
        assert golden.dump(config) == before


def test_no_stale_golden_files() -> None:
    assert golden.stale_files(FOLDER, list(CASES)) == []
