"""RFC 3339 timestamps as the Kubernetes API writes them, to and from wall-clock epoch seconds.

``metav1.Time`` (conditions, status times, Events' first/last timestamps) is whole seconds in UTC with a ``Z``;
``metav1.MicroTime`` (Lease renew times, Event series) has microseconds. Parsing accepts any RFC 3339 form the
apiserver or a user may send (``Z`` or an offset, any fraction); a timestamp without a zone is taken as UTC.

Pure: callers pass the time (from their injected wall clock), nothing here reads the clock.
"""

from __future__ import annotations

import datetime as dt


def rfc3339(epoch: float) -> str:
    """``metav1.Time``: ``2006-01-02T15:04:05Z``."""
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def rfc3339_micro(epoch: float) -> str:
    """``metav1.MicroTime``: ``2006-01-02T15:04:05.000000Z``."""
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse(stamp: str) -> dt.datetime:
    """An aware datetime (UTC when the timestamp names no zone); ValueError when it is not RFC 3339."""
    parsed = dt.datetime.fromisoformat(stamp)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def epoch(stamp: str) -> float:
    """Epoch seconds of an RFC 3339 timestamp."""
    return parse(stamp).timestamp()
