"""The chart's install options on the local cluster: the values schema rejects bad values at helm time, the
optional namespace carries the Pod Security and Kueue labels, the aggregated ClusterRoles reach Kubernetes'
admin/edit/view roles, and the admin guide's Kueue install renders to what ``kaiwo-dev`` runs."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from kaiwo.devcluster import addons
from kaiwo.devcluster.build import ensure_binaries
from kaiwo.runtime.client import Client
from tests.e2e.conftest import CHART, helm, render_chart
from tests.e2e.helpers import eventually
from tests.kueue_config import KAIWO_RELEVANT, dev_kueue_config, guide_kueue_values


def helm_fails(*args: str) -> str:
    binary = ensure_binaries(["helm"])["helm"]
    out = subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=120)
    assert out.returncode != 0, f"helm {' '.join(args)} accepted a bad value"
    return out.stdout + out.stderr  # lint reports on stdout, template on stderr


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ("manager.logLevel=verbose", "logLevel"),
        ("replicas=two", "replicas"),
        ("managr.workers=3", "managr"),  # a misspelt section
        ("manager.wokers=3", "wokers"),  # a misspelt key of a fixed section
        ("namespace.podSecurity=strict", "podSecurity"),
        ("image.pullPolicy=Sometimes", "pullPolicy"),
        ("metrics.service.port=70000", "port"),
    ],
)
def test_bad_values_fail_at_helm_time(value: str, field: str) -> None:
    for command in (("template", "kaiwo", str(CHART)), ("lint", "--strict", str(CHART))):
        said = helm_fails(*command, "--set", value)
        assert "schema" in said and field in said, said


def test_optional_namespace_with_pod_security_and_kueue_labels() -> None:
    assert not [o for o in render_chart() if o["kind"] == "Namespace"]  # off by default
    objs = render_chart("--set", "namespace.create=true", "--set", "namespace.kueueManaged=true")
    ns = next(o for o in objs if o["kind"] == "Namespace")
    assert ns["metadata"]["name"] == "kaiwo-system"
    labels = ns["metadata"]["labels"]
    for mode in ("enforce", "audit", "warn"):
        assert labels[f"pod-security.kubernetes.io/{mode}"] == "restricted"
    assert labels["kueue-managed"] == "true"
    plain = render_chart("--set", "namespace.create=true", "--set", "namespace.podSecurity=")
    labels = next(o for o in plain if o["kind"] == "Namespace")["metadata"]["labels"]
    assert "kueue-managed" not in labels and not any(k.startswith("pod-security") for k in labels)


async def test_aggregated_roles_reach_admin_edit_view(
    client: Client,
    kubeconfig: str,
    namespace: str,
    kaiwo_crds: None,  # `kubectl auth can-i` answers "no" for a resource the apiserver does not serve
) -> None:
    roles = [o for o in render_chart() if o["kind"] == "ClusterRole" and o["metadata"]["name"] != "kaiwo-manager"]
    for role in roles:
        await client.apply(role, "kaiwo-e2e")

    async def aggregated(builtin: str) -> set[str] | None:
        role = await client.get("rbac.authorization.k8s.io/v1", "ClusterRole", builtin)
        resources = {r for rule in role.get("rules") or [] for r in rule.get("resources") or []}
        return resources if {"kaiwojobs", "kaiwoservices"} <= resources else None

    for builtin in ("admin", "edit", "view"):

        async def probe(b: str = builtin) -> set[str] | None:
            return await aggregated(b)

        await eventually(probe, f"Kaiwo kinds aggregated into {builtin}", timeout=30)

    kubectl = ensure_binaries(["kubectl"])["kubectl"]
    for user, builtin in (("ed", "edit"), ("vi", "view")):
        await client.apply(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": f"{user}-{builtin}", "namespace": namespace},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": builtin},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
            },
            "kaiwo-e2e",
        )

    def can(user: str, verb: str, resource: str, *extra: str) -> bool:
        out = subprocess.run(
            [
                str(kubectl),
                f"--kubeconfig={kubeconfig}",
                "auth",
                "can-i",
                f"--as={user}",
                "-n",
                namespace,
                verb,
                resource,
                *extra,
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        return out.stdout.strip() == "yes"

    assert can("ed", "create", "kaiwojobs.kaiwo.silogen.ai") and can("ed", "delete", "kaiwoservices.kaiwo.silogen.ai")
    assert not can("ed", "patch", "kaiwojobs.kaiwo.silogen.ai", "--subresource=status")  # status is the operator's
    assert can("ed", "get", "kaiwojobs.kaiwo.silogen.ai", "--subresource=status")
    assert can("vi", "list", "kaiwojobs.kaiwo.silogen.ai") and not can("vi", "create", "kaiwojobs.kaiwo.silogen.ai")
    assert not can("ed", "get", "kaiwoqueueconfigs.kaiwo.silogen.ai")  # cluster config is not aggregated


def test_admin_guide_kueue_install_renders_to_kaiwo_dev_configuration(tmp_path: Path) -> None:
    """Kueue's own chart (from the pinned Go module's source) rendered with the guide's values file."""
    values_file = tmp_path / "kueue-values.yaml"
    values_file.write_text(yaml.safe_dump(guide_kueue_values()))
    chart = addons.source(addons.ADDONS["kueue"]) / "charts" / "kueue"
    objs = [
        d
        for d in yaml.safe_load_all(helm("template", "kueue", str(chart), "-n", "kueue-system", "-f", str(values_file)))
        if d
    ]
    config_map = next(o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("manager-config"))
    rendered = yaml.safe_load(config_map["data"]["controller_manager_config.yaml"])
    dev = dev_kueue_config()
    assert {k: rendered.get(k) for k in KAIWO_RELEVANT} == {k: dev.get(k) for k in KAIWO_RELEVANT}
    manager = next(o for o in objs if o["kind"] == "Deployment")
    args = manager["spec"]["template"]["spec"]["containers"][0].get("args") or []
    assert any("TopologyAwareScheduling=true" in a for a in args), args
