"""OpenTelemetry tracing: one span per reconcile, a child span per API call, ``traceparent`` sent to the apiserver.

Configuration is the OpenTelemetry SDK's standard environment (the same variables every SDK reads):
- ``OTEL_SDK_DISABLED=true``: no tracing at all (no provider is installed; spans are no-ops);
- ``OTEL_TRACES_EXPORTER``: comma-separated ``otlp``, ``console``, ``none`` (default ``otlp``). ``otlp`` exports
  only when an endpoint is configured (``OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT``) or ``otlp`` is named explicitly
  (then the SDK's default endpoint applies): an operator in a cluster without a collector should not log export
  errors for ever. Unknown names are logged and ignored;
- ``OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL``: ``http/protobuf`` (default) or ``grpc``; ``http/json`` is not
  implemented by the Python SDK and falls back to ``http/protobuf`` with a warning;
- endpoints, headers, timeout, compression, certificates (``OTEL_EXPORTER_OTLP_[TRACES_]*``), the batch
  processor (``OTEL_BSP_*``), the sampler (``OTEL_TRACES_SAMPLER[_ARG]``), resource attributes
  (``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_SERVICE_NAME``) and propagators (``OTEL_PROPAGATORS``) are read by the SDK
  itself, so they behave exactly as documented by OpenTelemetry.
Span names stay low-cardinality (``GET /apis/batch/v1/namespaces/{namespace}/jobs/{name}``, ``reconcile
kaiwojob``); the object's namespace and name are attributes. Without any exporter spans are still made: their
ids appear in the logs.
"""

from __future__ import annotations

import logging
import os
from collections.abc import MutableMapping
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SimpleSpanProcessor, SpanExporter

log = logging.getLogger(__name__)
TRACER_NAME = "kaiwo.runtime"
PROTOCOLS = ("http/protobuf", "grpc")


def tracer() -> trace.Tracer:
    return trace.get_tracer(TRACER_NAME)


def _env(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip()


def sdk_disabled() -> bool:
    return _env("OTEL_SDK_DISABLED").lower() == "true"


def exporter_names() -> list[str]:
    return [n.strip().lower() for n in _env("OTEL_TRACES_EXPORTER", "otlp").split(",") if n.strip()]


def otlp_protocol() -> str:
    protocol = _env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or _env("OTEL_EXPORTER_OTLP_PROTOCOL") or "http/protobuf"
    if protocol not in PROTOCOLS:
        log.warning("OTLP protocol %r is not supported here: using http/protobuf", protocol)
        return "http/protobuf"
    return protocol


def otlp_exporter() -> SpanExporter:
    """The OTLP span exporter of the configured protocol; it reads endpoint, headers etc. from the environment."""
    if otlp_protocol() == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        return GrpcExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

    return HttpExporter()


def exporters() -> list[tuple[str, SpanExporter]]:
    """(name, exporter) for every exporter the environment asks for."""
    names = exporter_names()
    explicit = "OTEL_TRACES_EXPORTER" in os.environ
    endpoint = _env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or _env("OTEL_EXPORTER_OTLP_ENDPOINT")
    chosen: list[tuple[str, SpanExporter]] = []
    for name in dict.fromkeys(names):
        if name == "none":
            return []
        if name == "otlp" and (endpoint or explicit):
            chosen.append((name, otlp_exporter()))
        elif name == "console":
            chosen.append((name, ConsoleSpanExporter()))
        elif name != "otlp":
            log.warning("unknown OTEL_TRACES_EXPORTER %r ignored (supported: otlp, console, none)", name)
    return chosen


def setup_tracing(service_name: str, extra_processor: SpanProcessor | None = None) -> TracerProvider | None:
    """Install the global tracer provider as the environment says; None when ``OTEL_SDK_DISABLED=true``."""
    if sdk_disabled():
        return None
    # Resource.create merges OTEL_RESOURCE_ATTRIBUTES; OTEL_SERVICE_NAME wins over the default name.
    provider = TracerProvider(resource=Resource.create({"service.name": _env("OTEL_SERVICE_NAME") or service_name}))
    for name, exporter in exporters():
        # The console is for people watching: print each span as it ends rather than in batches.
        provider.add_span_processor(
            SimpleSpanProcessor(exporter) if name == "console" else BatchSpanProcessor(exporter)
        )
    if extra_processor:
        provider.add_span_processor(extra_processor)
    trace.set_tracer_provider(provider)
    return provider


# --- API calls ------------------------------------------------------------------------------------------------


def api_call(method: str, path: str) -> tuple[str, dict[str, Any]]:
    """(span name, attributes) of an API request: the path with namespace and name replaced by placeholders
    (so span names stay few), the real ones as attributes."""
    bare = path.split("?", 1)[0]
    attrs: dict[str, Any] = {"http.request.method": method, "url.path": bare}
    parts = bare.strip("/").split("/")
    width = {"api": 2, "apis": 3}.get(parts[0])
    if width is None or len(parts) <= width:
        return f"{method} {bare}", attrs
    route, rest = parts[:width], parts[width:]
    if rest[0] == "namespaces" and len(rest) >= 3:  # /namespaces/NS/RESOURCE[/NAME[/SUB...]]
        attrs["k8s.namespace.name"] = rest[1]
        route += ["namespaces", "{namespace}"]
        rest = rest[2:]
    attrs["k8s.resource"] = rest[0]
    route.append(rest[0])
    if len(rest) > 1:
        attrs["k8s.object.name"] = rest[1]
        route += ["{name}", *rest[2:]]
    return f"{method} /{'/'.join(route)}", attrs


def inject(headers: MutableMapping[str, str]) -> None:
    """Add the current span's W3C ``traceparent`` (and baggage) to outgoing headers, so the apiserver's own
    spans join the operator's trace (propagators from ``OTEL_PROPAGATORS``).

    The trace flags keep only the ``sampled`` bit: the Python SDK also sets the Trace Context Level 2 ``random``
    bit (flags ``03``), and receivers implementing Level 1 strictly - the OpenTelemetry Go SDK in
    kube-apiserver 1.35 among them - reject a version-00 header with any other flag and start a trace of their
    own."""
    propagate.inject(headers)
    parent = headers.get("traceparent")
    if parent and len(parent) == 55 and parent.startswith("00-"):
        headers["traceparent"] = f"{parent[:53]}{int(parent[53:], 16) & 0x01:02x}"


def reconcile_attributes(controller: str, namespace: str | None, name: str, reconcile_id: str) -> dict[str, Any]:
    """Attributes of a reconcile span (named ``reconcile <controller>``): what is reconciled, in OpenTelemetry's
    Kubernetes names where they exist."""
    attrs: dict[str, Any] = {
        "controller": controller,
        "k8s.object.name": name,
        "reconcileID": reconcile_id,
        # The same, as before (dashboards and queries written against these keep working).
        "namespace": namespace or "",
        "name": name,
    }
    if namespace:
        attrs["k8s.namespace.name"] = namespace
    return attrs
