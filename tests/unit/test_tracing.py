"""The standard OTEL_* environment -> exporters, and low-cardinality API span names with traceparent."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter

from kaiwo.runtime import tracing

OTEL_VARS = (
    "OTEL_SDK_DISABLED",
    "OTEL_TRACES_EXPORTER",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in OTEL_VARS:
        monkeypatch.delenv(name, raising=False)


def kinds() -> list[type]:
    return [type(e) for _, e in tracing.exporters()]


def test_no_endpoint_no_export_unless_otlp_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    assert kinds() == []
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    assert kinds() == [HttpExporter]


def test_protocols_and_console(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    assert kinds() == [GrpcExporter]
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf")  # the signal's own wins
    assert kinds() == [HttpExporter]
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json")  # not in the Python SDK: fallback
    assert kinds() == [HttpExporter]
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console,otlp")
    assert kinds() == [ConsoleSpanExporter, HttpExporter]
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console,none")
    assert kinds() == []


def test_sdk_disabled_installs_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert tracing.setup_tracing("x") is None
    monkeypatch.setenv("OTEL_SDK_DISABLED", "false")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    assert isinstance(tracing.setup_tracing("x"), TracerProvider)


@pytest.mark.parametrize(
    ("path", "name", "ns", "obj"),
    [
        (
            "/apis/batch/v1/namespaces/team/jobs/train",
            "GET /apis/batch/v1/namespaces/{namespace}/jobs/{name}",
            "team",
            "train",
        ),
        (
            "/apis/kaiwo.silogen.ai/v1alpha1/namespaces/t/kaiwojobs/j/status",
            "GET /apis/kaiwo.silogen.ai/v1alpha1/namespaces/{namespace}/kaiwojobs/{name}/status",
            "t",
            "j",
        ),
        ("/api/v1/namespaces/team/pods?labelSelector=a", "GET /api/v1/namespaces/{namespace}/pods", "team", None),
        ("/api/v1/namespaces/team", "GET /api/v1/namespaces/{name}", None, "team"),
        ("/api/v1/nodes", "GET /api/v1/nodes", None, None),
        ("/version", "GET /version", None, None),
    ],
)
def test_api_span_names_are_routes(path: str, name: str, ns: str | None, obj: str | None) -> None:
    got, attrs = tracing.api_call("GET", path)
    assert got == name
    assert attrs.get("k8s.namespace.name") == ns and attrs.get("k8s.object.name") == obj
    assert attrs["url.path"] == path.split("?")[0]


def test_inject_writes_the_current_span_as_traceparent() -> None:
    provider = TracerProvider()
    with provider.get_tracer("t").start_as_current_span("s") as span:
        headers: dict[str, str] = {}
        tracing.inject(headers)
    ctx = span.get_span_context()
    assert headers["traceparent"] == f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-01"  # Level 1 flags only
    assert trace.get_current_span().get_span_context().is_valid is False
