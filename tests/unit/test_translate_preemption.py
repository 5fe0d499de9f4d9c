"""Duration preemption decisions on a fake clock: Preemptable, demand of the same queue and vendor only."""

from __future__ import annotations

import pytest

from kaiwo.runtime.objects import Obj
from kaiwo.translate import preemption as pre
from tests.builders import KaiwoJobBuilder

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
THRESHOLD = 300.0


def workload(
    phase: str,
    *,
    gpus: int = 8,
    vendor: str | None = None,
    queue: str | None = None,
    admitted_false_at: str | None = "2026-01-01T00:00:00Z",
    duration: str | None = None,
) -> Obj:
    cr = KaiwoJobBuilder("w", "ns").created("2025-12-31T23:00:00Z").gpus(gpus, vendor)
    cr.phase(phase).status_field("conditions", [])
    if queue:
        cr.cluster_queue(queue)
    if duration:
        cr.duration(duration)
    if admitted_false_at:
        cr.condition("Admitted", False, lastTransitionTime=admitted_false_at)
    return cr.obj()


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("0", 0.0), ("90s", 90.0), ("5m", 300.0), ("1h30m", 5400.0), ("1.5h", 5400.0), ("250ms", 0.25)],
)
def test_go_durations(text: str, seconds: float) -> None:
    assert pre.go_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "5", "m", "5x", "1h 30m", "-5s"])
def test_malformed_go_durations_are_rejected(text: str) -> None:
    with pytest.raises(ValueError, match="Go duration"):
        pre.go_duration(text)


def test_preemptable_flips_at_the_deadline() -> None:
    before = pre.preemptability(T0, "10m", T0 + 599)
    assert not before.expired and before.seconds_left == pytest.approx(1)
    assert (before.condition["status"], before.condition["reason"]) == ("False", "DurationNotExceeded")
    after = pre.preemptability(T0, "10m", T0 + 600)
    assert after.expired and after.seconds_left == 0
    assert (after.condition["status"], after.condition["reason"]) == ("True", "DurationExceeded")


def test_demand_needs_the_same_queue_and_vendor_and_a_long_enough_wait() -> None:
    victim = pre.Claim("kaiwo", "amd")
    young = workload("PENDING", admitted_false_at="2026-01-01T00:04:00Z")  # pending since T0+240
    old = workload("PENDING")  # pending since T0
    assert pre.demand(victim, [old], "kaiwo", THRESHOLD, T0 + 299) == pre.Demand(False, 1.0)
    assert pre.demand(victim, [old], "kaiwo", THRESHOLD, T0 + 300).now
    assert pre.demand(victim, [young], "kaiwo", THRESHOLD, T0 + 300) == pre.Demand(False, 240.0)
    others = [
        workload("PENDING", vendor="nvidia"),
        workload("PENDING", queue="other"),
        workload("PENDING", gpus=0),
        workload("RUNNING"),
        workload("ERROR"),
    ]
    assert pre.demand(victim, others, "kaiwo", THRESHOLD, T0 + 10_000) == pre.Demand(False, None)
    # The default queue and vendor are filled in on both sides.
    assert pre.demand(pre.Claim("q", "amd"), [old], "q", THRESHOLD, T0 + 300).now
    assert pre.demand(
        pre.Claim("kaiwo", "nvidia"), [workload("PENDING", vendor="nvidia")], "kaiwo", THRESHOLD, T0 + 300
    ).now


def test_pending_since_falls_back_to_creation_and_counts_split_gpus() -> None:
    no_condition = workload("PENDING", admitted_false_at=None)
    assert pre.pending_since(no_condition) == T0 - 3600
    split = {**workload("PENDING", gpus=0), "spec": {"replicas": 2, "gpusPerReplica": 4}}
    assert pre.requested_gpus(split) == 8 and pre.pending_since(split) == T0


def test_which_changes_wake_which_victims() -> None:
    victim = workload("RUNNING", duration="1m")
    assert pre.is_demand_for(workload("PENDING"), victim, "kaiwo")
    assert not pre.is_demand_for(workload("PENDING", vendor="nvidia"), victim, "kaiwo")
    assert not pre.is_demand_for(workload("PENDING", gpus=0), victim, "kaiwo")
    assert not pre.is_demand_for(workload("PENDING"), workload("RUNNING"), "kaiwo")  # no duration
    assert not pre.is_demand_for(workload("PENDING"), workload("PENDING", duration="1m"), "kaiwo")
