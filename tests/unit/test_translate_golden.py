"""Golden-file tests of kaiwo.translate.workload: every tests/unit/golden/<case>/input.yaml (a Kaiwo object under
``cr`` and the facts under ``facts``) is translated and compared with <case>/expected.yaml (``children`` in apply
order, with ``storage``/``workload`` split and ``warnings``, or ``error``).

To rewrite the expected files after an intended change, run
``KAIWO_UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/test_translate_golden.py`` and review the diff.

``facts`` keys: see tests/golden.py ``facts_from``. YAML anchors would show shared sub-objects; the builders must
not share them (a later mutation of one child would change another): test_children_share_no_objects.
"""

from __future__ import annotations

from typing import Any

import pytest

from kaiwo.translate.meta import TranslateError
from kaiwo.translate.workload import desired_children
from tests import golden

GOLDEN = golden.TRANSLATE_GOLDEN
CASES = golden.TRANSLATE_CASES


def render(case: str) -> dict[str, Any]:
    out = desired_children(*golden.translate_input(case))
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
    golden.check(GOLDEN / case / "expected.yaml", render(case))


def test_children_share_no_objects() -> None:
    for case in CASES:
        out = desired_children(*golden.translate_input(case))
        if not isinstance(out, TranslateError):
            assert not _shares_objects(list(out.objects), set()), case


def test_input_is_not_modified() -> None:
    for case in CASES:
        cr, facts = golden.translate_input(case)
        before = golden.dump(cr)
        desired_children(cr, facts)
        assert golden.dump(cr) == before, case


def test_there_are_cases() -> None:
    assert len(CASES) >= 14
