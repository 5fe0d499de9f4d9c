"""GPU utilisation monitoring of Kaiwo workloads (docs/design/gpu-utilisation.md).

Switched on by ``--resource-monitoring`` (``RESOURCE_MONITORING_ENABLED=true``). Every polling interval, while
this replica leads, the monitor reads the GPU exporters (kaiwo.gpumetrics.reader), maps each sample's pod to
its KaiwoJob/KaiwoService through the pod's ``kaiwo.silogen.ai/run-id`` label (the Kaiwo object's UID), and for
every RUNNING workload in KaiwoConfig ``resourceMonitoring.targetNamespaces`` (all when empty):

- sets ``ResourceUnderutilization``: True (GpuUtilizationLow) when any of its GPUs is below
  ``lowUtilizationThreshold`` percent, else False (GpuUtilizationNormal). The message names how many GPUs are
  low, not their live values, so a steady workload costs no status write;
- emits one event per change of that verdict (Warning GpuUnderutilized, Normal GpuUtilizationNormal), never
  one per poll;
- with ``terminateUnderutilized``, once the condition has been True for ``terminateUnderutilizedAfter``
  (from its lastTransitionTime), sets the workload TERMINATING with ``WorkloadTerminatedEarly`` reason
  GpuUtilizationLow: the workload controller then deletes its children and marks it TERMINATED, the same
  path duration preemption takes;
- exports ``kaiwo_gpu_utilization{kind,namespace,name}``: the mean utilisation of the workload's GPUs;
- annotates each GPU node with ``kaiwo.silogen.ai/gpu-utilization: <percent>@<time>`` (mean of all its GPUs,
  rewritten when it moves by 5 points or is 5 minutes old), which ``kaiwo status amd|nvidia`` shows.

A failed read changes nothing (a missing exporter must not make busy GPUs look idle); it is logged and
counted in ``kaiwo_gpu_metrics_read_errors_total``. Workloads without samples keep their condition.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import aiohttp
from prometheus_client import Counter
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from kaiwo.api import groups
from kaiwo.api.common import WorkloadCondition, WorkloadEvent, WorkloadStatus
from kaiwo.controllers import settings
from kaiwo.gpumetrics.reader import GpuSample, MetricsError, PodUtilization, Source, by_pod, read
from kaiwo.runtime.apply import Applier
from kaiwo.runtime.builder import ControllerSpec, Reads, Sources, build
from kaiwo.runtime.client import Client
from kaiwo.runtime.controller import Request, Result
from kaiwo.runtime.events import EventRecorder
from kaiwo.runtime.informer import Informer
from kaiwo.runtime.manager import Manager
from kaiwo.runtime.objects import Obj, condition, merge_condition
from kaiwo.runtime.timestamps import epoch, rfc3339
from kaiwo.translate import status as st
from kaiwo.translate.preemption import go_duration

log = logging.getLogger(__name__)
API = groups.KAIWO_API
KINDS = ("KaiwoJob", "KaiwoService")
RUN_ID_LABEL = "kaiwo.silogen.ai/run-id"
CONDITION = WorkloadCondition.RESOURCE_UNDERUTILIZATION
KEY = Request(None, "gpu-utilisation")
FIELD_MANAGER = "kaiwo-resource-monitor"
NODE_ANNOTATION = "kaiwo.silogen.ai/gpu-utilization"
NODE_STEP = 5.0  # percentage points a node's annotation must move before it is rewritten
NODE_REFRESH = 300.0  # seconds after which it is rewritten anyway (its time shows it is current)


@dataclass(frozen=True)
class Assessment:
    low: bool
    mean: float  # mean utilisation of all its GPUs, percent
    message: str


def assess(pods: list[PodUtilization], threshold: float) -> Assessment | None:
    """The verdict on a workload's GPUs (None when it has no samples)."""
    values = [v for p in pods for v in p.gpus.values()]
    if not values:
        return None
    low = sum(1 for v in values if v < threshold)
    mean = round(sum(values) / len(values), 2)
    if low:
        return Assessment(True, mean, f"{low} of {len(values)} GPU(s) below {threshold:g}% utilisation")
    return Assessment(False, mean, f"all {len(values)} GPU(s) at or above {threshold:g}% utilisation")


def termination_due(cond: Obj | None, after: float, now: float) -> bool:
    """Whether a True condition has lasted ``after`` seconds."""
    if not cond or cond.get("status") != "True" or not cond.get("lastTransitionTime"):
        return False
    return now - epoch(cond["lastTransitionTime"]) >= after


def with_condition(old: Obj, cond: Obj, now: str, phase: WorkloadStatus | None = None) -> Obj:
    """``old`` status with ``cond`` set (transition time kept when its status is unchanged), optionally a new phase."""
    out = {**old, "conditions": merge_condition(old.get("conditions") or [], cond, now)}
    if phase is not None:
        out["status"] = str(phase)
    return out


def parse_node_figure(text: str | None) -> tuple[float, float] | None:
    """``"42@2026-01-01T12:00:00Z"`` -> (42.0, epoch seconds); None when absent or malformed."""
    value, _, at = (text or "").partition("@")
    try:
        return float(value), epoch(at)
    except ValueError:
        return None


def node_means(samples: list[GpuSample]) -> dict[str, float]:
    """Node -> mean utilisation of all its GPUs (rounded to a whole percent)."""
    values: dict[str, list[float]] = {}
    for s in samples:
        if s.node:
            values.setdefault(s.node, []).append(s.utilization)
    return {n: float(round(sum(v) / len(v))) for n, v in values.items()}


class UtilisationCollector(Collector):
    """``kaiwo_gpu_utilization``: the monitor's last readings."""

    def __init__(self) -> None:
        self.values: dict[tuple[str, str, str], float] = {}

    def collect(self) -> Iterator[Metric]:
        g = GaugeMetricFamily(
            "kaiwo_gpu_utilization",
            "Mean GPU utilisation (percent) of a Kaiwo workload's GPUs at the last read",
            labels=["kind", "namespace", "name"],
        )
        for (kind, ns, name), value in sorted(self.values.items()):
            g.add_metric([kind, ns, name], value)
        yield g


class UtilisationMonitor:
    def __init__(
        self,
        client: Client,
        source: Source,
        configs: Informer | None,
        workloads: tuple[Informer, ...],
        pods: Informer,
        wall: Callable[[], float] = time.time,
        registry: CollectorRegistry | None = None,
        nodes: Informer | None = None,
    ) -> None:
        self.client = client
        self.nodes = nodes
        self.source = source
        self.configs = configs
        self.workloads = workloads
        self.pods = pods
        self.wall = wall
        self.applier = Applier(client, FIELD_MANAGER)
        self.events = EventRecorder(client, FIELD_MANAGER, wall=wall)
        self.collector = UtilisationCollector()
        self.read_errors = Counter(
            "kaiwo_gpu_metrics_read_errors", "Failed reads of the GPU metrics endpoints", ["reader"], registry=registry
        )
        self.published: dict[str, bool] = {}  # workload UID -> the verdict last announced by an event

    async def reconcile(self, req: Request) -> Result:
        cfg = settings.current(self.configs).resource_monitoring
        try:
            async with aiohttp.ClientSession() as session:
                samples = await read(session, self.source)
        except MetricsError as e:
            self.read_errors.labels("resource-monitor").inc()
            log.warning("GPU metrics unavailable, utilisation unchanged: %s", e)
            return Result(requeue_after=self.source.interval)
        per_workload: dict[str, list[PodUtilization]] = {}
        for (ns, name), util in by_pod(samples).items():
            pod = self.pods.get_by(name, ns)
            run_id = ((pod or {}).get("metadata", {}).get("labels") or {}).get(RUN_ID_LABEL)
            if run_id:
                per_workload.setdefault(run_id, []).append(util)
        targets = set(cfg.target_namespaces or ())
        seen: dict[tuple[str, str, str], float] = {}
        verdicts: list[tuple[Obj, Assessment]] = []
        for inf in self.workloads:
            for cr in inf.objects():
                meta = cr["metadata"]
                if targets and meta.get("namespace") not in targets:
                    continue
                if (cr.get("status") or {}).get("status") != WorkloadStatus.RUNNING:
                    continue
                verdict = assess(per_workload.get(meta["uid"], []), cfg.low_utilization_threshold)
                if verdict is None:
                    continue
                seen[(cr["kind"], meta["namespace"], meta["name"])] = verdict.mean
                verdicts.append((cr, verdict))
        # The gauge shows this poll's figures before any status is written: whoever sees a condition can read
        # the figure behind it.
        self.collector.values = seen
        now = self.wall()
        terminating = cfg.terminate_underutilized and verdicts
        after = go_duration(cfg.terminate_underutilized_after) if terminating else None
        for cr, verdict in verdicts:
            await self._publish(cr, verdict, after, now)
        if self.nodes is not None:
            await self._annotate_nodes(samples)
        live = {cr["metadata"]["uid"] for inf in self.workloads for cr in inf.objects()}
        self.published = {uid: v for uid, v in self.published.items() if uid in live}
        return Result(requeue_after=self.source.interval)

    async def _annotate_nodes(self, samples: list[GpuSample]) -> None:
        """Each GPU node's mean utilisation (all its GPUs, used or not) in its annotation
        ``kaiwo.silogen.ai/gpu-utilization`` as ``<percent>@<RFC 3339 time>`` (what ``kaiwo status amd|nvidia``
        shows), rewritten only when it moves by NODE_STEP points or is NODE_REFRESH seconds old: a node costs a
        write every few minutes at most, and a figure left behind by a stopped monitor shows its age."""
        assert self.nodes is not None
        now = self.wall()
        for node, value in node_means(samples).items():
            live = self.nodes.get_by(node)
            if live is None:
                continue
            old = parse_node_figure((live["metadata"].get("annotations") or {}).get(NODE_ANNOTATION))
            if old is not None and abs(old[0] - value) < NODE_STEP and now - old[1] < NODE_REFRESH:
                continue
            figure = f"{value:g}@{rfc3339(now)}"
            await self.client.patch("v1", "Node", node, {"metadata": {"annotations": {NODE_ANNOTATION: figure}}})

    async def _publish(self, cr: Obj, verdict: Assessment, terminate_after: float | None, now: float) -> None:
        old = cr.get("status") or {}
        prev = condition(cr, CONDITION)
        uid = cr["metadata"]["uid"]
        stamp = rfc3339(now)
        cond = st.condition(
            CONDITION, verdict.low, "GpuUtilizationLow" if verdict.low else "GpuUtilizationNormal", verdict.message
        )
        new = with_condition(old, cond, stamp)
        terminate = verdict.low and terminate_after is not None and termination_due(prev, terminate_after, now)
        if terminate:
            reason = f"GPU utilisation stayed low for at least {terminate_after:g}s: {verdict.message}"
            new = with_condition(
                new,
                st.condition(WorkloadCondition.WORKLOAD_TERMINATED_EARLY, False, "GpuUtilizationLow", reason),
                stamp,
                WorkloadStatus.TERMINATING,
            )
        await self.applier.write_status(cr, new)
        announced = self.published.get(uid, prev.get("status") == "True" if prev else None)
        if announced != verdict.low and (announced is not None or verdict.low):
            if verdict.low:
                await self.events.emit(cr, WorkloadEvent.GPU_UNDERUTILIZED, verdict.message, warning=True)
            else:
                await self.events.emit(cr, WorkloadEvent.GPU_UTILIZATION_NORMAL, verdict.message)
        self.published[uid] = verdict.low
        if terminate:
            await self.events.emit(cr, WorkloadEvent.TERMINATION, new["conditions"][-1]["message"], warning=True)


# --- wiring ------------------------------------------------------------------------------------------------

# A poller: one key that requeues itself, so it runs only while this replica leads.
SPEC = ControllerSpec(
    "resource-monitor",
    (
        Reads(settings.KAIWO_CONFIG_API, "KaiwoConfig"),
        *(Reads(API, k) for k in KINDS),
        Reads("v1", "Pod", selector=RUN_ID_LABEL),
        Reads("v1", "Node"),
    ),
    workers=1,
    seed=(KEY,),
)


async def setup(manager: Manager, source: Source) -> UtilisationMonitor:
    """Register the monitor with ``manager`` (informers shared with the workload controllers)."""

    def monitor(sources: Sources) -> UtilisationMonitor:
        return UtilisationMonitor(
            manager.client,
            source,
            sources["KaiwoConfig"],
            tuple(sources[k] for k in KINDS),
            sources["Pod"],
            registry=manager.metrics.registry,
            nodes=sources["Node"],
        )

    _, reconciler = await build(manager, SPEC, monitor)
    manager.metrics.registry.register(reconciler.collector)
    return reconciler
