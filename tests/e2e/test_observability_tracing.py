"""Traces end to end: the operator (a real ``python -m kaiwo.manager`` process, configured only by OTEL_*
variables) exports to the local cluster's Jaeger, and the kube-apiserver adds its own spans to the same trace
because the operator sends ``traceparent``. Everything is checked through Jaeger's query API.

Jaeger runs as the local cluster's ``jaeger`` addon when the cluster was started with it; otherwise this module
starts the same binary (built from its Go module) with the same configuration on the ports the cluster reserved
for it, which the apiserver's tracing configuration already names.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import yaml
from opentelemetry import context as otel_context
from opentelemetry import trace as otel_trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from kaiwo.devcluster import controllers
from kaiwo.devcluster.build import ensure_binaries
from kaiwo.devcluster.cluster import DevCluster
from kaiwo.devcluster.components import Ports
from kaiwo.runtime.client import Client
from kaiwo.runtime.objects import Obj
from tests.e2e.helpers import API, eventually, http_ok


async def apiserver_reports(client: Client, ui: str) -> bool:
    """Send one request in a sampled trace; True once Jaeger knows the apiserver as a service (its spans arrived)."""
    parent = SpanContext(secrets.randbits(128) | 1, secrets.randbits(64) | 1, False, TraceFlags(TraceFlags.SAMPLED))
    token = otel_context.attach(otel_trace.set_span_in_context(NonRecordingSpan(parent)))
    try:
        await client.get("v1", "Namespace", "default")  # its traceparent names the sampled parent
    finally:
        otel_context.detach(token)
    async with aiohttp.ClientSession() as http, http.get(f"{ui}/api/services") as r:
        return r.status == 200 and "apiserver" in (orjson.loads(await r.read()).get("data") or [])


@pytest.fixture(scope="module")
async def jaeger(
    dev_cluster: DevCluster | None, tmp_path_factory: pytest.TempPathFactory, client: Client
) -> AsyncIterator[dict[str, str]]:
    if dev_cluster is None:
        pytest.skip("needs the local cluster: its apiserver's tracing configuration and Jaeger's reserved ports")
    ports = dev_cluster.status().data["ports"]
    endpoints = controllers.jaeger_endpoints(ports)
    proc = None
    if not await http_ok(f"{endpoints['ui']}/api/services"):
        binary = ensure_binaries(["jaeger"])["jaeger"]
        folder = tmp_path_factory.mktemp("jaeger")
        config = folder / "config.yaml"
        config.write_text(yaml.safe_dump(controllers.jaeger_config(Ports(**ports))))
        proc = spawn([str(binary), f"--config={config}"], folder / "jaeger.log")
        await eventually(lambda: http_ok(f"{endpoints['ui']}/api/services"), "Jaeger's query API", timeout=60)
    try:
        # The apiserver's OTLP exporter has been redialling a Jaeger that was not there (gRPC backs off up to
        # 120 s between attempts): the tests start once its spans really arrive.
        await eventually(
            lambda: apiserver_reports(client, endpoints["ui"]),
            "the apiserver's spans in Jaeger",
            timeout=180,
            interval=2,
        )
        yield endpoints
    finally:
        if proc is not None:
            stop(proc)


def spawn(argv: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, and SIGKILL after 5 s (Jaeger drains open gRPC streams, e.g. the apiserver's, for long)."""
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def operator_process(kubeconfig: str, log: Path, otel: dict[str, str]) -> AsyncIterator[None]:
    """``python -m kaiwo.manager`` with only the given OTEL_* variables (none inherited), debug JSON logs."""
    health = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")} | otel
    argv = [
        sys.executable,
        "-m",
        "kaiwo.manager",
        f"--kubeconfig={kubeconfig}",
        "--no-leader-elect",
        "--metrics-bind-address=0",
        f"--health-probe-bind-address=127.0.0.1:{health}",
        "--log-level=debug",
        "--log-format=json",
    ]
    proc = spawn(argv, log, env)
    try:
        await eventually(lambda: http_ok(f"http://127.0.0.1:{health}/readyz"), "the operator ready", timeout=60)
        yield
    finally:
        stop(proc)


async def submit_and_wait_for_child(client: Client, ns: str, name: str) -> None:
    job = {
        "apiVersion": API,
        "kind": "KaiwoJob",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"image": "busybox:1.36", "entrypoint": "echo traced"},
    }
    await client.create(job)
    await eventually(lambda: client.get_or_none("batch/v1", "Job", name, ns), f"Job {name}", timeout=30)


def tags(span: Obj) -> dict[str, Any]:
    return {t["key"]: t["value"] for t in span.get("tags") or []}


async def traces(ui: str, service: str, operation: str) -> list[Obj]:
    params = {"service": service, "operation": operation, "limit": "100", "lookback": "1h"}
    async with aiohttp.ClientSession() as http, http.get(f"{ui}/api/traces", params=params) as r:
        if r.status != 200:
            return []
        data: list[Obj] = orjson.loads(await r.read()).get("data") or []
        return data


def reconcile_with_children(trace: Obj, ns: str, name: str) -> Obj | None:
    """The trace's reconcile span of ns/name when it holds the Job's create call and the apiserver's spans."""
    spans = trace["spans"]
    services = {pid: p["serviceName"] for pid, p in trace["processes"].items()}
    reconcile = next(
        (
            s
            for s in spans
            if s["operationName"] == "reconcile kaiwojob"
            and tags(s).get("k8s.namespace.name") == ns
            and tags(s).get("k8s.object.name") == name
            and tags(s).get("kaiwo.kind") == "KaiwoJob"
        ),
        None,
    )
    if reconcile is None:
        return None
    children = [s for s in spans if any(r["spanID"] == reconcile["spanID"] for r in s.get("references") or [])]
    # The Job is made by server-side apply (PATCH); a POST would be a create.
    job_calls = (
        "PATCH /apis/batch/v1/namespaces/{namespace}/jobs/{name}",
        "POST /apis/batch/v1/namespaces/{namespace}/jobs",
    )
    creates = [s for s in children if s["operationName"] in job_calls]
    apiserver = [s for s in spans if services.get(s["processID"]) == "apiserver"]
    # The apiserver's span of the create is a child of the operator's API-call span (traceparent).
    joined = [
        s for s in apiserver if any(r["spanID"] in {c["spanID"] for c in creates} for r in s.get("references") or [])
    ]
    etcd = [s for s in apiserver if "etcd" in s["operationName"].lower()]
    if not creates or not joined or not etcd:
        return None
    return {"trace": trace, "reconcile": reconcile, "create": creates[0], "apiserver": apiserver}


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
async def test_reconcile_trace_reaches_jaeger_with_apiserver_spans(
    protocol: str,
    client: Client,
    namespace: str,
    kubeconfig: str,
    kaiwo_crds: None,
    jaeger: dict[str, str],
    tmp_path: Path,
) -> None:
    service = f"kaiwo-e2e-{protocol.split('/')[0]}-{secrets.token_hex(2)}"
    otel = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": jaeger["otlp_grpc" if protocol == "grpc" else "otlp_http"],
        "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
        "OTEL_SERVICE_NAME": service,
        "OTEL_BSP_SCHEDULE_DELAY": "200",
    }
    log = tmp_path / "operator.log"
    async with operator_process(kubeconfig, log, otel):
        await submit_and_wait_for_child(client, namespace, "traced")

        async def found() -> Obj | None:
            for t in await traces(jaeger["ui"], service, "reconcile kaiwojob"):
                if hit := reconcile_with_children(t, namespace, "traced"):
                    return hit
            return None

        hit = await eventually(found, f"the reconcile trace of {namespace}/traced in Jaeger", timeout=30, interval=1)
    create = tags(hit["create"])
    assert create["k8s.namespace.name"] == namespace and create["k8s.object.name"] == "traced"
    assert create["http.response.status_code"] in (200, 201)
    trace_id = hit["trace"]["traceID"]
    lines = [orjson.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    logged = [
        e
        for e in lines
        if e.get("trace_id", "").endswith(trace_id) and e.get("name") == "traced" and e.get("namespace") == namespace
    ]
    assert logged, f"no log line of the reconcile with trace id {trace_id}"


async def test_sdk_disabled_exports_nothing_and_logs_no_trace_ids(
    client: Client, namespace: str, kubeconfig: str, kaiwo_crds: None, jaeger: dict[str, str], tmp_path: Path
) -> None:
    service = f"kaiwo-e2e-disabled-{secrets.token_hex(2)}"
    otel = {
        "OTEL_SDK_DISABLED": "true",
        "OTEL_EXPORTER_OTLP_ENDPOINT": jaeger["otlp_http"],
        "OTEL_TRACES_EXPORTER": "otlp,console",
        "OTEL_SERVICE_NAME": service,
        "OTEL_BSP_SCHEDULE_DELAY": "200",
    }
    log = tmp_path / "operator.log"
    async with operator_process(kubeconfig, log, otel):
        await submit_and_wait_for_child(client, namespace, "untraced")
    lines = [orjson.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    reconciled = [e for e in lines if e.get("name") == "untraced" and e.get("msg") == "reconciled"]
    assert reconciled and not any("trace_id" in e for e in reconciled)
    assert not any('"name": "reconcile' in line for line in log.read_text().splitlines())  # no console spans
    async with aiohttp.ClientSession() as http, http.get(f"{jaeger['ui']}/api/services") as r:
        assert service not in (orjson.loads(await r.read()).get("data") or [])
