"""Utilisation monitoring against a real HTTP metrics page, with hand-fed caches and a recording client:
the condition flips both ways with one event per change, a steady state costs no write, termination waits for
``terminateUnderutilizedAfter``, ``targetNamespaces`` filters, and a failed read changes nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from kaiwo.api.labels import RUN_ID
from kaiwo.controllers.utilisation import KEY, UtilisationMonitor, assess, termination_due
from kaiwo.gpumetrics.reader import PodUtilization, Source
from kaiwo.runtime.objects import Obj
from tests.builders import KaiwoConfigBuilder, KaiwoJobBuilder, NodeBuilder, PodBuilder
from tests.fakes import RecordingClient, cache

NODE_FIGURE = "kaiwo.silogen.ai/gpu-utilization"
T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z


def statuses(client: RecordingClient) -> list[Obj]:
    return [c.body["status"] for c in client.calls if c.subresource == "status"]


def events(client: RecordingClient) -> list[tuple[str, str]]:
    return [(c.body["reason"], c.body["type"]) for c in client.calls if c.kind == "Event"]


def node_patches(client: RecordingClient) -> list[tuple[str, str]]:
    return [(c.name, c.body["metadata"]["annotations"][NODE_FIGURE]) for c in client.calls if c.kind == "Node"]


def job(name: str, ns: str = "team") -> Obj:
    return KaiwoJobBuilder(name, ns).resource_version("1").phase("RUNNING").status_field("conditions", []).obj()


def pod(name: str, run_id: str, ns: str = "team") -> Obj:
    return PodBuilder(name, ns).label(RUN_ID, run_id).obj()


def config(**monitoring: Any) -> Obj:
    return KaiwoConfigBuilder().spec_field("resourceMonitoring", monitoring).obj()


@pytest.fixture
async def page() -> AsyncIterator[dict[str, Any]]:
    state: dict[str, Any] = {"text": "", "status": 200}

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(text=state["text"], status=state["status"])

    app = web.Application()
    app.add_routes([web.get("/metrics", metrics)])
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    state["url"] = f"http://127.0.0.1:{runner.addresses[0][1]}/metrics"
    yield state
    await runner.cleanup()


def amd(pod_name: str, *values: float, ns: str = "team") -> str:
    return "".join(
        f'gpu_gfx_activity{{gpu_id="{i}",hostname="n",namespace="{ns}",pod="{pod_name}",container="main"}} {v}\n'
        for i, v in enumerate(values)
    )


def make(
    page: dict[str, Any], cfg: Obj, *jobs: Obj, pods: tuple[Obj, ...] = (), nodes: tuple[Obj, ...] = ()
) -> tuple[UtilisationMonitor, RecordingClient, list[float]]:
    clock = [T0]
    jobs_cache = cache(*jobs)
    rec = RecordingClient({"KaiwoJob": jobs_cache, "Node": cache(*nodes)})
    mon = UtilisationMonitor(
        rec,  # type: ignore[arg-type]
        Source((page["url"],), 15.0),
        cache(cfg),
        (jobs_cache,),
        cache(*pods),
        wall=lambda: clock[0],
    )
    mon.nodes = rec.stores["Node"]
    return mon, rec, clock


def underuse(mon: UtilisationMonitor, name: str) -> Obj | None:
    live = mon.workloads[0].get_by(name, "team")
    assert live is not None
    return next((c for c in live["status"]["conditions"] if c["type"] == "ResourceUnderutilization"), None)


def test_assess_any_gpu_below_threshold() -> None:
    assert assess([], 5) is None
    low = assess([PodUtilization("amd", {"0": 90.0, "1": 0.5})], 1)
    assert low is not None and low.low and low.mean == 45.25 and low.message.startswith("1 of 2 GPU(s) below 1%")
    ok = assess([PodUtilization("nvidia", {"0": 1.0})], 1)
    assert ok is not None and not ok.low


def test_termination_due() -> None:
    cond = {"status": "True", "lastTransitionTime": "2023-11-14T22:13:20Z"}
    assert not termination_due(cond, 60, T0 + 59) and termination_due(cond, 60, T0 + 60)
    assert not termination_due({**cond, "status": "False"}, 0, T0) and not termination_due(None, 0, T0)


async def test_flips_both_ways_with_one_event_per_change(page: dict[str, Any]) -> None:
    mon, rec, clock = make(page, config(lowUtilizationThreshold=5), job("a"), pods=(pod("a-0", "uid-a"),))
    page["text"] = amd("a-0", 80, 90)
    assert (await mon.reconcile(KEY)).requeue_after == 15.0
    cond = underuse(mon, "a")
    assert cond is not None and cond["status"] == "False" and cond["reason"] == "GpuUtilizationNormal"
    assert events(rec) == []  # normal from the start is not a change
    assert mon.collector.values == {("KaiwoJob", "team", "a"): 85.0}
    page["text"] = amd("a-0", 80, 91)
    await mon.reconcile(KEY)
    assert len(statuses(rec)) == 1  # same verdict, same message: no write
    page["text"] = amd("a-0", 2, 90)
    clock[0] += 30
    await mon.reconcile(KEY)
    await mon.reconcile(KEY)
    cond = underuse(mon, "a")
    assert cond is not None and cond["status"] == "True" and cond["reason"] == "GpuUtilizationLow"
    assert cond["lastTransitionTime"] == "2023-11-14T22:13:50Z"
    assert events(rec) == [("GpuUnderutilized", "Warning")] and len(statuses(rec)) == 2
    page["text"] = amd("a-0", 50, 90)
    await mon.reconcile(KEY)
    assert underuse(mon, "a")["status"] == "False"  # type: ignore[index]
    assert events(rec) == [("GpuUnderutilized", "Warning"), ("GpuUtilizationNormal", "Normal")]
    assert mon.workloads[0].get_by("a", "team")["status"]["status"] == "RUNNING"  # type: ignore[index]


async def test_terminates_after_the_condition_lasted(page: dict[str, Any]) -> None:
    cfg = config(lowUtilizationThreshold=5, terminateUnderutilized=True, terminateUnderutilizedAfter="60s")
    mon, rec, clock = make(page, cfg, job("a"), pods=(pod("a-0", "uid-a"),))
    page["text"] = amd("a-0", 0)
    await mon.reconcile(KEY)
    clock[0] += 59
    await mon.reconcile(KEY)
    assert mon.workloads[0].get_by("a", "team")["status"]["status"] == "RUNNING"  # type: ignore[index]
    clock[0] += 1
    await mon.reconcile(KEY)
    live = mon.workloads[0].get_by("a", "team")
    assert live is not None and live["status"]["status"] == "TERMINATING"
    why = next(c for c in live["status"]["conditions"] if c["type"] == "WorkloadTerminatedEarly")
    assert why["reason"] == "GpuUtilizationLow" and why["status"] == "False"
    assert [r for r, _ in events(rec)] == ["GpuUnderutilized", "WorkloadTermination"]
    await mon.reconcile(KEY)  # no longer RUNNING: left to the workload controller
    assert len(events(rec)) == 2


async def test_target_namespaces_and_unmatched_pods(page: dict[str, Any]) -> None:
    mon, rec, _ = make(
        page,
        config(targetNamespaces=["other"]),
        job("a"),
        pods=(pod("a-0", "uid-a"),),
    )
    page["text"] = amd("a-0", 0) + amd("stranger", 0)
    await mon.reconcile(KEY)
    assert statuses(rec) == [] and mon.collector.values == {}


async def test_a_failed_read_changes_nothing(page: dict[str, Any]) -> None:
    mon, rec, _ = make(page, config(), job("a"), pods=(pod("a-0", "uid-a"),))
    page["status"] = 500
    assert (await mon.reconcile(KEY)).requeue_after == 15.0
    assert statuses(rec) == [] and mon.read_errors.labels("resource-monitor")._value.get() == 1


async def test_node_figures_are_rewritten_only_when_they_move_or_age(page: dict[str, Any]) -> None:
    mon, rec, clock = make(page, config(), job("a"), pods=(pod("a-0", "uid-a"),), nodes=(NodeBuilder("n").obj(),))
    page["text"] = amd("a-0", 10, 20)
    await mon.reconcile(KEY)
    assert node_patches(rec) == [("n", "15@2023-11-14T22:13:20Z")]
    live = rec.stores["Node"].get_by("n")  # the patch reached the node cache, as the watch would deliver it
    assert live is not None and live["metadata"]["annotations"][NODE_FIGURE] == node_patches(rec)[-1][1]
    page["text"] = amd("a-0", 12, 20)  # moved by 1 point: kept
    clock[0] += 60
    await mon.reconcile(KEY)
    assert len(node_patches(rec)) == 1
    clock[0] += 300  # five minutes old: refreshed
    await mon.reconcile(KEY)
    assert node_patches(rec)[-1] == ("n", "16@2023-11-14T22:19:20Z")
