"""Kueue's Configuration two ways: as the admin guide tells admins to install it (docs/admin-guide.md section 8)
and as ``kaiwo-dev`` runs it; the unit test compares the parts Kaiwo relies on, the e2e test renders them with helm."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, cast

import yaml

from kaiwo.devcluster import controllers
from kaiwo.devcluster.components import Layout, Ports

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "admin-guide.md"
# What Kaiwo relies on in Kueue's Configuration; the rest (ports, leader election, certificates) differs
# between a real cluster and local processes by design.
KAIWO_RELEVANT = (
    "apiVersion",
    "kind",
    "managedJobsNamespaceSelector",
    "integrations",
    "controller",
    "clientConnection",
)


def guide_kueue_values() -> dict[str, Any]:
    block = re.search(r"```yaml\n(# kueue-values\.yaml\n.*?)```", GUIDE.read_text(), re.S)
    assert block, "docs/admin-guide.md lost its kueue-values.yaml block"
    values: dict[str, Any] = yaml.safe_load(block.group(1))
    return values


def dev_kueue_config() -> dict[str, Any]:
    ports = Ports(*range(20000, 20000 + len(Ports.__dataclass_fields__)))
    ctx = controllers.Context(layout=Layout(Path("/state")), ports=ports, binaries={}, pki=cast(Any, None))
    return controllers.kueue_config(ctx, Path("/certs"))
