"""Kubernetes Events about the objects a controller manages (core/v1, as `kubectl describe` shows them).

Controllers emit an event on a real transition only, never one per reconcile. A failed emit is logged and
ignored: events are best effort and must never fail a reconcile.

Repeats are aggregated as client-go's recorder does: an event identical to an earlier one (same object, type,
reason and message) is not created again; the earlier Event is patched instead, its ``count`` incremented,
``lastTimestamp`` moved and its ``series`` (count, last observed time) updated, so a flapping condition shows
as one line "x12 over 3m". A per-object token bucket (``BURST`` events, then one per ``REFILL_SECONDS``)
drops floods, as client-go's spam filter does.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from kaiwo.runtime.client import ApiError, Client
from kaiwo.runtime.clock import Clock, RealClock
from kaiwo.runtime.objects import Obj
from kaiwo.runtime.timestamps import rfc3339, rfc3339_micro

log = logging.getLogger(__name__)
CACHE_SIZE = 4096  # remembered distinct events (client-go: 4096)
BURST, REFILL_SECONDS = 25, 300.0  # per involved object (client-go's spam filter defaults)


@dataclass
class _Seen:
    name: str
    namespace: str
    count: int


@dataclass
class _Bucket:
    tokens: float
    at: float


class EventRecorder:
    def __init__(
        self, client: Client, component: str, *, clock: Clock | None = None, wall: Callable[[], float] = time.time
    ) -> None:
        self.client = client
        self.component = component
        self.clock: Clock = clock or RealClock()  # refills the spam filter's buckets
        self.wall = wall  # wall-clock epoch seconds: the Events' timestamps
        self._seen: OrderedDict[tuple[str, ...], _Seen] = OrderedDict()
        self._buckets: dict[str, _Bucket] = {}
        self.dropped = 0  # events the spam filter dropped (observability and tests)

    def _allow(self, uid: str) -> bool:
        now = self.clock.now()
        b = self._buckets.get(uid) or _Bucket(float(BURST), now)
        b.tokens = min(float(BURST), b.tokens + (now - b.at) / REFILL_SECONDS)
        b.at = now
        self._buckets[uid] = b
        if len(self._buckets) > CACHE_SIZE:
            del self._buckets[next(iter(self._buckets))]
        if b.tokens < 1:
            return False
        b.tokens -= 1
        return True

    async def emit(self, obj: Obj, reason: str, message: str, *, warning: bool = False) -> None:
        meta = obj["metadata"]
        message = message[:1024]
        kind = "Warning" if warning else "Normal"
        uid = str(meta.get("uid") or f"{meta.get('namespace')}/{meta['name']}")
        key = (obj["kind"], uid, kind, reason, message)
        if not self._allow(uid):
            self.dropped += 1
            return
        seen = self._seen.get(key)
        try:
            if seen is not None and await self._repeat(seen):
                self._seen.move_to_end(key)
                return
            created = await self.client.create(self._event(obj, reason, message, kind))
        except Exception as e:  # best effort
            log.warning("could not record event %s on %s: %s", reason, meta["name"], e)
            return
        made = (created or {}).get("metadata") or {}
        if not made.get("name"):
            return
        self._seen[key] = _Seen(made["name"], made.get("namespace") or "default", 1)
        if len(self._seen) > CACHE_SIZE:
            self._seen.popitem(last=False)

    async def _repeat(self, seen: _Seen) -> bool:
        """Count one more occurrence on the existing Event; False if it is gone (Events expire after an hour)."""
        count, now = seen.count + 1, self.wall()
        try:
            await self.client.patch(
                "v1",
                "Event",
                seen.name,
                {
                    "count": count,
                    "lastTimestamp": rfc3339(now),
                    "series": {"count": count, "lastObservedTime": rfc3339_micro(now)},
                },
                seen.namespace,
            )
        except ApiError as e:
            if e.not_found:
                return False
            raise
        seen.count = count
        return True

    def _event(self, obj: Obj, reason: str, message: str, kind: str) -> Obj:
        meta = obj["metadata"]
        now = rfc3339(self.wall())
        return {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta.get("namespace") or "default"},
            "involvedObject": {
                "apiVersion": obj["apiVersion"],
                "kind": obj["kind"],
                "name": meta["name"],
                "namespace": meta.get("namespace"),
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "reason": reason,
            "message": message,
            "type": kind,
            "source": {"component": self.component},
            "reportingComponent": self.component,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
