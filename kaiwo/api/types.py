"""Scalar types with Kubernetes formats: quantities, durations, names, label keys and values, timestamps.

Each type validates in Python and produces the same check in the CRD (an OpenAPI ``pattern`` or limit), so a
value the apiserver accepts is accepted by the models and the other way round. Patterns are ECMA-262 and
Python compatible (no flags, no look-around), as the apiserver requires.

- Quantities (``resource.Quantity``) are non-negative: every quantity in these APIs is a size, a request or a
  quota. ``Quantity`` is int-or-string (``x-kubernetes-int-or-string``) like Kubernetes' own fields;
  ``QuantityString`` is for fields upstream Kaiwo declares as plain strings (``storageSize``, ``headPodMemory``).
- ``Duration`` is a Go ``time.Duration`` string (what ``metav1.Duration`` parses): ``90s``, ``1h30m``, ``1.5h``.
- ``Time`` is ``metav1.Time``: RFC 3339 in UTC, written with second precision (``2025-01-31T12:00:00Z``).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, Field, PlainSerializer, WithJsonSchema

from kaiwo.runtime.timestamps import rfc3339

QUANTITY_PATTERN = (
    r"^\+?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
DURATION_PATTERN = r"^(0|(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+)$"
DNS1123_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS1123_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
QUALIFIED_NAME_PATTERN = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
)
LABEL_VALUE_PATTERN = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
CONDITION_REASON_PATTERN = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"


_QUANTITY = re.compile(QUANTITY_PATTERN)


def _quantity(value: int | str) -> int | str:
    if isinstance(value, int):
        if value < 0:
            raise ValueError("must not be negative")
    elif not _QUANTITY.match(value):
        raise ValueError(f"{value!r} is not a non-negative Kubernetes quantity (e.g. 4, 500m, 16Gi)")
    return value


Quantity = Annotated[
    int | str,
    AfterValidator(_quantity),
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "x-kubernetes-int-or-string": True,
            "pattern": QUANTITY_PATTERN,
            "minimum": 0,
        }
    ),
]
"""A non-negative resource quantity, as a number or a string: ``2``, ``500m``, ``16Gi``."""

QuantityString = Annotated[str, Field(pattern=QUANTITY_PATTERN)]
"""A non-negative resource quantity written as a string: ``10Gi``."""

Duration = Annotated[str, Field(pattern=DURATION_PATTERN)]
"""A Go duration: ``30s``, ``5m``, ``1h30m``, ``1.5h``; ``0`` means zero."""

DnsLabel = Annotated[str, Field(min_length=1, max_length=63, pattern=DNS1123_LABEL_PATTERN)]
"""A DNS-1123 label (namespaces, volume names): lowercase letters, digits and '-', at most 63 characters."""

DnsSubdomain = Annotated[str, Field(min_length=1, max_length=253, pattern=DNS1123_SUBDOMAIN_PATTERN)]
"""A DNS-1123 subdomain (object names): lowercase letters, digits, '-' and '.', at most 253 characters."""

QueueName = Annotated[str, Field(min_length=1, max_length=63, pattern=DNS1123_SUBDOMAIN_PATTERN)]
"""A Kueue object name that also goes into a label value (queue and priority-class labels): at most 63."""

QualifiedName = Annotated[str, Field(min_length=1, max_length=316, pattern=QUALIFIED_NAME_PATTERN)]
"""A label key or resource name such as ``kubernetes.io/hostname`` or ``amd.com/gpu``."""

LabelValue = Annotated[str, Field(max_length=63, pattern=LABEL_VALUE_PATTERN)]
"""A label value: at most 63 characters, alphanumeric at both ends, '-', '_' and '.' inside."""


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


Time = Annotated[
    datetime,
    AfterValidator(_utc),
    PlainSerializer(lambda value: rfc3339(value.timestamp()), return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]
"""A timestamp (``metav1.Time``); naive datetimes are taken as UTC."""


def now() -> datetime:
    """The current time, truncated to what ``Time`` stores (whole seconds, UTC)."""
    return datetime.now(UTC).replace(microsecond=0)


Embedded = Annotated[
    dict[str, Any],
    WithJsonSchema({"type": "object", "x-kubernetes-preserve-unknown-fields": True}),
]
"""An embedded Kubernetes object kept as a dict (the apiserver stores it without pruning or validation;
the child object made from it is validated when it is created)."""
