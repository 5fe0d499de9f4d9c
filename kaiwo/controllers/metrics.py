"""Kaiwo's own Prometheus metrics (``kaiwo_*``), computed from the informer caches at scrape time.

Read-only views of the shared caches: a scrape costs no API call, and the numbers are always those the
controllers see. Every status has a series (0 when empty), so dashboards and alerts need no ``absent()``.

- ``kaiwo_workloads{kind,status}``: KaiwoJobs/KaiwoServices per status (no status yet counts as NEW);
- ``kaiwo_workload_gpus{kind,status}``: their requested GPUs (``spec.gpus``, else replicas x gpusPerReplica);
- ``kaiwo_workload_oldest_pending_seconds{kind}``: age of the oldest PENDING workload (0 when none);
- ``kaiwo_queueconfig_ready``: 1 when the KaiwoQueueConfig ``kaiwo`` is READY, else 0.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from kaiwo.api.common import WorkloadStatus
from kaiwo.runtime.informer import Informer
from kaiwo.runtime.manager import Manager
from kaiwo.translate.preemption import requested_gpus

Obj = dict[str, Any]
API = "kaiwo.silogen.ai/v1alpha1"
STATUSES = tuple(s.value or "NEW" for s in WorkloadStatus)  # NEW is "" in the API: no status written yet


def _created(obj: Obj) -> float:
    stamp = obj["metadata"].get("creationTimestamp")
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() if stamp else time.time()


class KaiwoCollector(Collector):
    def __init__(
        self, workloads: dict[str, Informer], queue_configs: Informer | None, clock: Callable[[], float] = time.time
    ) -> None:
        self.workloads = workloads  # kind -> informer of that kind
        self.queue_configs = queue_configs
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        count = GaugeMetricFamily("kaiwo_workloads", "Kaiwo workloads by kind and status", labels=["kind", "status"])
        gpus = GaugeMetricFamily(
            "kaiwo_workload_gpus", "GPUs requested by Kaiwo workloads, by kind and status", labels=["kind", "status"]
        )
        pending = GaugeMetricFamily(
            "kaiwo_workload_oldest_pending_seconds",
            "Age of the oldest PENDING Kaiwo workload (0 when none)",
            labels=["kind"],
        )
        now = self.clock()
        for kind, informer in sorted(self.workloads.items()):
            n = dict.fromkeys(STATUSES, 0)
            g = dict.fromkeys(STATUSES, 0)
            oldest = 0.0
            for obj in informer.objects():
                status = (obj.get("status") or {}).get("status") or "NEW"
                n[status] = n.get(status, 0) + 1
                g[status] = g.get(status, 0) + requested_gpus(obj)
                if status == WorkloadStatus.PENDING:
                    oldest = max(oldest, now - _created(obj))
            for status in n:
                count.add_metric([kind, status], n[status])
                gpus.add_metric([kind, status], g[status])
            pending.add_metric([kind], oldest)
        yield from (count, gpus, pending)
        ready = GaugeMetricFamily("kaiwo_queueconfig_ready", "1 when the KaiwoQueueConfig kaiwo is READY, else 0")
        config = self.queue_configs.get_by("kaiwo") if self.queue_configs is not None else None
        ready.add_metric([], int(((config or {}).get("status") or {}).get("status") == "READY"))
        yield ready


async def setup(manager: Manager) -> KaiwoCollector:
    """Register the collector on ``manager``'s registry, over the same shared informers the controllers use."""
    workloads = {kind: await manager.informer(API, kind) for kind in ("KaiwoJob", "KaiwoService")}
    collector = KaiwoCollector(workloads, await manager.informer(API, "KaiwoQueueConfig"))
    manager.metrics.registry.register(collector)
    return collector
