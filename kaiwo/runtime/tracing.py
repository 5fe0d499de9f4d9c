"""OpenTelemetry tracing: one span per reconcile, child spans per API call.

Export follows the standard environment: with ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) set and ``OTEL_TRACES_EXPORTER`` not ``none``, spans go to that OTLP/HTTP
collector (Jaeger accepts OTLP on :4318). Without it spans are still made - their ids appear in the logs - but
nothing is exported.
"""

from __future__ import annotations

import os

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

TRACER_NAME = "kaiwo.runtime"


def tracer() -> trace.Tracer:
    return trace.get_tracer(TRACER_NAME)


def setup_tracing(service_name: str, extra_processor: SpanProcessor | None = None) -> TracerProvider:
    provider = TracerProvider(
        resource=Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", service_name)})
    )
    exporter_wanted = os.environ.get("OTEL_TRACES_EXPORTER", "otlp") != "none"
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if exporter_wanted and endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    if extra_processor:
        provider.add_span_processor(extra_processor)
    trace.set_tracer_provider(provider)
    return provider
