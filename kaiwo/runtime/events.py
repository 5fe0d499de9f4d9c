"""Kubernetes Events about the objects a controller manages (core/v1, as `kubectl describe` shows them).

Controllers emit an event on a real transition only, never one per reconcile. A failed emit is logged and
ignored: events are best effort and must never fail a reconcile.

Repeats are aggregated as client-go's recorder does: an event identical to an earlier one (same object, type,
reason and message) is not created again; the earlier Event is patched instead, its ``count`` incremented,
``lastTimestamp`` moved and its ``series`` (count, last observed time) updated, so a flapping condition shows
as one line "x12 over 3m". A per-object token bucket (``BURST`` events, then one per ``REFILL_SECONDS``)
drops floods, as client-go's spam filter does.

With ``background=True`` (the workload controllers: docs/design/runtime.md#events), ``emit`` only queues the
event and returns; the request is sent by a sender task, as client-go's broadcaster does, so a reconcile never
waits for an event round trip. Contracts of the background mode:
- the events of one involved object are sent in the order they were emitted (one lane per object, by uid;
  ``LANES`` lanes send concurrently), and the timestamps are those of ``emit``, not of the send;
- at most ``QUEUE_SIZE`` events wait per lane; more are dropped and counted (client-go drops at 1,000): events
  never hold back reconciles nor grow without bound. A lane holds 2,500 so that a burst of 5,000 new KaiwoJobs
  loses none of its PENDING events (docs/performance.md); one warning per overflow, not one per dropped event;
- a lane's sender task exists only while its lane has events, so an idle recorder holds no task;
- ``flush()`` waits until every queued event has been sent or given up.
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

from kaiwo.runtime.client import ApiError, Client
from kaiwo.runtime.clock import Clock, RealClock
from kaiwo.runtime.objects import Obj
from kaiwo.runtime.timestamps import rfc3339, rfc3339_micro

log = logging.getLogger(__name__)
CACHE_SIZE = 4096  # remembered distinct events (client-go: 4096)
BURST, REFILL_SECONDS = 25, 300.0  # per involved object (client-go's spam filter defaults)
LANES = 4  # background mode: concurrent senders (one object's events always share a lane)
QUEUE_SIZE = 2500  # background mode: events waiting per lane before new ones are dropped


@dataclass
class _Seen:
    name: str
    namespace: str
    count: int


@dataclass
class _Bucket:
    tokens: float
    at: float


@dataclass
class _Pending:
    obj: Obj  # the involved object's identity (apiVersion, kind, metadata) when the event was emitted
    reason: str
    message: str
    kind: str  # Normal or Warning
    at: tuple[str, str]  # (timestamp, micro timestamp) of emit


class EventRecorder:
    def __init__(
        self,
        client: Client,
        component: str,
        *,
        background: bool = False,
        clock: Clock | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.component = component
        self.background = background
        self.clock: Clock = clock or RealClock()  # refills the spam filter's buckets
        self.wall = wall  # wall-clock epoch seconds: the Events' timestamps
        self._seen: OrderedDict[tuple[str, ...], _Seen] = OrderedDict()
        self._buckets: dict[str, _Bucket] = {}
        self._lanes: list[deque[_Pending]] = [deque() for _ in range(LANES)]
        self._senders: list[asyncio.Task[None] | None] = [None] * LANES
        self._overflowing = [False] * LANES  # a lane dropped events since it last had room: warned once
        self.dropped = 0  # events the spam filter dropped (observability and tests)
        self.overflowed = 0  # background mode: events dropped because their lane was full

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
        """Record an event on ``obj``: sent now, or queued in background mode (then this returns at once)."""
        meta = obj["metadata"]
        pending = _Pending(
            {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "metadata": meta},
            reason,
            message[:1024],
            "Warning" if warning else "Normal",
            (rfc3339(now := self.wall()), rfc3339_micro(now)),
        )
        uid = _uid(meta)
        if not self._allow(uid):
            self.dropped += 1
            return
        if not self.background:
            await self._send(pending)
            return
        lane = zlib.crc32(uid.encode()) % LANES
        if len(self._lanes[lane]) >= QUEUE_SIZE:
            self.overflowed += 1
            if not self._overflowing[lane]:
                self._overflowing[lane] = True
                log.warning(
                    "event queue full (%d waiting): dropping new events until it has room (first: %s on %s; "
                    "%d dropped since start)",
                    QUEUE_SIZE,
                    reason,
                    meta["name"],
                    self.overflowed,
                )
            return
        self._overflowing[lane] = False
        self._lanes[lane].append(pending)
        if self._senders[lane] is None:
            self._senders[lane] = asyncio.create_task(self._drain(lane), name=f"events-{self.component}-{lane}")

    async def flush(self) -> None:
        """Wait until every queued event has been sent (or given up)."""
        while running := [t for t in self._senders if t is not None]:
            await asyncio.gather(*running, return_exceptions=True)

    async def _drain(self, lane: int) -> None:
        """Send a lane's events in order until it is empty; then the task ends (a new emit starts another)."""
        queue = self._lanes[lane]
        try:
            while queue:
                await self._send(queue[0])
                queue.popleft()
        finally:
            self._senders[lane] = None

    async def _send(self, p: _Pending) -> None:
        meta = p.obj["metadata"]
        key = (p.obj["kind"], _uid(meta), p.kind, p.reason, p.message)
        seen = self._seen.get(key)
        try:
            if seen is not None and await self._repeat(seen, p.at):
                self._seen.move_to_end(key)
                return
            created = await self.client.create(self._event(p))
        except Exception as e:  # best effort; a namespace being deleted refuses every event, as expected
            expected = isinstance(e, ApiError) and e.namespace_terminating
            (log.debug if expected else log.warning)(
                "could not record event %s on %s: %r",
                p.reason,
                meta["name"],
                e,  # repr: TimeoutError()
            )
            return
        made = (created or {}).get("metadata") or {}
        if not made.get("name"):
            return
        self._seen[key] = _Seen(made["name"], made.get("namespace") or "default", 1)
        if len(self._seen) > CACHE_SIZE:
            self._seen.popitem(last=False)

    async def _repeat(self, seen: _Seen, at: tuple[str, str]) -> bool:
        """Count one more occurrence on the existing Event; False if it is gone (Events expire after an hour)."""
        count = seen.count + 1
        try:
            await self.client.patch(
                "v1",
                "Event",
                seen.name,
                {
                    "count": count,
                    "lastTimestamp": at[0],
                    "series": {"count": count, "lastObservedTime": at[1]},
                },
                seen.namespace,
            )
        except ApiError as e:
            if e.not_found:
                return False
            raise
        seen.count = count
        return True

    def _event(self, p: _Pending) -> Obj:
        meta = p.obj["metadata"]
        return {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta.get("namespace") or "default"},
            "involvedObject": {
                "apiVersion": p.obj["apiVersion"],
                "kind": p.obj["kind"],
                "name": meta["name"],
                "namespace": meta.get("namespace"),
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "reason": p.reason,
            "message": p.message,
            "type": p.kind,
            "source": {"component": self.component},
            "reportingComponent": self.component,
            "firstTimestamp": p.at[0],
            "lastTimestamp": p.at[0],
            "count": 1,
        }


def _uid(meta: Obj) -> str:
    return str(meta.get("uid") or f"{meta.get('namespace')}/{meta['name']}")
