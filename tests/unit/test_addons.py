"""The addon wiring: webhook manifests rewritten from Service to URL, selections, source patches, start failures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest

from kaiwo.devcluster import addons, build, topology
from kaiwo.devcluster.components import Layout
from kaiwo.devcluster.controllers import Launch
from kaiwo.devcluster.process import ComponentError
from kaiwo.devcluster.supervisor import Supervisor

MANIFESTS: list[dict[str, Any]] = [
    {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": "mutating-webhook-configuration"},
        "webhooks": [
            {
                "name": "mjob.kb.io",
                "admissionReviewVersions": ["v1"],
                "failurePolicy": "Fail",
                "sideEffects": "None",
                "clientConfig": {
                    "service": {"name": "webhook-service", "namespace": "system", "path": "/mutate-batch-v1-job"}
                },
            },
            {
                "name": "mpod.kb.io",
                "admissionReviewVersions": ["v1"],
                "failurePolicy": "Fail",
                "sideEffects": "None",
                "clientConfig": {
                    "service": {"name": "webhook-service", "namespace": "system", "path": "/mutate--v1-pod"}
                },
            },
        ],
    },
    {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "webhook-service", "namespace": "system"}},
]
SELECTOR = {
    "matchExpressions": [
        {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system", "kueue-system"]}
    ]
}
PATCHES = [
    {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": "mutating-webhook-configuration"},
        "webhooks": [{"name": "mpod.kb.io", "namespaceSelector": SELECTOR}],
    }
]


def test_service_client_config_becomes_a_loopback_url_with_the_ca() -> None:
    cc = addons.url_client_config(
        {"service": {"name": "s", "namespace": "n", "path": "/convert", "port": 443}}, 9555, "Q0E="
    )
    assert cc == {"url": "https://127.0.0.1:9555/convert", "caBundle": "Q0E="}
    assert (
        addons.url_client_config({"service": {"name": "s", "namespace": "n"}}, 1, "x")["url"] == "https://127.0.0.1:1/"
    )
    with pytest.raises(addons.ModuleError):
        addons.url_client_config({"url": "https://elsewhere"}, 1, "x")


def test_local_webhooks_apply_patches_prefix_and_urls() -> None:
    (cfg,) = addons.local_webhooks(MANIFESTS, PATCHES, name_prefix="kueue-", port=9443, ca_bundle="Q0E=")
    assert cfg["kind"] == "MutatingWebhookConfiguration"
    assert cfg["metadata"] == {"name": "kueue-mutating-webhook-configuration"}
    hooks = {h["name"]: h for h in cfg["webhooks"]}
    assert hooks["mjob.kb.io"]["clientConfig"] == {
        "url": "https://127.0.0.1:9443/mutate-batch-v1-job",
        "caBundle": "Q0E=",
    }
    assert hooks["mpod.kb.io"]["clientConfig"]["url"] == "https://127.0.0.1:9443/mutate--v1-pod"
    assert hooks["mpod.kb.io"]["namespaceSelector"] == SELECTOR
    assert "namespaceSelector" not in hooks["mjob.kb.io"]
    assert hooks["mjob.kb.io"]["failurePolicy"] == "Fail"
    # The input is left as it was.
    assert "service" in MANIFESTS[0]["webhooks"][0]["clientConfig"]


def test_a_patch_for_an_unknown_webhook_is_an_error() -> None:
    bad = [{**PATCHES[0], "webhooks": [{"name": "nope.kb.io", "namespaceSelector": SELECTOR}]}]
    with pytest.raises(addons.ModuleError, match=r"nope\.kb\.io"):
        addons.local_webhooks(MANIFESTS, bad, name_prefix="", port=1, ca_bundle="x")


def test_conversion_webhooks_from_crd_patches() -> None:
    patch = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "workloads.kueue.x-k8s.io"},
        "spec": {
            "conversion": {
                "strategy": "Webhook",
                "webhook": {
                    "clientConfig": {"service": {"namespace": "system", "name": "webhook-service", "path": "/convert"}},
                    "conversionReviewVersions": ["v1"],
                },
            }
        },
    }
    conversions = addons.conversion_webhooks([patch, MANIFESTS[1]], port=7000, ca_bundle="Q0E=")
    assert conversions == {
        "workloads.kueue.x-k8s.io": {
            "strategy": "Webhook",
            "webhook": {
                "clientConfig": {"url": "https://127.0.0.1:7000/convert", "caBundle": "Q0E="},
                "conversionReviewVersions": ["v1"],
            },
        }
    }
    crd = {
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "workloads.kueue.x-k8s.io"},
        "spec": {"group": "kueue.x-k8s.io"},
    }
    assert addons.with_conversion(crd, conversions)["spec"] == {
        "group": "kueue.x-k8s.io",
        "conversion": conversions["workloads.kueue.x-k8s.io"],
    }
    other = {"kind": "CustomResourceDefinition", "metadata": {"name": "x.y"}, "spec": {}}
    assert addons.with_conversion(other, conversions) is other


def test_kustomize_patches_reads_inline_and_file_patches(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text("kind: CustomResourceDefinition\nmetadata: {name: a.b}\n")
    (tmp_path / "kustomization.yaml").write_text(
        "patches:\n- path: p.yaml\n#- path: off.yaml\n- patch: |-\n    kind: Service\n    metadata: {name: s}\n"
    )
    docs = addons.kustomize_patches(tmp_path / "kustomization.yaml")
    assert [d["kind"] for d in docs] == ["CustomResourceDefinition", "Service"]


def test_addon_selection() -> None:
    assert addons.parse_selection(None) == ("kueue", "kuberay", "appwrapper")
    assert addons.parse_selection("all") == ("kueue", "kuberay", "appwrapper")
    assert addons.parse_selection("none") == ()
    assert addons.parse_selection("appwrapper, kueue") == ("kueue", "appwrapper")  # start order, not input order
    with pytest.raises(ValueError, match="unknown addon"):
        addons.parse_selection("kueue,volcano")


def test_source_copy_is_writable_and_patched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mod = tmp_path / "mod"
    (mod / "cmd").mkdir(parents=True)
    (mod / "go.mod").write_text("module example.com/x\n")
    (mod / "cmd" / "main.go").write_text('package main\nconst p = "/etc/x"\n')
    for f in (mod / "go.mod", mod / "cmd" / "main.go", mod / "cmd", mod):
        f.chmod(0o555 if f.is_dir() else 0o444)  # as in the module cache
    monkeypatch.setattr(build, "module_dir", lambda module, version: mod)
    patch = build.SourcePatch("cmd/main.go", '"/etc/x"', 'os.Getenv("X")')
    b = build.GoBinary("x", "example.com/x/cmd", "v1.0.0", source="example.com/x", patches=(patch,))
    src = build.copy_source(b, tmp_path / "copy")
    assert (src / "cmd" / "main.go").read_text() == 'package main\nconst p = os.Getenv("X")\n'
    assert (src / "go.mod").read_text() == "module example.com/x\n"
    (src / "cmd" / "new.go").write_text("")  # folders are writable, so the copy can be removed
    stale = build.GoBinary(
        "x",
        "example.com/x/cmd",
        "v1.0.0",
        source="example.com/x",
        patches=(build.SourcePatch("cmd/main.go", "missing", "y"),),
    )
    with pytest.raises(build.BuildError, match="does not apply"):
        build.copy_source(stale, tmp_path / "copy2")
    for f in (mod / "cmd", mod):
        f.chmod(0o755)


def test_patches_change_the_cache_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(build, "_go_version", lambda: "go1.26.8")
    b = build.GoBinary("x", "example.com/x/cmd", "v1.0.0", source="example.com/x")
    patched = build.GoBinary(
        "x",
        "example.com/x/cmd",
        "v1.0.0",
        source="example.com/x",
        patches=(build.SourcePatch("cmd/main.go", "a", "b"),),
    )
    builder = build.Builder(progress=lambda _: None)
    assert builder.key(b) != builder.key(patched)


def test_kueue_patch_applies_to_the_pinned_source() -> None:
    kueue = build.BINARIES["kueue"]
    assert kueue.source
    (patch,) = kueue.patches
    try:
        root = addons.module_dir(kueue.source, kueue.version)
    except (addons.ModuleError, OSError) as e:  # no Go toolchain or module cache here
        pytest.skip(f"kueue module not available: {e}")
    assert (root / patch.file).read_text().count(patch.old) == 1


async def test_a_failing_addon_is_an_error_naming_it_with_its_log_tail(tmp_path: Path) -> None:
    sup = Supervisor(Layout(tmp_path), topology.load(), complete_after_ms=1000, start_timeout=20)
    broken = Launch(
        name="kueue",
        argv=["sh", "-c", "echo 'invalid configuration: webhook.port'; exit 3"],
        health_url="http://127.0.0.1:9/readyz",
    )
    async with aiohttp.ClientSession() as http:
        with pytest.raises(ComponentError) as e:
            await sup._start_addons(http, None, [broken])  # type: ignore[arg-type]  # no objects to apply
    sup._stop_all()
    assert e.value.component == "kueue"
    assert "exited with code 3" in str(e.value)
    assert "invalid configuration: webhook.port" in str(e.value)
    assert (tmp_path / "logs" / "kueue.log").exists()
