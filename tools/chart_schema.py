"""Generate charts/kaiwo/values.schema.json from charts/kaiwo/values.yaml: ``python tools/chart_schema.py``.

Helm validates the values against this schema on install, upgrade, template and lint, so a misspelt key or a
value of the wrong type fails before anything reaches the cluster. The schema is derived, not hand-written,
so that a value added to values.yaml is covered by regenerating (``--check``, run by a unit test, fails when
the committed file is stale):
- every key of values.yaml is declared, and no other key is allowed in a section with fixed keys;
- a key's type is its default's (string, integer, boolean, list); ``{}`` defaults and ``FREE`` sections are
  free-form maps, of strings where ``STRING_MAPS`` says so (labels, annotations, node selectors);
- ``RULES`` add what a default cannot show: enums, minimums, patterns.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "charts" / "kaiwo"
OUT = CHART / "values.schema.json"
PULL_POLICY = {"enum": ["Always", "IfNotPresent", "Never"]}
PORT = {"minimum": 1, "maximum": 65535}
# Sections whose keys are the user's (maps of anything): never closed.
FREE = {
    "resources",
    "affinity",
    "podSecurityContext",
    "kaiwoConfig.spec",
    "kaiwoQueueConfig.spec",
    "scheduler.resources",
    "scheduler.affinity",
    "scheduler.scoringStrategy",
}
STRING_MAPS = {
    "commonLabels",
    "podAnnotations",
    "podLabels",
    "nodeSelector",
    "serviceAccount.annotations",
    "metrics.serviceMonitor.labels",
    "scheduler.nodeSelector",
    "namespace.labels",
}
RULES: dict[str, dict[str, Any]] = {
    "image.pullPolicy": PULL_POLICY,
    "scheduler.image.pullPolicy": PULL_POLICY,
    "image.digest": {"pattern": "^(sha256:[a-f0-9]{64})?$"},
    "replicas": {"minimum": 0},
    "scheduler.replicas": {"minimum": 0},
    "manager.workers": {"minimum": 1},
    "manager.logLevel": {"enum": ["debug", "info", "warning", "error"]},
    "manager.logFormat": {"enum": ["json", "text"]},
    "manager.healthPort": PORT,
    "manager.metricsPort": PORT,
    "metrics.service.port": PORT,
    "metrics.serviceMonitor.interval": {"pattern": "^([0-9]+(ms|s|m|h))+$"},
    "namespace.podSecurity": {"enum": ["", "privileged", "baseline", "restricted"]},
    "scheduler.name": {"pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "minLength": 1},
}


def schema_of(value: Any, path: str) -> dict[str, Any]:
    out: dict[str, Any]
    if path in FREE:
        out = {"type": "object"}
    elif path in STRING_MAPS:
        out = {"type": "object", "additionalProperties": {"type": "string"}}
    elif isinstance(value, dict) and not value:  # an empty map by default: the user's keys
        out = {"type": "object"}
    elif isinstance(value, dict):
        out = {
            "type": "object",
            "additionalProperties": False,
            "properties": {k: schema_of(v, f"{path}.{k}" if path else k) for k, v in value.items()},
        }
    elif isinstance(value, bool):
        out = {"type": "boolean"}
    elif isinstance(value, int):
        out = {"type": "integer"}
    elif isinstance(value, list):
        out = {"type": "array"}
        if value and all(isinstance(v, dict) for v in value):
            out["items"] = {"type": "object"}
    elif isinstance(value, str):
        out = {"type": "string"}
    else:
        raise SystemExit(f"{path}: no schema for {type(value).__name__} defaults; add it to tools/chart_schema.py")
    return {**out, **RULES.get(path, {})}


def render() -> str:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    # no "$schema" URL: Helm would have to resolve it, and an air-gapped install must validate too
    schema = {"title": "Kaiwo chart values", **schema_of(values, "")}
    return json.dumps(schema, indent=2) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if not OUT.exists() or OUT.read_text() != text:
            print(f"{OUT} is stale: run python tools/chart_schema.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
