"""The administrators' Grafana dashboard names only metrics that really exist: every metric in every query of
charts/kaiwo/dashboards/kaiwo-admin.json is exported by the operator, scraped here from a running operator (all
controllers and the metrics collectors, in this process) after a KaiwoJob went through it."""

from __future__ import annotations

import asyncio
import json
import re
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from kaiwo.controllers import metrics, queueconfig, workload
from kaiwo.runtime.client import Client
from kaiwo.runtime.manager import Manager, ManagerOptions
from tests.e2e.conftest import render_chart
from tests.e2e.helpers import API, eventually, http_ok

DASHBOARD = Path(__file__).resolve().parents[2] / "charts" / "kaiwo" / "dashboards" / "kaiwo-admin.json"
PROMQL_WORDS = {
    "sum", "max", "min", "avg", "count", "by", "without", "rate", "irate", "increase", "histogram_quantile",
    "or", "and", "unless", "vector", "on", "ignoring", "group_left", "group_right", "bool", "offset", "le",
}  # fmt: skip


def dashboard_metrics() -> set[str]:
    """Metric names in the dashboard's queries: identifiers outside label matchers, grouping clauses and ranges
    that are not PromQL functions or keywords."""
    names = set()
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        for target in panel["targets"]:
            expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", target["expr"])
            expr = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", " ", expr)
            names |= {w for w in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr) if w not in PROMQL_WORDS}
    return names


def exported(text: str) -> set[str]:
    """Series names a Prometheus exposition offers: its samples, and the series of every declared family (a
    family with no series yet, e.g. errors while there are none, is still exported)."""
    names = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "summary": ("_sum", "_count")}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            names |= {name, *(name + s for s in suffixes.get(kind, ()))}
    return names


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
async def operator_metrics(kubeconfig: str, kaiwo_crds: None) -> AsyncIterator[str]:
    address, health = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    async with await Client.from_kubeconfig(kubeconfig) as mgr_client:
        mgr = Manager(mgr_client, ManagerOptions(health_address=health, metrics_address=address))
        await queueconfig.setup(mgr)
        for kind in ("KaiwoJob", "KaiwoService"):
            await workload.setup(mgr, kind)
        await metrics.setup(mgr)
        stop = asyncio.Event()
        task = asyncio.create_task(mgr.run(stop))
        # Ready means the caches are synced: a workload created later is a new one, whose latency is measured.
        await eventually(lambda: http_ok(f"http://{health}/readyz"), "the operator ready", timeout=60)
        try:
            yield f"http://{address}/metrics"
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)


async def scrape(url: str) -> str:
    async with aiohttp.ClientSession() as http, http.get(url) as r:
        return await r.text() if r.status == 200 else ""


async def test_every_dashboard_query_names_an_exported_metric(
    client: Client, namespace: str, operator_metrics: str
) -> None:
    wanted = dashboard_metrics()
    assert {"kaiwo_clusterqueue_workloads", "controller_runtime_reconcile_total"} <= wanted  # the parser works
    job = {
        "apiVersion": API,
        "kind": "KaiwoJob",
        "metadata": {"name": "measured", "namespace": namespace},
        "spec": {"image": "busybox:1.36", "entrypoint": "echo hi", "gpus": 1},
    }
    await client.create(job)
    await eventually(lambda: client.get_or_none("batch/v1", "Job", "measured", namespace), "Job measured")

    async def all_there() -> set[str] | None:
        names = exported(await scrape(operator_metrics))
        # Histograms are queried by their _bucket series; all the rest by name.
        return names if wanted <= names else None

    try:
        await eventually(all_there, "every dashboard metric in the operator's /metrics", timeout=30)
    except AssertionError:
        missing = wanted - exported(await scrape(operator_metrics))
        raise AssertionError(f"the dashboard queries metrics nobody exports: {sorted(missing)}") from None

    async def latency_observed() -> bool:
        text = await scrape(operator_metrics)
        return bool(re.search(r'kaiwo_workload_child_create_seconds_count\{kind="KaiwoJob"\} [1-9]', text))

    await eventually(latency_observed, "the create->child latency of the KaiwoJob observed", timeout=10)
    text = await scrape(operator_metrics)
    assert re.search(r'kaiwo_nodepool_gpus\{node_pool="[^"]+",state="allocatable",vendor="amd"\} [1-9]', text), text


def test_chart_ships_the_dashboard_for_grafanas_sidecar() -> None:
    (cm,) = [o for o in render_chart() if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("-dashboard")]
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(cm["data"]["kaiwo-admin.json"]) == json.loads(DASHBOARD.read_text())
    off = render_chart("--set", "grafanaDashboard.enabled=false")
    assert not [o for o in off if o["metadata"]["name"].endswith("-dashboard")]
