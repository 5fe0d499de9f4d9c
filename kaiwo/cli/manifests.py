"""Reading manifests and filling in what ``kaiwo submit`` adds. Pure: no I/O but the caller's text.

A file (or stdin) holds one or more YAML or JSON documents; a ``kind: List`` is expanded. Any kind may be
submitted (a ConfigMap next to a job is fine); only KaiwoJob and KaiwoService get ``spec.user`` and
``spec.clusterQueue`` filled, and only where the manifest leaves them out (docs/design/upstream.md#cli).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import yaml

from kaiwo.api import labels as L
from kaiwo.api.groups import KAIWO_API
from kaiwo.cli.errors import CliError
from kaiwo.runtime.objects import Obj
from kaiwo.translate.meta import sanitize_user

WORKLOAD_KINDS = ("KaiwoJob", "KaiwoService")


def load_documents(text: str, source: str) -> list[Obj]:
    """The objects in ``text``; errors name the source and the document number."""
    try:
        raw = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e)
        raise CliError(
            f"{source}: not valid YAML or JSON{where}: {problem}", "check the indentation and quoting around that line"
        ) from None
    docs: list[Obj] = []
    for doc in raw:
        if isinstance(doc, dict) and doc.get("kind") == "List" and isinstance(doc.get("items"), list):
            docs.extend(doc["items"])
        else:
            docs.append(doc)
    if not docs:
        raise CliError(f"{source}: no objects found", "the file is empty; give a KaiwoJob or KaiwoService manifest")
    for i, doc in enumerate(docs, 1):
        _check(doc, f"{source}: document {i}" if len(docs) > 1 else source)
    return docs


def _check(doc: Any, where: str) -> None:
    if not isinstance(doc, dict):
        raise CliError(
            f"{where}: expected a Kubernetes object (a mapping), got {type(doc).__name__}",
            "a manifest starts with apiVersion:, kind: and metadata:",
        )
    for key in ("apiVersion", "kind"):
        if not isinstance(doc.get(key), str) or not doc[key]:
            raise CliError(f"{where}: missing {key}", f"add e.g. 'apiVersion: {KAIWO_API}' and 'kind: KaiwoJob'")
    meta = doc.get("metadata")
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str) or not meta["name"]:
        raise CliError(f"{where}: {doc['kind']} has no metadata.name", "give every object a name")
    if doc["kind"] in WORKLOAD_KINDS and doc.get("spec") is not None and not isinstance(doc["spec"], dict):
        raise CliError(f"{where}: {doc['kind']} {meta['name']}: spec must be a mapping", "fix the spec")


def is_workload(doc: Obj) -> bool:
    return str(doc.get("apiVersion", "")).startswith("kaiwo.silogen.ai/") and doc.get("kind") in WORKLOAD_KINDS


@dataclass(frozen=True)
class Defaults:
    """What submit fills into Kaiwo workloads that leave it out ("" = nothing to fill)."""

    user: str = ""
    cluster_queue: str = ""


def choose_defaults(flag_user: str | None, flag_queue: str | None, config_user: str, config_queue: str) -> Defaults:
    """Flags first, then the config file."""
    return Defaults(user=flag_user or config_user, cluster_queue=flag_queue or config_queue)


def fill(doc: Obj, defaults: Defaults) -> Obj:
    """A copy of ``doc`` with spec.user / spec.clusterQueue filled where absent, and the user label (the value
    the operator puts on the children) on the Kaiwo object itself so ``kaiwo list`` and kubectl can select it."""
    out = copy.deepcopy(doc)
    if not is_workload(out):
        return out
    spec = out.setdefault("spec", {})
    if not spec.get("user") and defaults.user:
        spec["user"] = defaults.user
    if not spec.get("clusterQueue") and defaults.cluster_queue:
        spec["clusterQueue"] = defaults.cluster_queue
    label = sanitize_user(spec.get("user") or "")
    if label:
        out["metadata"].setdefault("labels", {}).setdefault(L.USER, label)
    return out


def place(doc: Obj, flag_namespace: str | None, fallback_namespace: str, namespaced: bool) -> Obj:
    """A copy of ``doc`` in its namespace: ``-n``, else the manifest's, else ``fallback_namespace`` (the
    context's or ``default``). A manifest namespace that differs from ``-n`` is an error, as in kubectl."""
    out = copy.deepcopy(doc)
    meta = out["metadata"]
    if not namespaced:
        meta.pop("namespace", None)
        return out
    own = meta.get("namespace")
    if flag_namespace and own and own != flag_namespace:
        raise CliError(
            f"{doc['kind']} {meta['name']} is in namespace {own!r} but -n says {flag_namespace!r}",
            f"drop -n, or pass -n {own}, or change metadata.namespace",
            code=2,
        )
    meta["namespace"] = flag_namespace or own or fallback_namespace
    return out
