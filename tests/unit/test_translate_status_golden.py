"""Golden status cases of the Ray children (kaiwo.translate.status): every tests/unit/golden_status/<case>.yaml
holds what KubeRay / the AppWrapper controller report (``rayJob`` with ``admitted``, or ``appWrapper`` with
``rayService``), the expected phase and the condition the Kaiwo object then carries (``null``: none).

The status shapes follow KubeRay v1.5's ``RayJobStatus`` / ``RayServiceStatuses`` and Ray Serve's application
and deployment states; the local cluster cannot produce most of them (kwok runs no Ray), so they are pinned here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from kaiwo.translate import status as st

CASES_DIR = Path(__file__).parent / "golden_status"
CASES = sorted(p.stem for p in CASES_DIR.glob("*.yaml"))


def observe(case: dict[str, Any]) -> tuple[st.Phase, dict[str, Any] | None]:
    if "rayJob" in case:
        phase = st.rayjob_phase(case["rayJob"], case["admitted"])
        return phase, st.rayjob_condition(phase)
    phase = st.rayservice_phase(case["appWrapper"], case["rayService"])
    return phase, st.serve_condition(phase)


@pytest.mark.parametrize("case", CASES)
def test_status_golden(case: str) -> None:
    data = yaml.safe_load((CASES_DIR / f"{case}.yaml").read_text())
    phase, cond = observe(data)
    assert {"status": phase.status, "reason": phase.reason, "message": phase.message} == data["expected"]
    assert cond == data["condition"]


def test_every_rayjob_terminal_state_is_covered() -> None:
    states = set()
    for case in CASES:
        data = yaml.safe_load((CASES_DIR / f"{case}.yaml").read_text())
        if "rayJob" in data:
            s = data["rayJob"].get("status") or {}
            states.add((s.get("jobDeploymentStatus"), s.get("jobStatus")))
    for want in [
        ("Complete", "SUCCEEDED"),
        ("Complete", "STOPPED"),
        ("Failed", "FAILED"),
        ("ValidationFailed", None),
    ]:
        assert want in states, want


def test_rayservice_phases_recover_from_unhealthy() -> None:
    aw = {"status": {"phase": "Running"}}

    def rs(app: str, ready: str) -> dict[str, Any]:
        return {
            "status": {
                "conditions": [{"type": "Ready", "status": ready}],
                "activeServiceStatus": {"rayClusterName": "c", "applicationStatuses": {"a": {"status": app}}},
            }
        }

    assert st.rayservice_phase(aw, rs("UNHEALTHY", "False")).status == "ERROR"
    assert st.rayservice_phase(aw, rs("RUNNING", "True")).status == "RUNNING"
