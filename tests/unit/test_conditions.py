"""The one condition helper (kaiwo.runtime.objects): lookup on objects and statuses, and merging with the
Kubernetes transition-time rule."""

from __future__ import annotations

from kaiwo.api.common import WorkloadCondition
from kaiwo.runtime.objects import condition, has_condition, merge_condition, status_condition
from kaiwo.translate.status import condition as build

T0, T1 = "2026-01-01T00:00:00Z", "2026-01-01T00:05:00Z"


def test_lookup_is_null_safe_and_finds_by_type() -> None:
    ready = {"type": "Ready", "status": "True"}
    obj = {"status": {"conditions": [{"type": "Other", "status": "False"}, ready]}}
    assert condition(obj, "Ready") is ready
    assert status_condition(obj["status"], "Ready") is ready
    assert has_condition(obj, "Ready") and has_condition(obj, "Other", "False") and not has_condition(obj, "Other")
    assert condition(None, "Ready") is None
    assert condition({"status": None}, "Ready") is None
    assert status_condition({"conditions": None}, "Ready") is None


def test_built_conditions_hold_plain_strings() -> None:
    c = build(WorkloadCondition.SPEC_APPLIED, True, "Applied", "ok")
    assert c == {"type": "SpecApplied", "status": "True", "reason": "Applied", "message": "ok"}
    assert type(c["type"]) is str  # what is written to the API and dumped to YAML is a str, not the enum


def test_merge_keeps_transition_time_while_status_is_unchanged() -> None:
    old = [{"type": "B", "status": "True", "lastTransitionTime": T0}, {"type": "A", "status": "True", "reason": "x"}]
    same = merge_condition(old, {"type": "B", "status": "True", "reason": "Still"}, T1)
    assert same == [
        {"type": "A", "status": "True", "reason": "x"},
        {"type": "B", "status": "True", "reason": "Still", "lastTransitionTime": T0},
    ]
    flipped = merge_condition(old, {"type": "B", "status": "False"}, T1)
    assert flipped[1] == {"type": "B", "status": "False", "lastTransitionTime": T1}
    added = merge_condition(old, {"type": "C", "status": "True"}, T1)
    assert [c["type"] for c in added] == ["A", "B", "C"] and added[2]["lastTransitionTime"] == T1
    assert old[0] == {"type": "B", "status": "True", "lastTransitionTime": T0}  # the input is not changed
