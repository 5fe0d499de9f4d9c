"""Duration-based preemption (docs/design/upstream.md#duration-preemption, docs/design/decisions.md D12): when a running
workload may be stopped.

A RUNNING workload with ``spec.duration`` is ``Preemptable=False`` (DurationNotExceeded) until
``startTime + duration`` and ``Preemptable=True`` (DurationExceeded) after. An expired workload is stopped only
when there is *demand*: another KaiwoJob/KaiwoService that is PENDING, asks for GPUs, uses the same
ClusterQueue and the same GPU vendor (never cluster-wide, unlike upstream), and has been pending for longer
than KaiwoConfig's ``scheduling.pendingThresholdForPreemption``.

Pure: callers pass the objects they read and ``now`` (epoch seconds); nothing here reads a clock.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from kaiwo.api.common import WorkloadCondition, WorkloadStatus
from kaiwo.runtime.objects import Obj, condition
from kaiwo.runtime.timestamps import epoch as epoch  # re-exported: tests read Kaiwo timestamps through it
from kaiwo.translate import status as st

DEFAULT_VENDOR = "amd"
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h)")


def go_duration(text: str) -> float:
    """Seconds in a Go duration string (``90s``, ``1h30m``, ``1.5h``, ``0``); ValueError if malformed."""
    if text == "0":
        return 0.0
    pos, total = 0, 0.0
    for m in _PART.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise ValueError(f"{text!r} is not a Go duration (e.g. 90s, 5m, 1h30m)")
    return total


@dataclass(frozen=True)
class Preemptability:
    expired: bool
    condition: Obj  # the Preemptable condition (type, status, reason, message)
    seconds_left: float  # until the deadline; 0 once expired


def preemptability(start: float, duration: str, now: float) -> Preemptability:
    """The Preemptable condition of a RUNNING workload that started at ``start`` and declared ``duration``."""
    left = start + go_duration(duration) - now
    if left > 0:
        message = f"the workload may run for {duration}"
        return Preemptability(
            False, st.condition(WorkloadCondition.PREEMPTABLE, False, "DurationNotExceeded", message), left
        )
    message = f"the workload ran past its duration of {duration}"
    return Preemptability(
        True,
        st.condition(WorkloadCondition.PREEMPTABLE, True, "DurationExceeded", message),
        0.0,
    )


@dataclass(frozen=True)
class Claim:
    """Who competes for which GPUs: a workload's ClusterQueue and GPU vendor."""

    queue: str
    vendor: str


def claim(cr: Obj, default_queue: str) -> Claim:
    spec = cr.get("spec") or {}
    return Claim(spec.get("clusterQueue") or default_queue, spec.get("gpuVendor") or DEFAULT_VENDOR)


def requested_gpus(cr: Obj) -> int:
    """All GPUs a workload asks for: ``gpus``, else ``replicas`` (1 when unset, as the CRD's rules read it) times
    ``gpusPerReplica``; the CRD rejects specs where both are set and differ."""
    spec = cr.get("spec") or {}
    return int(spec.get("gpus") or 0) or int(spec.get("replicas") or 1) * int(spec.get("gpusPerReplica") or 0)


def pending_since(cr: Obj) -> float | None:
    """When a PENDING GPU workload started waiting for admission, or None if it is not GPU demand at all.

    The time its ``Admitted`` condition became False (it stays put while the workload waits), else its creation.
    """
    status = cr.get("status") or {}
    if status.get("status") != WorkloadStatus.PENDING or requested_gpus(cr) <= 0:
        return None
    admitted = condition(cr, WorkloadCondition.ADMITTED) or {}
    if admitted.get("status") == "False" and admitted.get("lastTransitionTime"):
        return epoch(admitted["lastTransitionTime"])
    created = cr["metadata"].get("creationTimestamp")
    return epoch(created) if created else None


@dataclass(frozen=True)
class Demand:
    now: bool  # some matching workload has pended past the threshold
    next_check: float | None  # seconds until the next matching workload crosses it (None: none waiting)


def demand(victim: Claim, candidates: Iterable[Obj], default_queue: str, threshold: float, now: float) -> Demand:
    """Whether GPU work of the same queue and vendor as ``victim`` has waited long enough to preempt it."""
    waits = [
        now - since
        for cr in candidates
        if claim(cr, default_queue) == victim and (since := pending_since(cr)) is not None
    ]
    if any(w >= threshold for w in waits):
        return Demand(True, None)
    return Demand(False, min((threshold - w for w in waits), default=None))


def is_demand_for(pending: Obj, victim: Obj, default_queue: str) -> bool:
    """Whether a change of ``pending`` can decide the fate of ``victim`` (a RUNNING workload with a duration)."""
    return (
        pending_since(pending) is not None
        and (victim.get("status") or {}).get("status") == WorkloadStatus.RUNNING
        and bool((victim.get("spec") or {}).get("duration"))
        and claim(pending, default_queue) == claim(victim, default_queue)
    )


VICTIM_INDEX = "preemption-victim"


def victim_index(cr: Obj) -> tuple[str, ...]:
    """Index value of a RUNNING workload with a duration (a possible victim): its own ``clusterQueue`` (empty
    when it uses the default) and GPU vendor. Lets a pending workload find its victims without a scan."""
    spec, status = cr.get("spec"), cr.get("status")
    if not isinstance(spec, dict) or not isinstance(status, dict):
        return ()
    if status.get("status") != WorkloadStatus.RUNNING or not spec.get("duration"):
        return ()
    return (f"{spec.get('clusterQueue') or ''}/{spec.get('gpuVendor') or DEFAULT_VENDOR}",)


def victim_keys(pending: Obj, default_queue: str) -> tuple[str, ...]:
    """The ``victim_index`` values of the workloads a pending workload competes with."""
    c = claim(pending, default_queue)
    return (f"{c.queue}/{c.vendor}", f"/{c.vendor}") if c.queue == default_queue else (f"{c.queue}/{c.vendor}",)
