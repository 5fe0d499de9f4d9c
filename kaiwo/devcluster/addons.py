"""Third-party controllers of the local cluster, their CRDs and webhooks, taken from the pinned Go modules.

The CRD YAML is read from the module cache (``go mod download -json`` gives the folder), exactly as the
projects' own test setups do, so the CRDs always match the controller versions we run. The webhook
configurations come from the same modules' kustomize manifests; ``local_webhooks`` and
``conversion_webhooks`` rewrite their ``service:`` references into ``url: https://127.0.0.1:<port><path>``
because the controllers run as local processes, not behind a Service.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import yaml

from kaiwo.devcluster import versions
from kaiwo.runtime.objects import Obj

WEBHOOK_KINDS = ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")


@dataclass(frozen=True)
class Addon:
    name: str  # what `kaiwo-dev up --addons` takes; also the process and log name
    module: str
    version: str
    crd_globs: tuple[str, ...]
    binary: str  # name in build.BINARIES


ADDONS: dict[str, Addon] = {
    a.name: a
    for a in [
        Addon("kueue", "sigs.k8s.io/kueue", versions.KUEUE, ("config/components/crd/bases/*.yaml",), "kueue"),
        Addon(
            "kuberay",
            "github.com/ray-project/kuberay/ray-operator",
            versions.KUBERAY,
            ("config/crd/bases/ray.io_*.yaml",),
            "kuberay-operator",
        ),
        Addon(
            "appwrapper",
            "github.com/project-codeflare/appwrapper",
            versions.APPWRAPPER,
            ("config/crd/bases/*.yaml",),
            "appwrapper",
        ),
        # Traces (OTLP gRPC and HTTP in, query API and UI out), for the operator and the apiserver. Not among
        # the defaults: only `--addons ...,jaeger` starts it (and builds it, a few minutes the first time).
        Addon("jaeger", "github.com/jaegertracing/jaeger", versions.JAEGER, (), "jaeger"),
    ]
}
DEFAULT_ADDONS = ("kueue", "kuberay", "appwrapper")  # what `all` (and no --addons) means


class ModuleError(RuntimeError):
    pass


def parse_selection(text: str | None) -> tuple[str, ...]:
    """``"all"``/None (the default controllers), ``"none"`` or a comma list of addon names, which may include
    ``all`` (e.g. ``all,jaeger``) -> names in start order."""
    if text is None or text.strip() == "all":
        return DEFAULT_ADDONS
    names = {n.strip() for n in text.split(",") if n.strip()}
    if names == {"none"}:
        return ()
    if "all" in names:
        names = (names - {"all"}) | set(DEFAULT_ADDONS)
    unknown = names - set(ADDONS)
    if unknown:
        raise ValueError(
            f"unknown addon(s) {', '.join(sorted(unknown))}; choose from {', '.join(ADDONS)}, or all, or none"
        )
    return tuple(n for n in ADDONS if n in names)


@functools.cache
def module_dir(module: str, version: str) -> Path:
    """The module's source folder in the Go module cache, downloading it if needed."""
    proc = subprocess.run(["go", "mod", "download", "-json", f"{module}@{version}"], capture_output=True, text=True)
    try:
        info = json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise ModuleError(f"go mod download {module}@{version} failed: {proc.stderr.strip()}") from None
    if "Error" in info or proc.returncode != 0:
        raise ModuleError(f"go mod download {module}@{version}: {info.get('Error', proc.stderr.strip())}")
    return Path(info["Dir"])


def source(addon: Addon) -> Path:
    return module_dir(addon.module, addon.version)


def crds(addon: Addon) -> list[Obj]:
    """The addon's CRDs. Parsing the YAML takes seconds (KubeRay's CRDs are 1-1.5 MB each), so the result is
    cached as JSON per module version next to the binaries."""
    from kaiwo.devcluster.build import cache_root  # build.py imports this module

    if not addon.crd_globs:
        return []
    cached = cache_root() / "crds" / f"{addon.name}-{addon.version}.json"
    if cached.exists():
        docs: list[Obj] = orjson.loads(cached.read_bytes())
        return docs
    root = source(addon)
    docs = []
    for pattern in addon.crd_globs:
        files = sorted(root.glob(pattern))
        if not files:
            raise ModuleError(f"{addon.name}: no CRD files match {pattern} in {root}")
        for f in files:
            docs += [d for d in load_yaml(f) if d.get("kind") == "CustomResourceDefinition"]
    cached.parent.mkdir(parents=True, exist_ok=True)
    staged = cached.with_suffix(f".{os.getpid()}.tmp")
    staged.write_bytes(orjson.dumps(docs))
    os.replace(staged, cached)
    return docs


_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: several times faster


def load_yaml(path: Path) -> list[Obj]:
    return [d for d in yaml.load_all(path.read_text(), Loader=_Loader) if d]


def kustomize_patches(kustomization: Path) -> list[Obj]:
    """The patch documents a kustomization.yaml lists (inline ``patch:`` or ``path:``; commented ones are off)."""
    spec = yaml.safe_load(kustomization.read_text()) or {}
    docs: list[Obj] = []
    for entry in spec.get("patches", []):
        if "patch" in entry:
            docs += [d for d in yaml.safe_load_all(entry["patch"]) if d]
        elif "path" in entry:
            docs += load_yaml(kustomization.parent / entry["path"])
    return docs


def url_client_config(client_config: Mapping[str, Any], port: int, ca_bundle: str) -> Obj:
    """A webhook ``clientConfig`` that names a Service, rewritten to call ``https://127.0.0.1:<port><path>``."""
    service = client_config.get("service")
    if not service:
        raise ModuleError(f"expected a service clientConfig, got {dict(client_config)}")
    return {"url": f"https://127.0.0.1:{port}{service.get('path', '/')}", "caBundle": ca_bundle}


def _merge_webhook_patches(docs: Iterable[Obj], patches: Iterable[Obj]) -> list[Obj]:
    """Apply kustomize patches that set fields of webhooks by name (a strategic merge on the ``webhooks`` list,
    whose merge key is ``name``; the fields they set, such as ``namespaceSelector``, are replaced whole)."""
    out = [copy.deepcopy(d) for d in docs]
    for patch in patches:
        for doc in out:
            if doc.get("kind") != patch.get("kind") or doc["metadata"]["name"] != patch["metadata"]["name"]:
                continue
            hooks = {h["name"]: h for h in doc.get("webhooks", [])}
            for change in patch.get("webhooks", []):
                if change["name"] not in hooks:
                    raise ModuleError(f"patch for unknown webhook {change['name']} in {doc['metadata']['name']}")
                hooks[change["name"]].update({k: copy.deepcopy(v) for k, v in change.items() if k != "name"})
    return out


def local_webhooks(
    manifests: Iterable[Obj], patches: Iterable[Obj], *, name_prefix: str, port: int, ca_bundle: str
) -> list[Obj]:
    """Mutating/ValidatingWebhookConfigurations of a module's manifests (with its kustomize patches and name
    prefix applied), calling the controller's webhook server on 127.0.0.1."""
    hooks = [d for d in manifests if d.get("kind") in WEBHOOK_KINDS]
    out = []
    for doc in _merge_webhook_patches(hooks, patches):
        doc["metadata"] = {"name": name_prefix + doc["metadata"]["name"]}
        for hook in doc.get("webhooks", []):
            hook["clientConfig"] = url_client_config(hook["clientConfig"], port, ca_bundle)
        out.append(doc)
    return out


def conversion_webhooks(patches: Iterable[Obj], *, port: int, ca_bundle: str) -> dict[str, Obj]:
    """CRD name -> ``spec.conversion`` calling the controller on 127.0.0.1, from the module's CRD patches."""
    out: dict[str, Obj] = {}
    for patch in patches:
        conversion = patch.get("spec", {}).get("conversion")
        if patch.get("kind") != "CustomResourceDefinition" or not conversion:
            continue
        conversion = copy.deepcopy(conversion)
        webhook = conversion["webhook"]
        webhook["clientConfig"] = url_client_config(webhook["clientConfig"], port, ca_bundle)
        out[patch["metadata"]["name"]] = conversion
    return out


def with_conversion(crd: Obj, conversions: Mapping[str, Obj]) -> Obj:
    conversion = conversions.get(crd["metadata"]["name"])
    if conversion is None:
        return crd
    return {**crd, "spec": {**crd["spec"], "conversion": conversion}}
