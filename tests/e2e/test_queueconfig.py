"""KaiwoQueueConfig controller on the local cluster: discovery, the default config, owned Kueue objects.

The controller runs in this process (a Manager with only this controller). The singleton `kaiwo` is shared
cluster state, so these tests run in order and each leaves the default config behind.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator

import pytest

from kaiwo.runtime.client import Client
from kaiwo.runtime.manager import Manager
from kaiwo.runtime.objects import Obj
from kaiwo.translate.queueconfig import MANAGED_BY_LABEL
from tests.e2e.conftest import running_operator
from tests.e2e.helpers import API, eventually, replace_spec

KUEUE = "kueue.x-k8s.io/v1beta1"
AMD_FLAVOR = "amd-mi300x-8gpu-115core-1382gi"
CPU_FLAVOR = "cpu-only-0gpu-28core-115gi"


@pytest.fixture(scope="module")
async def controller(client: Client, operator_kubeconfig: str, kaiwo_crds: None) -> AsyncIterator[Manager]:
    await client.delete(API, "KaiwoQueueConfig", "kaiwo")
    await eventually(lambda: _absent(client, API, "KaiwoQueueConfig", "kaiwo"), "no leftover config", timeout=30)
    async with running_operator(operator_kubeconfig) as mgr:  # as the chart's ServiceAccount, with its RBAC
        yield mgr


async def _absent(client: Client, api: str, kind: str, name: str, ns: str | None = None) -> bool:
    return await client.get_or_none(api, kind, name, ns) is None


async def config(client: Client) -> Obj | None:
    return await client.get_or_none(API, "KaiwoQueueConfig", "kaiwo")


async def ready(client: Client) -> Obj | None:
    c = await config(client)
    return c if c and (c.get("status") or {}).get("status") == "READY" else None


def quotas(cq: Obj) -> dict[str, dict[str, str]]:
    group = cq["spec"]["resourceGroups"][0]
    return {f["name"]: {r["name"]: str(r["nominalQuota"]) for r in f["resources"]} for f in group["flavors"]}


async def test_default_config_is_created_from_the_nodes(client: Client, controller: Manager) -> None:
    cfg = await eventually(lambda: ready(client), "default KaiwoQueueConfig READY", timeout=60)
    flavors = {f["name"] for f in cfg["spec"]["resourceFlavors"]}
    assert AMD_FLAVOR in flavors and CPU_FLAVOR in flavors
    cq = await eventually(lambda: client.get_or_none(KUEUE, "ClusterQueue", "kaiwo"), "ClusterQueue kaiwo")
    q = quotas(cq)
    assert q[AMD_FLAVOR]["amd.com/gpu"] == "32" and q[AMD_FLAVOR]["cpu"] == "460"
    assert q[CPU_FLAVOR]["amd.com/gpu"] == "0"
    assert cq["metadata"]["labels"][MANAGED_BY_LABEL] == "kaiwoqueueconfig"
    rf = await client.get(KUEUE, "ResourceFlavor", AMD_FLAVOR)
    assert rf["spec"]["nodeLabels"] == {"kaiwo/nodepool": AMD_FLAVOR}
    node = await client.get("v1", "Node", "amd-mi300x-0")
    labels = node["metadata"]["labels"]
    assert labels["kaiwo/nodepool"] == AMD_FLAVOR and labels["kaiwo/gpu-model"] == "mi300x"
    assert labels["kaiwo/worker"] == "true" and labels["kaiwo/topology-block"] == "block-a"


async def test_custom_config_is_synced_and_pruned_and_others_survive(
    client: Client, controller: Manager, namespace: str
) -> None:
    foreign = {"apiVersion": KUEUE, "kind": "ResourceFlavor", "metadata": {"name": "not-kaiwos"}, "spec": {}}
    await client.apply(foreign, "someone-else")
    base = await eventually(lambda: ready(client), "READY before the custom config")
    custom = copy.deepcopy(base)
    custom["spec"]["clusterQueues"].append(
        {
            "name": "team-a",
            "namespaces": [namespace],
            "spec": {
                "resourceGroups": [
                    {
                        "coveredResources": ["cpu"],
                        "flavors": [{"name": CPU_FLAVOR, "resources": [{"name": "cpu", "nominalQuota": 4}]}],
                    }
                ]
            },
        }
    )
    custom["spec"]["workloadPriorityClasses"] = [{"metadata": {"name": "e2e-high"}, "value": 1000}]
    await replace_spec(client, API, "KaiwoQueueConfig", "kaiwo", custom["spec"])
    await eventually(lambda: client.get_or_none(KUEUE, "ClusterQueue", "team-a"), "ClusterQueue team-a")
    await eventually(lambda: client.get_or_none(KUEUE, "LocalQueue", "team-a", namespace), "LocalQueue team-a")
    await eventually(lambda: client.get_or_none(KUEUE, "WorkloadPriorityClass", "e2e-high"), "WPC e2e-high")

    second = copy.deepcopy(await config(client))
    assert second is not None
    second["spec"]["clusterQueues"] = [q for q in second["spec"]["clusterQueues"] if q["name"] != "team-a"]
    second["spec"]["workloadPriorityClasses"] = []
    await replace_spec(client, API, "KaiwoQueueConfig", "kaiwo", second["spec"])
    await eventually(lambda: _absent(client, KUEUE, "ClusterQueue", "team-a"), "team-a pruned")
    await eventually(lambda: _absent(client, KUEUE, "WorkloadPriorityClass", "e2e-high"), "WPC pruned")
    await eventually(lambda: _absent(client, KUEUE, "LocalQueue", "team-a", namespace), "LocalQueue pruned")
    assert await client.get_or_none(KUEUE, "ResourceFlavor", "not-kaiwos") is not None
    await client.delete(KUEUE, "ResourceFlavor", "not-kaiwos")

    async def sync_events() -> set[str] | None:
        events = await client.list("v1", "Event", "default")
        reasons = {
            e["reason"]
            for e in events
            if e["involvedObject"].get("kind") == "KaiwoQueueConfig" and "team-a" in e.get("message", "")
        }
        wanted = {"KaiwoQueueConfigClusterQueueCreated", "KaiwoQueueConfigClusterQueueDeleted"}
        return reasons if wanted <= reasons else None

    await eventually(sync_events, "Created and Deleted events of ClusterQueue team-a")


async def test_immutable_flavor_change_is_recreated(client: Client, controller: Manager) -> None:
    """Kueue forbids changing a ResourceFlavor with a topology; the controller deletes (through Kueue's
    in-use finalizer) and recreates it."""
    cfg = copy.deepcopy(await eventually(lambda: ready(client), "READY"))
    before = await client.get(KUEUE, "ResourceFlavor", CPU_FLAVOR)
    assert before["spec"].get("topologyName")
    for f in cfg["spec"]["resourceFlavors"]:
        if f["name"] == CPU_FLAVOR:
            f["nodeLabels"] = {**f["nodeLabels"], "kaiwo.dev/e2e": "changed"}
    await replace_spec(client, API, "KaiwoQueueConfig", "kaiwo", cfg["spec"])

    async def recreated() -> Obj | None:
        rf = await client.get_or_none(KUEUE, "ResourceFlavor", CPU_FLAVOR)
        if rf is None or rf["metadata"]["uid"] == before["metadata"]["uid"]:
            return None
        return rf if rf["spec"]["nodeLabels"].get("kaiwo.dev/e2e") == "changed" else None

    rf = await eventually(recreated, "the flavor recreated with the new labels", timeout=60)
    assert rf["spec"]["topologyName"] == before["spec"]["topologyName"]
    await eventually(lambda: ready(client), "READY after the recreate")
    restored = copy.deepcopy(await eventually(lambda: ready(client), "READY"))
    for f in restored["spec"]["resourceFlavors"]:
        f.get("nodeLabels", {}).pop("kaiwo.dev/e2e", None)
    await replace_spec(client, API, "KaiwoQueueConfig", "kaiwo", restored["spec"])

    async def restored_flavor() -> bool:
        rf = await client.get_or_none(KUEUE, "ResourceFlavor", CPU_FLAVOR)
        return rf is not None and "kaiwo.dev/e2e" not in rf["spec"]["nodeLabels"]

    await eventually(restored_flavor, "the flavor restored", timeout=60)


async def test_deleted_managed_cluster_queue_comes_back_without_failing(client: Client, controller: Manager) -> None:
    await eventually(lambda: ready(client), "READY")
    for _ in range(3):
        cq = await eventually(lambda: client.get_or_none(KUEUE, "ClusterQueue", "kaiwo"), "ClusterQueue kaiwo")
        await client.delete(KUEUE, "ClusterQueue", "kaiwo")
        old_uid: str = cq["metadata"]["uid"]
        await eventually(lambda: _recreated(client, old_uid), "ClusterQueue kaiwo recreated")  # noqa: B023
        # FAILED while it was terminating is the truth; READY again once the new one is active.
        await eventually(lambda: ready(client), "READY with the recreated ClusterQueue", timeout=30)


async def _recreated(client: Client, old_uid: str) -> bool:
    cq = await client.get_or_none(KUEUE, "ClusterQueue", "kaiwo")
    return cq is not None and cq["metadata"]["uid"] != old_uid and not cq["metadata"].get("deletionTimestamp")


async def test_missing_namespace_fails_and_recreation_recovers(client: Client, controller: Manager) -> None:
    ns = "e2e-qc-lifecycle"
    await client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    cfg = copy.deepcopy(await eventually(lambda: ready(client), "READY"))
    cfg["spec"]["clusterQueues"].append({"name": "team-ns", "namespaces": [ns], "spec": {}})
    await replace_spec(client, API, "KaiwoQueueConfig", "kaiwo", cfg["spec"])
    await eventually(lambda: client.get_or_none(KUEUE, "LocalQueue", "team-ns", ns), "LocalQueue in " + ns)
    await client.delete("v1", "Namespace", ns)
    await eventually(lambda: _absent(client, "v1", "Namespace", ns), "namespace deleted", timeout=90)

    async def failed() -> Obj | None:
        c = await config(client)
        return c if c and c["status"]["status"] == "FAILED" else None

    c = await eventually(failed, "FAILED after the namespace vanished", timeout=30)
    assert ns in c["status"]["conditions"][0]["message"]
    await client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    await eventually(lambda: ready(client), "READY after the namespace came back", timeout=30)
    await eventually(lambda: client.get_or_none(KUEUE, "LocalQueue", "team-ns", ns), "LocalQueue recreated")
    latest = await config(client)
    assert latest is not None
    cfg = copy.deepcopy(latest)
    cfg["spec"]["clusterQueues"] = [q for q in cfg["spec"]["clusterQueues"] if q["name"] != "team-ns"]
    await replace_spec(client, API, "KaiwoQueueConfig", "kaiwo", cfg["spec"])
    await client.delete("v1", "Namespace", ns)


async def test_deleting_the_config_brings_back_the_default(client: Client, controller: Manager) -> None:
    old = await eventually(lambda: ready(client), "READY")
    await client.delete(API, "KaiwoQueueConfig", "kaiwo")

    async def new_default() -> Obj | None:
        c = await ready(client)
        return c if c and c["metadata"]["uid"] != old["metadata"]["uid"] else None

    # The new config's Kueue objects are created once the old ones have finished terminating, and Kueue's
    # resource-in-use finalizers hold those while workloads of earlier tests are still admitted or being deleted.
    c = await eventually(new_default, "a new default config", timeout=180)
    assert [q["name"] for q in c["spec"]["clusterQueues"]] == ["kaiwo"]


async def test_dynamic_mode_follows_cordon_and_uncordon(client: Client, controller: Manager) -> None:
    await client.apply(
        {
            "apiVersion": "config.kaiwo.silogen.ai/v1alpha1",
            "kind": "KaiwoConfig",
            "metadata": {"name": "kaiwo"},
            "spec": {"dynamicallyUpdateDefaultClusterQueue": True},
        },
        "e2e",
    )

    async def amd_quota(expected: str) -> bool:
        cq = await client.get_or_none(KUEUE, "ClusterQueue", "kaiwo")
        return cq is not None and quotas(cq).get(AMD_FLAVOR, {}).get("amd.com/gpu") == expected

    try:
        await eventually(lambda: amd_quota("32"), "32 AMD GPUs before cordoning")
        await client.patch("v1", "Node", "amd-mi300x-3", {"spec": {"unschedulable": True}})
        await eventually(lambda: amd_quota("24"), "24 AMD GPUs with a node cordoned", timeout=30)
        await client.patch("v1", "Node", "amd-mi300x-3", {"spec": {"unschedulable": None}})
        await eventually(lambda: amd_quota("32"), "32 AMD GPUs after uncordoning", timeout=30)
    finally:
        await client.patch("v1", "Node", "amd-mi300x-3", {"spec": {"unschedulable": None}})
        await client.delete("config.kaiwo.silogen.ai/v1alpha1", "KaiwoConfig", "kaiwo")
