"""Tables and descriptions, as text. Pure: objects and ``now`` in, strings out (no colour; printing is the
caller's business), so every format is unit tested."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

from kaiwo.api import labels as L
from kaiwo.api.common import WorkloadCondition
from kaiwo.runtime import timestamps
from kaiwo.runtime.objects import Obj
from kaiwo.translate import kueuestate

GPU_KEYS = ("amd.com/gpu", "nvidia.com/gpu")


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """kubectl-style columns: upper-case headers, three spaces between columns, no trailing blanks."""
    cells = [[str(h) for h in headers], *[["" if c is None else str(c) for c in r] for r in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    return "\n".join("   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells)


def parse_time(ts: str | None) -> dt.datetime | None:
    if not ts:
        return None
    return timestamps.parse(ts)


def human_duration(seconds: float) -> str:
    """kubectl's short durations: 45s, 5m3s, 42m, 3h4m, 20h, 4d2h, 30d, 2y."""
    s = max(0, int(seconds))
    if s < 120:
        return f"{s}s"
    m, h, d = s // 60, s // 3600, s // 86400
    if m < 10:
        return f"{m}m{s % 60}s" if s % 60 else f"{m}m"
    if h < 3:
        return f"{m}m"
    if h < 8:
        return f"{h}h{m % 60}m" if m % 60 else f"{h}h"
    if h < 48:
        return f"{h}h"
    if d < 8:
        return f"{d}d{h % 24}h" if h % 24 else f"{d}d"
    if d < 365 * 2:
        return f"{d}d"
    return f"{d // 365}y"


def age(obj: Obj, now: dt.datetime) -> str:
    created = parse_time((obj.get("metadata") or {}).get("creationTimestamp"))
    return human_duration((now - created).total_seconds()) if created else "<unknown>"


# --- workloads ----------------------------------------------------------------------------------------------


def phase(obj: Obj) -> str:
    return str((obj.get("status") or {}).get("status") or "NEW")


def workload_type(obj: Obj) -> str:
    return "service" if obj.get("kind") == "KaiwoService" else "job"


def gpus(obj: Obj) -> int:
    spec = obj.get("spec") or {}
    total = int(spec.get("gpus") or 0)
    if total:
        return total
    return int(spec.get("gpusPerReplica") or 0) * int(spec.get("replicas") or 1)


# Conditions that inform (the workload may be preempted, it uses its GPUs little) and never explain a wait.
INFORMATIONAL = (WorkloadCondition.PREEMPTABLE, WorkloadCondition.RESOURCE_UNDERUTILIZATION)


def conditions_problem(obj: Obj) -> str:
    """The message of the first False condition that explains a wait or an error ("" if none)."""
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("status") == "False" and c.get("type") not in INFORMATIONAL:
            return f"{c.get('type')}: {c.get('message') or c.get('reason') or ''}"
    return ""


def workload_table(objs: Sequence[Obj], now: dt.datetime, *, namespaces: bool, wide: bool) -> str:
    headers = ["NAME", "TYPE", "STATUS", "USER", "QUEUE", "GPUS", "AGE"]
    if wide:
        headers += ["VENDOR", "STARTED", "DURATION", "MESSAGE"]
    if namespaces:
        headers.insert(0, "NAMESPACE")
    rows = []
    for o in sorted(objs, key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"], o["kind"])):
        spec, status = o.get("spec") or {}, o.get("status") or {}
        row: list[Any] = [
            o["metadata"]["name"],
            workload_type(o),
            phase(o),
            spec.get("user") or "-",
            spec.get("clusterQueue") or "<default>",
            gpus(o),
            age(o, now),
        ]
        if wide:
            started = parse_time(status.get("startTime"))
            row += [
                spec.get("gpuVendor") or "amd",
                human_duration((now - started).total_seconds()) + " ago" if started else "-",
                human_duration(status["duration"]) if status.get("duration") is not None else "-",
                conditions_problem(o) or "-",
            ]
        if namespaces:
            row.insert(0, o["metadata"].get("namespace", ""))
        rows.append(row)
    return table(headers, rows)


def _conditions(objs: Sequence[Obj], now: dt.datetime) -> str:
    rows = [
        [
            c.get("type", ""),
            c.get("status", ""),
            c.get("reason", ""),
            human_duration((now - t).total_seconds()) if (t := parse_time(c.get("lastTransitionTime"))) else "-",
            c.get("message", ""),
        ]
        for c in objs
    ]
    return table(["TYPE", "STATUS", "REASON", "AGE", "MESSAGE"], rows) if rows else "(none)"


def _indent(text: str) -> str:
    return "\n".join(f"  {line}" if line else line for line in text.splitlines())


def child_state(obj: Obj) -> str:
    """One word or phrase for a child's state."""
    kind, st = obj.get("kind"), obj.get("status") or {}
    if kind == "Pod":
        waiting = [
            c["state"]["waiting"].get("reason", "")
            for c in st.get("containerStatuses") or []
            if (c.get("state") or {}).get("waiting")
        ]
        gates = (obj.get("spec") or {}).get("schedulingGates")
        return "SchedulingGated" if gates else (waiting[0] if waiting else st.get("phase", "Unknown"))
    if kind == "Job":
        if (obj.get("spec") or {}).get("suspend"):
            return "Suspended"
        for c in st.get("conditions") or []:
            if c.get("status") == "True" and c.get("type") in ("Complete", "Failed"):
                return str(c["type"])
        return f"active={st.get('active', 0)} ready={st.get('ready', 0)} succeeded={st.get('succeeded', 0)}"
    if kind == "Deployment":
        return f"ready {st.get('readyReplicas', 0)}/{(obj.get('spec') or {}).get('replicas', 1)}"
    if kind == "PersistentVolumeClaim":
        return str(st.get("phase", "Pending"))
    if kind == "RayJob":
        return str(st.get("jobDeploymentStatus") or st.get("jobStatus") or "New")
    if kind == "AppWrapper":
        return str(st.get("phase") or "Pending")
    return "-"


def child_queue(children: Sequence[Obj]) -> str | None:
    """The LocalQueue the operator put on the workload child (its labels, or its pod template's)."""
    for c in children:
        template = ((c.get("spec") or {}).get("template") or {}).get("metadata") or {}
        for labels in ((c.get("metadata") or {}).get("labels") or {}, template.get("labels") or {}):
            if labels.get(L.KUEUE_QUEUE_NAME):
                return str(labels[L.KUEUE_QUEUE_NAME])
    return None


def describe_workload(
    obj: Obj,
    *,
    queue: str,
    children: Sequence[Obj],
    pods: Sequence[Obj],
    kueue: Sequence[Obj],
    local_queue: Obj | None,
    events: Sequence[Obj],
    now: dt.datetime,
    reason: str = "",
    why: str = "",
    usage: str = "",
) -> str:
    """``kaiwo status job/NAME``: everything needed to see why a workload waits. ``queue``: the LocalQueue (and
    ClusterQueue) name it uses, the cluster's default when the spec names none; ``reason``: the phase's reason,
    ``why``: the findings that explain it (kaiwo.cli.explain), ``usage``: the ClusterQueue's usage against quota."""
    meta, spec, status = obj["metadata"], obj.get("spec") or {}, obj.get("status") or {}
    generation, observed = meta.get("generation"), status.get("observedGeneration")
    lines = [
        f"Name:        {meta['name']}",
        f"Namespace:   {meta.get('namespace', '')}",
        f"Type:        {workload_type(obj)} ({obj['kind']})",
        f"Status:      {phase(obj)}"
        + (
            ""
            if observed is None or observed == generation
            else f"  (for generation {observed}; the spec is at {generation})"
        ),
        *([f"Reason:      {reason}"] if reason else []),
        f"User:        {spec.get('user') or '-'}",
        f"Queue:       {queue}" + ("" if spec.get("clusterQueue") else " (the cluster's default)"),
        f"GPUs:        {gpus(obj)} ({spec.get('gpuVendor') or 'amd'})",
        f"Created:     {meta.get('creationTimestamp', '-')} ({age(obj, now)} ago)",
    ]
    if status.get("startTime"):
        lines.append(f"Started:     {status['startTime']}")
    if status.get("completionTime"):
        lines.append(f"Completed:   {status['completionTime']}")
    if status.get("duration") is not None:
        lines.append(f"Duration:    {human_duration(status['duration'])}")
    if why:
        lines += ["", "Why:", why]
    lines += ["", "Conditions:", _indent(_conditions(status.get("conditions") or [], now))]

    lines += ["", "Kueue:"]
    if local_queue is None:
        lines.append(f"  LocalQueue {queue}: missing in this namespace (Kueue admits nothing until it exists)")
    else:
        lst = local_queue.get("status") or {}
        lines.append(
            f"  LocalQueue {queue} -> ClusterQueue {local_queue['spec'].get('clusterQueue')}: "
            f"{lst.get('pendingWorkloads', 0)} pending, {lst.get('admittedWorkloads', 0)} admitted"
        )
    if usage:
        lines.append(f"  {usage}")
    if not kueue:
        lines.append("  Workload: none yet (Kueue creates one per child Job/RayJob/AppWrapper, or per pod)")
    for wl in kueue:
        adm = (wl.get("status") or {}).get("admission") or {}
        cq = adm.get("clusterQueue")
        flavors = sorted({f for ps in adm.get("podSetAssignments") or [] for f in (ps.get("flavors") or {}).values()})
        lines.append(
            f"  Workload {wl['metadata']['name']}"
            + (f": admitted to {cq} (flavors: {', '.join(flavors) or '-'})" if cq else ": not admitted")
        )
        lines.append(_indent(_indent(_conditions((wl.get("status") or {}).get("conditions") or [], now))))

    lines += ["", "Children:"]
    rows = [[f"{c['kind']}/{c['metadata']['name']}", child_state(c), age(c, now)] for c in children]
    rows += [
        [f"Pod/{p['metadata']['name']}", child_state(p), (p.get("spec") or {}).get("nodeName") or "-"] for p in pods
    ]
    lines.append(_indent(table(["OBJECT", "STATE", "AGE/NODE"], rows)) if rows else "  (none)")

    lines += ["", "Events:"]
    ev_rows = [
        [
            human_duration((now - t).total_seconds()) if (t := parse_time(event_time(e))) else "-",
            e.get("type", ""),
            e.get("reason", ""),
            f"{(e.get('involvedObject') or {}).get('kind', '')}/{(e.get('involvedObject') or {}).get('name', '')}",
            e.get("message", "").strip(),
        ]
        for e in events
    ]
    lines.append(_indent(table(["AGE", "TYPE", "REASON", "OBJECT", "MESSAGE"], ev_rows)) if ev_rows else "  (none)")
    return "\n".join(lines)


def event_time(e: Obj) -> str:
    return str(e.get("lastTimestamp") or e.get("eventTime") or (e.get("metadata") or {}).get("creationTimestamp") or "")


# --- cluster ------------------------------------------------------------------------------------------------


def quantity(value: Any) -> float:
    """A Kubernetes quantity as a number (CPU in cores, memory in bytes)."""
    s = str(value).strip()
    suffixes = {
        "Ki": 2**10,
        "Mi": 2**20,
        "Gi": 2**30,
        "Ti": 2**40,
        "Pi": 2**50,
        "Ei": 2**60,
        "n": 1e-9,
        "u": 1e-6,
        "m": 1e-3,
        "k": 1e3,
        "K": 1e3,
        "M": 1e6,
        "G": 1e9,
        "T": 1e12,
        "P": 1e15,
        "E": 1e18,
    }
    for suffix in sorted(suffixes, key=len, reverse=True):
        if s.endswith(suffix) and s[: -len(suffix)]:
            return float(s[: -len(suffix)]) * suffixes[suffix]
    return float(s) if s else 0.0


def pod_requests(pod: Obj) -> dict[str, float]:
    """What a pod holds on its node: the sum of its containers' requests (limits for GPUs without requests)."""
    total: dict[str, float] = {}
    for c in (pod.get("spec") or {}).get("containers") or []:
        res = c.get("resources") or {}
        gpu_limits = {k: v for k, v in (res.get("limits") or {}).items() if k in GPU_KEYS}
        wanted = {**gpu_limits, **(res.get("requests") or {})}
        for key, value in wanted.items():
            total[key] = total.get(key, 0.0) + quantity(value)
    return total


def gpu_model(node: Obj, vendor_key: str) -> str:
    labels = node["metadata"].get("labels") or {}
    for key in (L.GPU_MODEL, "amd.com/gpu.product-name", "nvidia.com/gpu.product"):
        if labels.get(key):
            return str(labels[key])
    return "-"


def _used(used: float, total: float, fmt: str = "{:g}") -> str:
    pct = f" ({used / total:.0%})" if total else ""
    return f"{fmt.format(used)}/{fmt.format(total)}{pct}"


def node_table(nodes: Sequence[Obj], pods: Sequence[Obj], vendor_key: str) -> str:
    """``kaiwo status amd|nvidia``: GPU nodes with GPUs, CPU, memory and pods as used/allocatable."""
    by_node: dict[str, list[Obj]] = {}
    for p in pods:
        node_name = (p.get("spec") or {}).get("nodeName")
        if node_name and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
            by_node.setdefault(node_name, []).append(p)
    rows = []
    for node in sorted(nodes, key=lambda n: n["metadata"]["name"]):
        alloc = (node.get("status") or {}).get("allocatable") or {}
        if quantity(alloc.get(vendor_key, 0)) <= 0:
            continue
        held = [pod_requests(p) for p in by_node.get(node["metadata"]["name"], [])]
        used = {k: sum(h.get(k, 0.0) for h in held) for k in (vendor_key, "cpu", "memory")}
        gib = 2**30
        rows.append(
            [
                node["metadata"]["name"],
                gpu_model(node, vendor_key),
                _used(used[vendor_key], quantity(alloc[vendor_key])),
                _used(used["cpu"], quantity(alloc.get("cpu", 0)), "{:.4g}"),
                _used(used["memory"] / gib, quantity(alloc.get("memory", 0)) / gib, "{:.0f}Gi"),
                _used(len(held), quantity(alloc.get("pods", 0))),
            ]
        )
    return table(["NODE", "GPU MODEL", "GPUS", "CPU", "MEMORY", "PODS"], rows)


def _queue_resource(cq: Obj, key: str) -> tuple[float, float]:
    """(used, nominal quota) of one resource over all flavors of a ClusterQueue."""
    quota = sum(
        quantity(r.get("nominalQuota", 0))
        for g in (cq.get("spec") or {}).get("resourceGroups") or []
        for f in g.get("flavors") or []
        for r in f.get("resources") or []
        if r.get("name") == key
    )
    st = cq.get("status") or {}
    used = sum(
        quantity(r.get("total", 0))
        for f in st.get("flavorsReservation") or st.get("flavorsUsage") or []
        for r in f.get("resources") or []
        if r.get("name") == key
    )
    return used, quota


def queue_table(cluster_queues: Sequence[Obj], local_queues: Sequence[Obj], workloads: Sequence[Obj] = ()) -> str:
    """``kaiwo status queues``: per ClusterQueue a [TOTAL] row (GPU/CPU/memory use of the quota, admitted and
    pending workloads, and Kueue's state), then one row per LocalQueue that feeds it. A queue that is
    terminating or inactive is marked in STATE and explained (Kueue's reason, what holds it) below the table."""
    rows = []
    notes = []
    for cq in sorted(cluster_queues, key=lambda q: q["metadata"]["name"]):
        name, st = cq["metadata"]["name"], cq.get("status") or {}
        verdict = kueuestate.verdict("ClusterQueue", cq, workloads=workloads)
        if not verdict.ok:
            notes.append(f"! ClusterQueue {name} {verdict.state.upper()}: {verdict.detail}")
        gpu = [_queue_resource(cq, k) for k in GPU_KEYS]
        gpu_used, gpu_quota = sum(u for u, _ in gpu), sum(q for _, q in gpu)
        cpu = _queue_resource(cq, "cpu")
        mem = _queue_resource(cq, "memory")
        rows.append(
            [
                name,
                "[TOTAL]",
                st.get("admittedWorkloads", 0),
                st.get("pendingWorkloads", 0),
                _used(gpu_used, gpu_quota),
                _used(cpu[0], cpu[1], "{:.4g}"),
                _used(mem[0] / 2**30, mem[1] / 2**30, "{:.0f}Gi"),
                verdict.state.upper() if not verdict.ok else verdict.state,
            ]
        )
        for lq in sorted(
            (q for q in local_queues if (q.get("spec") or {}).get("clusterQueue") == name),
            key=lambda q: (q["metadata"].get("namespace", ""), q["metadata"]["name"]),
        ):
            lst = lq.get("status") or {}
            lq_verdict = kueuestate.verdict("LocalQueue", lq)
            rows.append(
                [
                    "",
                    f"{lq['metadata'].get('namespace')}/{lq['metadata']['name']}",
                    lst.get("admittedWorkloads", 0),
                    lst.get("pendingWorkloads", 0),
                    "",
                    "",
                    "",
                    lq_verdict.state.upper() if not lq_verdict.ok else lq_verdict.state,
                ]
            )
    headers = ["CLUSTERQUEUE", "LOCALQUEUE", "ADMITTED", "PENDING", "GPUS", "CPU", "MEMORY", "STATE"]
    return "\n".join([table(headers, rows), *notes])
