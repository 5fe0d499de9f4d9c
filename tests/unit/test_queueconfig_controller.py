"""Pure parts of the KaiwoQueueConfig controller: dynamic-mode merge and default-aware comparison."""

from __future__ import annotations

from kaiwo.api.config import KaiwoConfigSpec
from kaiwo.controllers.queueconfig import default_spec, merge_defaults, with_defaults
from kaiwo.devcluster import topology
from kaiwo.translate import nodepools


def defaults() -> dict[str, object]:
    pools = nodepools.discover(topology.node_manifests(topology.load(), "v1.35.4"))
    return default_spec(pools, KaiwoConfigSpec())


def test_merge_replaces_same_named_entries_and_the_default_queue_only() -> None:
    d = defaults()
    custom = {
        "clusterQueues": [{"name": "team-a", "spec": {}}, {"name": "kaiwo", "spec": {"cohort": "old"}}],
        "resourceFlavors": [
            {"name": "mine", "nodeLabels": {"x": "y"}},
            {"name": "cpu-only-0gpu-28core-115gi", "nodeLabels": {"stale": "true"}},
        ],
        "topologies": [{"metadata": {"name": "default-topology"}, "spec": {"levels": []}}],
        "workloadPriorityClasses": [{"metadata": {"name": "high"}, "value": 10}],
    }
    merged = merge_defaults(custom, d, "kaiwo")
    assert [q["name"] for q in merged["clusterQueues"]] == ["team-a", "kaiwo"]
    assert merged["clusterQueues"][1]["spec"]["cohort"] == "kaiwo"
    flavors = {f["name"]: f for f in merged["resourceFlavors"]}
    assert "mine" in flavors and flavors["cpu-only-0gpu-28core-115gi"]["nodeLabels"] == {
        "kaiwo/nodepool": "cpu-only-0gpu-28core-115gi"
    }
    assert merged["topologies"][0]["spec"]["levels"]  # the discovered default topology replaced the stale one
    assert merged["workloadPriorityClasses"] == custom["workloadPriorityClasses"]


def test_merging_twice_is_stable_and_compared_with_crd_defaults() -> None:
    d = defaults()
    once = merge_defaults({}, d, "kaiwo")
    assert merge_defaults(once, d, "kaiwo") == once
    stored = with_defaults(once)  # what the apiserver keeps (e.g. queueingStrategy filled in)
    assert stored != once
    assert with_defaults(merge_defaults(stored, d, "kaiwo")) == stored  # so a settled config is not re-patched
