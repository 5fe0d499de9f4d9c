"""The chart's generated RBAC: current, derived from the controllers' watches, reads and writes never mixed."""

from __future__ import annotations

from pathlib import Path

import pytest

from kaiwo import rbac
from kaiwo.api import crds
from kaiwo.controllers import gpuworkload, metrics, nodetaints, queueconfig, utilisation, workload
from kaiwo.gpumetrics.config import GpuFeatures
from kaiwo.gpumetrics.reader import Source
from kaiwo.runtime.manager import Manager, ManagerOptions
from tests.fakes import Discovery


def test_committed_rbac_template_is_current() -> None:
    assert rbac.write(check=True) == [], "regenerate with `python -m kaiwo.rbac`"


def test_check_mode_reports_a_stale_file(tmp_path: Path) -> None:
    assert rbac.main(["--out", str(tmp_path), "--check"]) == 1
    assert rbac.main(["--out", str(tmp_path)]) == 0
    assert rbac.main(["--out", str(tmp_path), "--check"]) == 0
    (tmp_path / rbac.FILE).write_text("edited by hand\n")
    assert rbac.main(["--out", str(tmp_path), "--check"]) == 1


@pytest.mark.parametrize(
    "kind",
    [
        "Node",
        "Namespace",
        "Pod",
        "Job",
        "Deployment",
        "Service",
        "ConfigMap",
        "PersistentVolumeClaim",
        "RayJob",
        "AppWrapper",
        "Workload",
        "LocalQueue",
        "ClusterQueue",
        "ResourceFlavor",
        "WorkloadPriorityClass",
        "Topology",
        "Event",
        "Lease",
    ],
)
def test_resource_names_of_builtin_and_addon_kinds(kind: str) -> None:
    expected = {"Topology": "topologies", "WorkloadPriorityClass": "workloadpriorityclasses"}
    assert rbac.resource_name(kind) == expected.get(kind, kind.lower() + "s")


def test_resource_names_match_the_crds() -> None:
    for info in crds.ALL:
        assert rbac.resource_name(info.kind) == info.plural


def test_reads_come_from_the_controllers_informers() -> None:
    reads = rbac.informed_kinds()
    assert ("v1", "Pod") in reads and ("kueue.x-k8s.io/v1beta2", "Workload") in reads
    assert {("kaiwo.silogen.ai/v1alpha1", k) for k in ("KaiwoJob", "KaiwoService", "KaiwoQueueConfig")} <= reads
    for kind, child in workload.CHILD_KINDS.items():  # the owned children are watched
        assert (child.api_version, kind) in reads


async def test_the_wiring_declares_every_cache_the_controllers_set_up() -> None:
    mgr = Manager(Discovery(every=True), ManagerOptions(health_address="", metrics_address=""))  # type: ignore[arg-type]
    await queueconfig.setup(mgr)
    for kind in ("KaiwoJob", "KaiwoService"):
        await workload.setup(mgr, kind)
    await metrics.setup(mgr)
    await nodetaints.setup(mgr)
    source = Source(("http://gpu-exporter/metrics",), 30.0)
    await utilisation.setup(mgr, source)
    await gpuworkload.setup(mgr, GpuFeatures(monitoring=source, preemption=source), identity="rbac")
    asked = {(api_version, kind) for api_version, kind, _, _ in mgr.informers}
    declared = {(s.api_versions[0], s.kind) for spec in rbac.WIRING for s in spec.sources}
    assert asked == declared  # nothing read around the specs, nothing declared but unused
    assert asked <= rbac.informed_kinds()


def rules_for(group: str, resource: str) -> list[list[str]]:
    return [r["verbs"] for r in rbac.manager_rules() if group in r["apiGroups"] and resource in r["resources"]]


def test_each_rule_is_either_read_or_write() -> None:
    for rule in rbac.manager_rules():
        assert rule["verbs"] == list(rbac.READ) or not set(rule["verbs"]) & set(rbac.READ), rule


@pytest.mark.parametrize(
    ("group", "resource", "verbs"),
    [
        ("", "pods", [["get", "list", "watch"]]),  # watched, never written
        ("kueue.x-k8s.io", "workloads", [["get", "list", "watch"]]),
        ("", "nodes", [["get", "list", "watch"], ["patch"]]),  # labels only
        ("", "namespaces", [["get", "list", "watch"]]),
        ("batch", "jobs", [["get", "list", "watch"], ["create", "delete", "patch"]]),
        # the spec is the user's; delete only to preempt an idle, opted-in workload (GpuWorkload)
        ("kaiwo.silogen.ai", "kaiwojobs", [["get", "list", "watch"], ["delete"]]),
        ("kaiwo.silogen.ai", "gpuworkloads", [["get", "list", "watch"], ["create", "delete", "patch"]]),
        ("apps", "statefulsets", [["get", "list", "watch"], ["delete"]]),
        ("kaiwo.silogen.ai", "kaiwojobs/status", [["patch"]]),
        ("config.kaiwo.silogen.ai", "kaiwoconfigs", [["get", "list", "watch"], ["create"]]),
        ("", "events", [["create", "patch"]]),  # patch: a repeated event is counted on the existing one
        ("", "secrets", []),
        ("coordination.k8s.io", "leases", []),  # only in the namespaced Role
    ],
)
def test_least_privilege_per_resource(group: str, resource: str, verbs: list[list[str]]) -> None:
    assert rules_for(group, resource) == verbs


def test_leader_election_is_a_namespaced_role() -> None:
    text = rbac.render()[rbac.FILE]
    role = text[text.index("kind: Role\n") :]
    assert "namespace: {{ .Release.Namespace }}" in role and "resources: [leases]" in role
    assert "verbs: [get, watch, create, update]" in role
