"""GPU utilisation in ``kaiwo status``: what the utilisation monitor and the GpuWorkload records say.

For a workload: its GpuWorkload record (phase, aggregated utilisation, idle since) when it opted in to idle-GPU
reclamation, and the ``ResourceUnderutilization`` condition the monitor writes (low since when). For ``amd`` and
``nvidia``: each node's utilisation from its ``kaiwo.silogen.ai/gpu-utilization`` annotation (written by the
utilisation monitor), else from the latest samples of the records' pods there.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from kaiwo.api.common import WorkloadCondition
from kaiwo.cli.render import human_duration, parse_time
from kaiwo.runtime.objects import Obj, condition


def _since(stamp: str | None, now: dt.datetime) -> str:
    at = parse_time(stamp)
    return f"{stamp} ({human_duration((now - at).total_seconds())} ago)" if at else "-"


def workload_lines(obj: Obj, records: Sequence[Obj], now: dt.datetime) -> list[str]:
    """Lines for ``kaiwo status job/NAME`` (none when nothing is known about its GPUs' use)."""
    lines: list[str] = []
    uid = obj["metadata"].get("uid")
    record = next((r for r in records if ((r.get("spec") or {}).get("workloadRef") or {}).get("uid") == uid), None)
    if record is not None:
        status = record.get("status") or {}
        util = status.get("aggregatedUtilization")
        lines.append(
            f"GPU use:     {status.get('phase') or 'new'}"
            + (f", utilisation {util:g}%" if util is not None else ", no samples yet")
            + f" (GpuWorkload {record['metadata']['name']})"
        )
        if status.get("idleSince"):
            lines.append(f"Idle since:  {_since(status['idleSince'], now)}")
        if status.get("preemptionReason"):
            lines.append(f"Preemption:  {status['preemptionReason']}")
    cond = condition(obj, WorkloadCondition.RESOURCE_UNDERUTILIZATION)
    if cond is not None:
        low = cond.get("status") == "True"
        lines.append(
            f"GPU monitor: {'underutilised' if low else 'normal'}: {cond.get('message', '')}"
            + (f"; low since {_since(cond.get('lastTransitionTime'), now)}" if low else "")
        )
    return lines


def node_utilisation(records: Sequence[Obj], pods: Sequence[Obj], resource: str) -> dict[str, float]:
    """Node -> mean of the latest samples of the GPUs (of ``resource``) used by tracked pods there."""
    node_of = {
        (p["metadata"].get("namespace"), p["metadata"]["name"]): (p.get("spec") or {}).get("nodeName") for p in pods
    }
    values: dict[str, list[float]] = {}
    for r in records:
        if resource not in ((r.get("spec") or {}).get("gpuResources") or {}):
            continue
        ns = r["metadata"].get("namespace")
        for tp in (r.get("status") or {}).get("trackedPods") or []:
            node = node_of.get((ns, tp.get("podName")))
            if node:
                values.setdefault(node, []).extend(m["utilization"] for m in tp.get("gpuMetrics") or [])
    return {n: round(sum(v) / len(v), 1) for n, v in values.items() if v}


NODE_ANNOTATION = "kaiwo.silogen.ai/gpu-utilization"


def node_annotations(nodes: Sequence[Obj], resource: str, now: dt.datetime) -> dict[str, tuple[float, str]]:
    """Node -> (the utilisation monitor's figure for all its GPUs, how old it is); nodes with ``resource`` only."""
    out: dict[str, tuple[float, str]] = {}
    for n in nodes:
        alloc = (n.get("status") or {}).get("allocatable") or {}
        text = (n["metadata"].get("annotations") or {}).get(NODE_ANNOTATION) or ""
        value, _, stamp = text.partition("@")
        at = parse_time(stamp)
        if not text or at is None or str(alloc.get(resource) or "0") == "0":
            continue
        try:
            out[n["metadata"]["name"]] = (float(value), human_duration((now - at).total_seconds()))
        except ValueError:
            continue
    return out


def node_lines(monitored: dict[str, tuple[float, str]], tracked: dict[str, float]) -> str:
    if not monitored and not tracked:
        return (
            "GPU utilisation: unknown (the operator's utilisation monitor is off, and no workload opted in to "
            "idle-GPU reclamation runs here)"
        )
    rows = [f"{'NODE':<32} {'GPU UTILISATION':<16} SOURCE"]
    for node in sorted(monitored.keys() | tracked.keys()):
        if node in monitored:
            value, age = monitored[node]
            rows.append(f"{node:<32} {f'{value:g}%':<16} all GPUs, {age} ago (utilisation monitor)")
        else:
            rows.append(f"{node:<32} {f'{tracked[node]:g}%':<16} GPUs of tracked pods (GpuWorkload)")
    return "\n".join(rows)
