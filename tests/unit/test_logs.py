import logging

import orjson
from opentelemetry.sdk.trace import TracerProvider

from kaiwo.runtime.logs import JsonFormatter, log_context


def test_json_lines_carry_reconcile_context_and_trace_id() -> None:
    record = logging.LogRecord("kaiwo.test", logging.INFO, __file__, 1, "applied %s", ("Job",), None)
    tracer = TracerProvider().get_tracer("t")
    with (
        tracer.start_as_current_span("reconcile") as span,
        log_context(controller="kaiwojob", namespace="ns", name="train", reconcileID="r-1"),
    ):
        line = JsonFormatter().format(record)
    entry = orjson.loads(line)
    assert entry["msg"] == "applied Job" and entry["level"] == "info" and entry["logger"] == "kaiwo.test"
    assert (entry["controller"], entry["namespace"], entry["name"], entry["reconcileID"]) == (
        "kaiwojob",
        "ns",
        "train",
        "r-1",
    )
    assert entry["trace_id"] == format(span.get_span_context().trace_id, "032x")
    outside = orjson.loads(JsonFormatter().format(record))
    assert "controller" not in outside and "trace_id" not in outside
