"""kaiwo_* metrics from the caches: every status has a series, GPUs and the oldest pending age are right."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

from kaiwo.controllers.metrics import STATUSES, KaiwoCollector
from kaiwo.runtime.objects import Obj
from kaiwo.translate.preemption import requested_gpus
from tests.builders import KaiwoJobBuilder, KaiwoQueueConfigBuilder
from tests.fakes import cache

NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def workload(name: str, status: str | None, created: str, **spec: Any) -> Obj:
    job = KaiwoJobBuilder(name, "team").created(created)
    for key, value in spec.items():
        job.spec_field(key, value)
    return (job.phase(status) if status else job).obj()


def queue_config(status: str) -> Obj:
    return KaiwoQueueConfigBuilder().status_field("status", status).obj()


def scrape(collector: KaiwoCollector) -> dict[str, float]:
    registry = CollectorRegistry()
    registry.register(collector)
    lines = generate_latest(registry).decode().splitlines()
    return {name: float(value) for name, value in (line.split() for line in lines if not line.startswith("#"))}


def test_counts_gpus_and_oldest_pending() -> None:
    jobs = cache(
        workload("a", "PENDING", "2025-12-31T23:50:00Z", gpus=8),
        workload("b", "PENDING", "2025-12-31T23:59:00Z", replicas=2, gpusPerReplica=4),
        workload("c", "RUNNING", "2025-12-31T23:00:00Z", gpus=16),
        workload("d", None, "2025-12-31T23:59:59Z"),
    )
    services = cache()
    configs = cache(queue_config("READY"))
    m = scrape(KaiwoCollector({"KaiwoJob": jobs, "KaiwoService": services}, configs, clock=lambda: NOW))
    assert m['kaiwo_workloads{kind="KaiwoJob",status="PENDING"}'] == 2
    assert m['kaiwo_workloads{kind="KaiwoJob",status="RUNNING"}'] == 1
    assert m['kaiwo_workloads{kind="KaiwoJob",status="NEW"}'] == 1  # no status yet
    assert m['kaiwo_workload_gpus{kind="KaiwoJob",status="PENDING"}'] == 16
    assert m['kaiwo_workload_gpus{kind="KaiwoJob",status="RUNNING"}'] == 16
    assert m['kaiwo_workload_oldest_pending_seconds{kind="KaiwoJob"}'] == 600
    assert m['kaiwo_workload_oldest_pending_seconds{kind="KaiwoService"}'] == 0
    for status in STATUSES:  # empty statuses are 0, not missing
        assert m[f'kaiwo_workloads{{kind="KaiwoService",status="{status}"}}'] == 0
    assert m["kaiwo_queueconfig_ready"] == 1


def test_queue_config_not_ready_or_missing_is_zero() -> None:
    failed = cache(queue_config("FAILED"))
    assert scrape(KaiwoCollector({}, failed))["kaiwo_queueconfig_ready"] == 0
    assert scrape(KaiwoCollector({}, cache()))["kaiwo_queueconfig_ready"] == 0


def test_requested_gpus() -> None:
    assert requested_gpus({}) == 0
    assert requested_gpus({"spec": {"gpus": 4}}) == 4
    assert requested_gpus({"spec": {"gpusPerReplica": 8}}) == 8  # replicas unset means 1
    assert requested_gpus({"spec": {"replicas": 3, "gpusPerReplica": 2}}) == 6
    assert requested_gpus({"spec": {"replicas": 3, "gpusPerReplica": 2, "gpus": 6}}) == 6
