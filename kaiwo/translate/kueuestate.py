"""Whether a Kueue object can do its job, read from its live state (pure: object(s) in, verdict out).

A Kueue object that exists is not necessarily usable: a ClusterQueue deleted while workloads are admitted stays
Terminating behind Kueue's ``resource-in-use`` finalizer and admits nothing; a ClusterQueue whose flavor is
missing, or a LocalQueue whose ClusterQueue is gone, is inactive. Kueue reports that in the ``Active``
condition (type and reasons are the same in v1beta1 and v1beta2, so this reads either version). The
KaiwoQueueConfig controller and ``kaiwo status queues`` / ``kaiwo doctor`` share these verdicts, so every
surface tells the same story.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from kaiwo.runtime.objects import Obj, condition, has_condition

ACTIVE_KINDS = ("ClusterQueue", "LocalQueue")  # kinds whose status carries Kueue's Active condition
MAX_NAMED = 5  # holders named in a message; the rest are counted


@dataclass(frozen=True)
class Verdict:
    state: str  # "Active", "Terminating", "Inactive" or "Unknown" (Kueue has not reported yet)
    detail: str = ""  # what is wrong, Kueue's reason and what holds it; empty when Active

    @property
    def ok(self) -> bool:
        return self.state == "Active"


def active_condition(obj: Obj) -> Obj | None:
    return condition(obj, "Active")


def _names(items: Iterable[str]) -> str:
    items = sorted(items)
    more = f" and {len(items) - MAX_NAMED} more" if len(items) > MAX_NAMED else ""
    return ", ".join(items[:MAX_NAMED]) + more


def holds_quota(workload: Obj) -> bool:
    """Whether Kueue counts ``workload`` against its ClusterQueue, as Kueue's own cache does: quota reserved (or
    admitted), active, and neither finished nor being deleted. A finished Workload keeps ``status.admission`` as a
    record, for instance one Kueue finished because its Job was deleted with its namespace, but its quota is
    released: it is in neither of the ClusterQueue's counts and holds nothing."""
    return (
        bool((workload.get("status") or {}).get("admission"))
        and not has_condition(workload, "Finished")
        and (workload.get("spec") or {}).get("active") is not False
        and not workload["metadata"].get("deletionTimestamp")
    )


def workloads_in(cluster_queue: str, workloads: Iterable[Obj]) -> list[str]:
    """ns/name of the Workloads that hold quota in ``cluster_queue`` (see ``holds_quota``)."""
    return [
        f"{w['metadata'].get('namespace', '')}/{w['metadata']['name']}"
        for w in workloads
        if ((w.get("status") or {}).get("admission") or {}).get("clusterQueue") == cluster_queue and holds_quota(w)
    ]


def flavor_users(flavor: str, cluster_queues: Iterable[Obj]) -> list[str]:
    """ClusterQueues whose resource groups name ``flavor`` (what keeps a ResourceFlavor's finalizer)."""
    return [
        cq["metadata"]["name"]
        for cq in cluster_queues
        if any(
            f.get("name") == flavor
            for g in (cq.get("spec") or {}).get("resourceGroups") or []
            for f in g.get("flavors") or []
        )
    ]


def holders(kind: str, obj: Obj, *, cluster_queues: Iterable[Obj] = (), workloads: Iterable[Obj] = ()) -> str:
    """What keeps a terminating Kueue object alive, in words ("" when nothing known holds it)."""
    name = obj["metadata"]["name"]
    if kind == "ClusterQueue":
        st = obj.get("status") or {}
        held = workloads_in(name, workloads)
        counts = (
            f"{st.get('admittedWorkloads', 0)} admitted and {st.get('reservingWorkloads', 0)} reserving workload(s)"
        )
        return f"{counts}{': ' + _names(held) if held else ''}"
    if kind == "ResourceFlavor":
        users = flavor_users(name, cluster_queues)
        return f"used by ClusterQueue(s) {_names(users)}" if users else ""
    return ""


def verdict(kind: str, obj: Obj, *, cluster_queues: Iterable[Obj] = (), workloads: Iterable[Obj] = ()) -> Verdict:
    """The state of one live Kueue object of ``kind``; ``cluster_queues``/``workloads`` name what holds it."""
    meta = obj["metadata"]
    cond = active_condition(obj) if kind in ACTIVE_KINDS else None
    said = f"Kueue says {cond.get('reason', '')}: {cond.get('message', '')}".rstrip(": ") if cond else ""
    if meta.get("deletionTimestamp"):
        finalizers = meta.get("finalizers") or []
        held = holders(kind, obj, cluster_queues=cluster_queues, workloads=workloads)
        parts = [
            f"terminating since {meta['deletionTimestamp']}",
            f"held by finalizer {', '.join(finalizers)}" if finalizers else "",
            held,
            said,
        ]
        return Verdict("Terminating", "; ".join(p for p in parts if p))
    if kind not in ACTIVE_KINDS:
        return Verdict("Active")
    if cond is None:
        return Verdict("Unknown", "Kueue has not reported it Active yet (is Kueue's controller running?)")
    if cond.get("status") != "True":
        return Verdict("Inactive", said or "inactive")
    return Verdict("Active")
