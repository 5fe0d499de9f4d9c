"""Golden-file tests of kaiwo.translate.workload: every tests/unit/golden/<case>/input.yaml (a Kaiwo object under
``cr`` and the facts under ``facts``) is translated and compared with <case>/expected.yaml (``children`` in apply
order, with ``storage``/``workload`` split and ``warnings``, or ``error``).

To rewrite the expected files after an intended change, run
``KAIWO_UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/test_translate_golden.py`` and review the diff.

``facts`` keys: ``config`` (a KaiwoConfig spec, defaults filled), ``gpuPools`` (``[{vendor, gpusPerNode, nodes}]``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from kaiwo.api.config import KaiwoConfigSpec
from kaiwo.translate.gpus import GpuPool
from kaiwo.translate.meta import TranslateError
from kaiwo.translate.workload import Facts, desired_children

GOLDEN = Path(__file__).parent / "golden"
CASES = sorted(p.name for p in GOLDEN.iterdir() if (p / "input.yaml").exists())


def facts_from(data: dict[str, Any]) -> Facts:
    pools = tuple(GpuPool(p["vendor"], p["gpusPerNode"], p["nodes"]) for p in data.get("gpuPools") or [])
    return Facts(config=KaiwoConfigSpec.model_validate(data.get("config") or {}), gpu_pools=pools)


def render(case: str) -> dict[str, Any]:
    data = yaml.safe_load((GOLDEN / case / "input.yaml").read_text())
    out = desired_children(data["cr"], facts_from(data.get("facts") or {}))
    if isinstance(out, TranslateError):
        return {"error": {"reason": out.reason, "message": out.message}}
    return {
        "plan": {
            "gpus": out.plan.gpus,
            "replicas": out.plan.replicas,
            "gpusPerReplica": out.plan.gpus_per_replica,
            "resourceKey": out.plan.resource_key,
        },
        "storage": list(out.storage),
        "workload": list(out.workload),
        "warnings": list(out.warnings),
    }


class _NoAliases(yaml.SafeDumper):
    """Shared sub-objects would show as YAML anchors; the builders must not share them (a later mutation of one
    child would change another), and the golden files should show each value in full."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def dump(value: Any) -> str:
    return yaml.dump(value, Dumper=_NoAliases, sort_keys=True, default_flow_style=False, width=120)


def _shares_objects(value: Any, seen: set[int]) -> bool:
    if isinstance(value, dict | list):
        if id(value) in seen:
            return True
        seen.add(id(value))
        items = value.values() if isinstance(value, dict) else value
        return any(_shares_objects(v, seen) for v in items)
    return False


@pytest.mark.parametrize("case", CASES)
def test_golden(case: str) -> None:
    actual = dump(render(case))
    expected_path = GOLDEN / case / "expected.yaml"
    if os.environ.get("KAIWO_UPDATE_GOLDEN") == "1":
        expected_path.write_text(actual)
    assert expected_path.exists(), f"{expected_path} missing: run with KAIWO_UPDATE_GOLDEN=1 and review it"
    assert actual == expected_path.read_text()


def test_children_share_no_objects() -> None:
    for case in CASES:
        data = yaml.safe_load((GOLDEN / case / "input.yaml").read_text())
        out = desired_children(data["cr"], facts_from(data.get("facts") or {}))
        if not isinstance(out, TranslateError):
            assert not _shares_objects(list(out.objects), set()), case


def test_input_is_not_modified() -> None:
    for case in CASES:
        data = yaml.safe_load((GOLDEN / case / "input.yaml").read_text())
        before = dump(data)
        desired_children(data["cr"], facts_from(data.get("facts") or {}))
        assert dump(data) == before, case


def test_there_are_cases() -> None:
    assert len(CASES) >= 14
