"""Why a workload is where it is: the findings behind ``kaiwo status KIND/NAME`` (pure: objects in, findings out).

The caller reads the workload, its children and pods, Kueue's Workloads (owned by a child, or by a pod under
Kueue's pod integration, as for the pods of a Deployment), the LocalQueue and its ClusterQueue, the namespace
and Kueue's ``managedJobsNamespaceSelector`` (None when Kueue's configuration could not be read); this module
turns them into findings ordered from blocking to informative, each with what to do. The same findings feed the
text screen and ``-o json``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from kaiwo.api.common import TERMINAL, WorkloadCondition
from kaiwo.cli.render import quantity
from kaiwo.runtime.objects import Obj, condition, has_condition, status_condition
from kaiwo.translate import kueuestate

KUEUE_ADMISSION_GATE = "kueue.x-k8s.io/admission"
GPU_KEYS = ("amd.com/gpu", "nvidia.com/gpu")


@dataclass(frozen=True)
class Finding:
    severity: str  # "blocking", "warning" or "info"
    subject: str  # the object it is about, Kind/name
    message: str
    hint: str = ""

    def as_dict(self) -> Obj:
        return asdict(self)


def selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """A metav1.LabelSelector against labels (None or {} selects everything, as Kubernetes does)."""
    if not selector:
        return True
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key", ""), expr.get("operator", ""), expr.get("values") or []
        present = key in labels
        if op == "In" and not (present and labels[key] in values):
            return False
        if op == "NotIn" and present and labels[key] in values:
            return False
        if op == "Exists" and not present:
            return False
        if op == "DoesNotExist" and present:
            return False
    return True


def describe_selector(selector: Mapping[str, Any]) -> str:
    parts = [f"{k}={v}" for k, v in (selector.get("matchLabels") or {}).items()]
    for e in selector.get("matchExpressions") or []:
        values = ",".join(e.get("values") or [])
        parts.append(f"{e.get('key')} {e.get('operator')}{f' ({values})' if values else ''}")
    return ", ".join(parts) or "everything"


def labels_to_set(selector: Mapping[str, Any]) -> str:
    """``k=v ...`` that satisfy the selector's matchLabels ("" when it has none)."""
    return " ".join(f"{k}={v}" for k, v in (selector.get("matchLabels") or {}).items())


def namespace_findings(ns: str, namespace: Obj | None, kueue_selector: Mapping[str, Any] | None) -> list[Finding]:
    if namespace is None or kueue_selector is None:
        return []
    labels = namespace["metadata"].get("labels") or {}
    if selector_matches(kueue_selector, labels):
        return []
    return [
        Finding(
            "blocking",
            f"Namespace/{ns}",
            "Kueue does not manage this namespace (its managedJobsNamespaceSelector is "
            f"{describe_selector(kueue_selector)}), so nothing here is queued or admitted and the workload "
            "waits for ever",
            "ask an administrator to label the namespace to match Kueue's selector"
            + (f" (kubectl label namespace {ns} {labels})" if (labels := labels_to_set(kueue_selector)) else ""),
        )
    ]


def queue_findings(
    queue: str, local_queue: Obj | None, cluster_queue: Obj | None, workloads: Sequence[Obj]
) -> list[Finding]:
    if local_queue is None:
        return [
            Finding(
                "blocking",
                f"LocalQueue/{queue}",
                "missing in this namespace: Kueue admits nothing until it exists",
                "an administrator adds the namespace to the ClusterQueue's namespaces in the KaiwoQueueConfig",
            )
        ]
    found = []
    lq = kueuestate.verdict("LocalQueue", local_queue)
    if not lq.ok and lq.state != "Unknown":
        found.append(Finding("blocking", f"LocalQueue/{queue}", f"{lq.state.lower()}: {lq.detail}"))
    cq_name = (local_queue.get("spec") or {}).get("clusterQueue", "")
    if cluster_queue is None:
        return found
    cq = kueuestate.verdict("ClusterQueue", cluster_queue, workloads=workloads)
    if not cq.ok and cq.state != "Unknown":
        found.append(
            Finding(
                "blocking",
                f"ClusterQueue/{cq_name}",
                f"{cq.state.lower()}: {cq.detail}",
                "see `kaiwo status queues`; an administrator checks the KaiwoQueueConfig (kubectl get "
                "kaiwoqueueconfig kaiwo -o yaml)",
            )
        )
    return found


def workload_findings(wl: Obj) -> list[Finding]:
    """Kueue's view of one Workload: pending (with Kueue's reason), evicted or preempted, deactivated."""
    subject = f"Workload/{wl['metadata']['name']}"
    found = []
    if (wl.get("spec") or {}).get("active") is False:
        found.append(Finding("blocking", subject, "deactivated (spec.active=false): Kueue will not admit it"))
    preempted = condition(wl, "Preempted")
    evicted = condition(wl, "Evicted")
    if preempted and preempted.get("status") == "True":
        found.append(
            Finding("warning", subject, f"preempted ({preempted.get('reason')}): {preempted.get('message', '')}")
        )
    elif evicted and evicted.get("status") == "True":
        found.append(Finding("warning", subject, f"evicted ({evicted.get('reason')}): {evicted.get('message', '')}"))
    if has_condition(wl, "Finished") or has_condition(wl, "Admitted"):
        return found
    reserved = condition(wl, "QuotaReserved")
    reason = (reserved or {}).get("reason") or "Pending"
    message = (reserved or {}).get("message") or "not yet considered by Kueue"
    found.append(
        Finding(
            "blocking",
            subject,
            f"pending in Kueue ({reason}): {message}",
            "it is admitted when the ClusterQueue has quota free (see the usage below), or lower priority work "
            "is preempted",
        )
    )
    return found


def pod_findings(pod: Obj) -> list[Finding]:
    subject = f"Pod/{pod['metadata']['name']}"
    spec, st = pod.get("spec") or {}, pod.get("status") or {}
    gates = [g.get("name") for g in spec.get("schedulingGates") or []]
    if gates:
        what = "Kueue admission" if KUEUE_ADMISSION_GATE in gates else ", ".join(str(g) for g in gates)
        return [Finding("info", subject, f"scheduling gated until {what}")]
    scheduled = condition(pod, "PodScheduled")
    if scheduled and scheduled.get("status") == "False":
        return [
            Finding(
                "blocking",
                subject,
                f"not schedulable ({scheduled.get('reason', '')}): {scheduled.get('message', '')}",
                "the scheduler's message says which nodes lack what; see `kaiwo status amd|nvidia`",
            )
        ]
    for c in st.get("containerStatuses") or []:
        waiting = (c.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in ("ImagePullBackOff", "ErrImagePull", "CrashLoopBackOff", "CreateContainerError"):
            return [
                Finding(
                    "blocking", subject, f"container {c.get('name')}: {waiting['reason']}: {waiting.get('message', '')}"
                )
            ]
    return []


def child_findings(child: Obj, events: Sequence[Obj]) -> list[Finding]:
    kind, name, st = child.get("kind"), child["metadata"]["name"], child.get("status") or {}
    subject = f"{kind}/{name}"
    if kind == "PersistentVolumeClaim":
        phase = st.get("phase", "Pending")
        if phase == "Bound":
            return []
        last = [e for e in events if (e.get("involvedObject") or {}).get("uid") == child["metadata"].get("uid")]
        said = f": {last[-1].get('reason', '')}: {last[-1].get('message', '').strip()}" if last else ""
        if phase == "Lost":
            return [
                Finding(
                    "blocking",
                    subject,
                    "Lost: its PersistentVolume is gone, so pods that mount it cannot start",
                    "delete and resubmit the workload to get a new volume (the data of the lost one is gone)",
                )
            ]
        return [
            Finding(
                "blocking",
                subject,
                f"{phase}: not bound to a volume yet{said}",
                "check the storage class exists and can provision (kubectl get storageclass)",
            )
        ]
    if kind == "Job" and name.endswith("-download"):
        if has_condition(child, "Complete"):
            return [Finding("info", subject, "download complete")]
        if has_condition(child, "Failed"):
            failed = condition(child, "Failed") or {}
            return [
                Finding(
                    "blocking",
                    subject,
                    f"download failed ({failed.get('reason', '')}): {failed.get('message', '')}",
                    f"see its log: kubectl logs job/{name}",
                )
            ]
        progress = f"active={st.get('active', 0)}, started {st.get('startTime', '-')}" if st.get("active") else ""
        return [Finding("info", subject, f"downloading{f' ({progress})' if progress else ' (not started yet)'}")]
    return []


def preemption_findings(obj: Obj) -> list[Finding]:
    c = condition(obj, WorkloadCondition.PREEMPTABLE)
    if c and c.get("status") == "True":
        return [Finding("info", f"{obj['kind']}/{obj['metadata']['name']}", f"preemptable: {c.get('message', '')}")]
    return []


def usage(cluster_queue: Obj) -> dict[str, tuple[float, float]]:
    """(used, nominal quota) per resource of a ClusterQueue, summed over flavors (v1beta1 and v1beta2 names)."""
    quota: dict[str, float] = {}
    for g in (cluster_queue.get("spec") or {}).get("resourceGroups") or []:
        for f in g.get("flavors") or []:
            for r in f.get("resources") or []:
                quota[r["name"]] = quota.get(r["name"], 0.0) + quantity(r.get("nominalQuota", 0))
    used: dict[str, float] = {}
    st = cluster_queue.get("status") or {}
    for f in st.get("flavorsReservation") or st.get("flavorsUsage") or []:
        for r in f.get("resources") or []:
            used[r["name"]] = used.get(r["name"], 0.0) + quantity(r.get("total", 0))
    return {k: (used.get(k, 0.0), q) for k, q in quota.items()}


def findings(
    obj: Obj,
    *,
    queue: str,
    children: Sequence[Obj],
    pods: Sequence[Obj],
    kueue: Sequence[Obj],
    local_queue: Obj | None,
    cluster_queue: Obj | None,
    namespace: Obj | None,
    kueue_selector: Mapping[str, Any] | None,
    events: Sequence[Obj],
) -> list[Finding]:
    """Everything that explains the workload's phase, blocking findings first."""
    phase = (obj.get("status") or {}).get("status") or ""
    done = phase in TERMINAL
    found = [] if done else namespace_findings(obj["metadata"].get("namespace", ""), namespace, kueue_selector)
    if not done:
        found += queue_findings(queue, local_queue, cluster_queue, kueue)
    for c in children:
        found += child_findings(c, events)
    for wl in kueue:
        found += workload_findings(wl)
    for p in pods:
        found += pod_findings(p)
    found += preemption_findings(obj)
    order = {"blocking": 0, "warning": 1, "info": 2}
    return sorted(found, key=lambda f: order[f.severity])


def phase_reason(obj: Obj) -> tuple[str, str]:
    """(phase, its reason): the CR's own words from its failing or Ready-like condition."""
    status = obj.get("status") or {}
    phase = status.get("status") or "NEW"
    conds = status.get("conditions") or []
    bad = next((c for c in conds if c.get("status") == "False" and c.get("message")), None)
    admitted = status_condition(status, WorkloadCondition.ADMITTED)
    admitted = admitted if admitted and admitted.get("message") else None
    chosen = bad or admitted or next((c for c in conds if c.get("message")), None)
    return phase, (f"{chosen.get('reason', '')}: {chosen['message']}" if chosen else "")


def usage_line(cluster_queue: Obj) -> str:
    """``ClusterQueue kaiwo: amd.com/gpu 8/32, cpu 10/460, memory 40/1382Gi; 2 admitted, 1 pending``."""
    name, st = cluster_queue["metadata"]["name"], cluster_queue.get("status") or {}
    parts = []
    for key, (used, quota) in sorted(usage(cluster_queue).items()):
        if key in GPU_KEYS and not quota:
            continue
        if key == "memory":
            parts.append(f"memory {used / 2**30:.0f}/{quota / 2**30:.0f}Gi")
        else:
            parts.append(f"{key} {used:g}/{quota:g}")
    counts = f"{st.get('admittedWorkloads', 0)} admitted, {st.get('pendingWorkloads', 0)} pending"
    return f"ClusterQueue {name} usage/quota: {', '.join(parts) or 'no quota'}; {counts}"


def render_findings(found: Sequence[Finding]) -> str:
    if not found:
        return "  nothing holds it back"
    lines = []
    marks = {"blocking": "!", "warning": "~", "info": "-"}
    for f in found:
        lines.append(f"  {marks[f.severity]} {f.subject}: {f.message}")
        if f.hint:
            lines.append(f"      -> {f.hint}")
    return "\n".join(lines)
