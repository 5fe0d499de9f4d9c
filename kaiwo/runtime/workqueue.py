"""The controllers' workqueue: client-go's util/workqueue (queue, delaying and rate-limiting queue) on asyncio.

Items (object keys, hashable) wait in a FIFO ``queue`` until a worker takes one with ``get``; ``dirty`` is the
set of items that need processing and ``processing`` the set of items a worker holds (handed out by ``get``,
not yet passed to ``done``). An item is never processed by two workers at once: ``get`` moves it from
``queue`` and ``dirty`` into ``processing``. ``add`` of an item that is already dirty is a no-op, so any number
of adds before a worker picks the item up coalesce into one pass. ``add`` of an item that is being processed
only marks it dirty; ``done`` puts it back on ``queue``, so changes that arrive during processing coalesce
into exactly one more pass, by a worker that sees the newest state. After ``shutdown`` adds are ignored and
``get`` keeps handing out what is queued (unless discarded, see below), then raises ``ShutDown``.
Items from the initial list (a resync) can be added at low priority: they wait in a second FIFO that ``get``
serves when the normal one is empty, so live changes are not stuck behind thousands of unchanged keys, and
also after every ``LOW_PRIORITY_EVERY`` consecutive normal items, so a steady stream of live changes (a new
leader's children churning) cannot starve them; a normal-priority add of such an item moves it to the normal
FIFO. ``add_after`` adds an item once a delay has passed (several pending delays of one item collapse into
the earliest; the add is low priority only if every one of them was). A low-priority ``add_after`` of an item
that is already queued is a no-op: the queued pass starts later and reads the newer state anyway. That is how
a burst of related changes costs one pass (Kubernetes' Job controller batches pod events the same way).
``add_rate_limited`` adds an item after the delay its rate limiter chooses, which is how failed items are
retried with backoff. ``shutdown_with_drain(discard_queued=True)`` hands out nothing more (a
graceful stop finishes only what workers hold).

All methods except ``get`` and ``shutdown_with_drain`` are synchronous and must be called from the event
loop's thread. ``get`` does not suspend when an item is available (like ``asyncio.Queue.get``).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
from collections import OrderedDict, deque
from collections.abc import Hashable
from typing import Generic, Protocol, TypeVar

from kaiwo.runtime.clock import Clock, RealClock
from kaiwo.runtime.ratelimit import RateLimiter, default_controller_rate_limiter

T = TypeVar("T", bound=Hashable)

__all__ = ["NoopMetrics", "QueueMetrics", "ShutDown", "WorkQueue"]


# At most this many normal items in a row while low-priority items wait. Under load, 4 let status passes delay
# new objects' children (paced p99 create->child 1.5-7 s at 50/s); 16 gave 2.0 s in the same runs
# (docs/performance.md). The low lane still gets one hand-out in 17, so it is never starved.
LOW_PRIORITY_EVERY = 16


class ShutDown(Exception):
    """Raised by ``WorkQueue.get`` once the queue is shut down and nothing is left to hand out."""


class QueueMetrics(Protocol):
    """Hooks for the workqueue metrics (client-go's ``workqueue_*`` Prometheus series)."""

    def add(self, name: str) -> None:
        """An add that was not a no-op (adds_total)."""
        ...

    def get(self, name: str, queue_seconds: float) -> None:
        """An item was handed to a worker after waiting ``queue_seconds`` since it became dirty."""
        ...

    def done(self, name: str, work_seconds: float) -> None:
        """A worker finished an item it held for ``work_seconds``."""
        ...

    def retry(self, name: str) -> None:
        """``add_rate_limited`` was called (retries_total)."""
        ...

    def depth(self, name: str, n: int) -> None:
        """The number of items waiting for a worker changed to ``n``."""
        ...


class NoopMetrics:
    def add(self, name: str) -> None:
        pass

    def get(self, name: str, queue_seconds: float) -> None:
        pass

    def done(self, name: str, work_seconds: float) -> None:
        pass

    def retry(self, name: str) -> None:
        pass

    def depth(self, name: str, n: int) -> None:
        pass


class WorkQueue(Generic[T]):
    """A rate-limiting, delaying work queue with low-priority adds (see the module docstring)."""

    def __init__(
        self,
        name: str,
        *,
        clock: Clock | None = None,
        rate_limiter: RateLimiter[T] | None = None,
        metrics: QueueMetrics | None = None,
    ) -> None:
        self.name = name
        self._clock: Clock = clock or RealClock()
        self._rate_limiter: RateLimiter[T] = (
            rate_limiter if rate_limiter is not None else default_controller_rate_limiter(self._clock)
        )
        self._metrics: QueueMetrics = metrics or NoopMetrics()

        # The order in which items are handed out. Every element is in _dirty and not in _processing, and
        # appears once in _queue or _low, never in both.
        self._queue: deque[T] = deque()
        # The low-priority FIFO (an ordered set), served only while _queue is empty. Same invariant as _queue.
        self._low: OrderedDict[T, None] = OrderedDict()
        self._normal_streak = 0  # normal items handed out since the last low-priority one
        # Items that need processing: exactly the items of _queue and _low, plus items of _processing that
        # were added again while being processed.
        self._dirty: set[T] = set()
        # Items handed out by get and not yet passed to done. May overlap _dirty; such an item goes back to
        # a FIFO on done.
        self._processing: set[T] = set()
        # Items in _dirty and _processing whose re-adds were all low priority: done puts them in _low.
        self._low_on_done: set[T] = set()

        # Pending add_after entries (ready_at, sequence, item), earliest first. An entry is live while
        # _waiting[item] == (ready_at, sequence); entries superseded by an earlier add_after stay in the heap
        # and are skipped.
        self._heap: list[tuple[float, int, T]] = []
        self._waiting: dict[T, tuple[float, int]] = {}
        self._waiting_low: set[T] = set()  # items of _waiting whose pending add_afters were all low priority
        self._seq = itertools.count()
        # Sleeps until the head of _heap is due and adds it. Runs only while _heap is non-empty; restarted
        # when an entry becomes the new head.
        self._delay_task: asyncio.Task[None] | None = None

        # Metrics bookkeeping on the clock: when each dirty item was added, when each held item was handed out.
        self._added_at: dict[T, float] = {}
        self._started_at: dict[T, float] = {}

        self._getters: deque[asyncio.Future[None]] = deque()  # get calls waiting for an item, oldest first
        self._drainers: list[asyncio.Future[None]] = []  # shutdown_with_drain calls waiting for _processing
        self._shutting_down = False
        self._drain = False

    # -- the queue ---------------------------------------------------------------------------------------

    def add(self, item: T, *, low_priority: bool = False) -> None:
        """Mark the item as needing processing (no-op if it already does or the queue is shut down)."""
        if self._shutting_down:
            return
        if item in self._dirty:
            if not low_priority:
                self._promote(item)
            return
        self._metrics.add(self.name)
        self._dirty.add(item)
        self._added_at[item] = self._clock.now()
        self._metrics.depth(self.name, len(self._dirty))
        if item in self._processing:
            if low_priority:
                self._low_on_done.add(item)
            return
        if low_priority:
            self._low[item] = None
        else:
            self._queue.append(item)
        self._wake_getter()

    def _promote(self, item: T) -> None:
        """A normal-priority add of an item that is already dirty: take it out of the low-priority FIFO."""
        if item in self._low:
            del self._low[item]
            self._queue.append(item)
        else:
            self._low_on_done.discard(item)

    async def get(self) -> T:
        """Wait for an item and hold it; call ``done`` with it when finished. Raises ``ShutDown``."""
        if self._heap and self._delay_task is None:
            self._restart_delay_task()  # add_after was called before a loop was running
        while not (self._queue or self._low):
            if self._shutting_down:
                raise ShutDown(self.name)
            getter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._getters.append(getter)
            try:
                await getter
            except BaseException:
                getter.cancel()
                with contextlib.suppress(ValueError):
                    self._getters.remove(getter)
                if (self._queue or self._low) and not getter.cancelled():
                    self._wake_getter()  # we were woken for an item we will not take: pass the wake-up on
                raise
        if self._queue and not (self._low and self._normal_streak >= LOW_PRIORITY_EVERY):
            item = self._queue.popleft()
            self._normal_streak += 1
        else:
            item = self._low.popitem(last=False)[0]
            self._normal_streak = 0
        self._dirty.remove(item)
        self._processing.add(item)
        now = self._clock.now()
        self._started_at[item] = now
        self._metrics.get(self.name, now - self._added_at.pop(item, now))
        self._metrics.depth(self.name, len(self._dirty))
        return item

    def done(self, item: T) -> None:
        """Release an item from ``get``; if it was added meanwhile it is queued again."""
        if item not in self._processing:
            raise ValueError(f"workqueue {self.name!r}: done({item!r}) for an item that is not being processed")
        self._processing.remove(item)
        now = self._clock.now()
        self._metrics.done(self.name, now - self._started_at.pop(item, now))
        if item in self._dirty:
            if item in self._low_on_done:
                self._low_on_done.remove(item)
                self._low[item] = None
            else:
                self._queue.append(item)
            self._wake_getter()
        if not self._processing:
            _wake_all(self._drainers)

    def __len__(self) -> int:
        """Items waiting in the FIFOs (not those that will be re-queued by ``done``). Informational only."""
        return len(self._queue) + len(self._low)

    def _wake_getter(self) -> None:
        while self._getters:
            getter = self._getters.popleft()
            if not getter.done():
                getter.set_result(None)
                return

    # -- delays and rate limiting -----------------------------------------------------------------------

    def add_after(self, item: T, delay: float, *, low_priority: bool = False) -> None:
        """Add the item once ``delay`` seconds have passed; the earliest of several pending times wins."""
        if self._shutting_down:
            return
        if low_priority and item in self._dirty and item not in self._processing:
            return  # queued already: that pass reads the cache after this change
        if delay <= 0:
            self.add(item, low_priority=low_priority)
            return
        ready_at = self._clock.now() + delay
        pending = self._waiting.get(item)
        if pending is None and low_priority:
            self._waiting_low.add(item)
        elif not low_priority:
            self._waiting_low.discard(item)
        if pending is not None and pending[0] <= ready_at:
            return
        seq = next(self._seq)
        self._waiting[item] = (ready_at, seq)
        heapq.heappush(self._heap, (ready_at, seq, item))
        if self._heap[0][1] == seq or self._delay_task is None:
            self._restart_delay_task()

    def add_rate_limited(self, item: T) -> None:
        """Add the item after the delay its rate limiter gives (a retry with backoff)."""
        if self._shutting_down:
            return
        self._metrics.retry(self.name)
        self.add_after(item, self._rate_limiter.when(item))

    def forget(self, item: T) -> None:
        """The item is done being retried (it succeeded or failed for good): reset its backoff."""
        self._rate_limiter.forget(item)

    def num_requeues(self, item: T) -> int:
        return self._rate_limiter.num_requeues(item)

    def _restart_delay_task(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop yet: the first get() starts the task
        if self._delay_task is not None:
            self._delay_task.cancel()
        self._delay_task = loop.create_task(self._run_delays(), name=f"workqueue-{self.name}-delays")

    async def _run_delays(self) -> None:
        while self._heap:
            now = self._clock.now()
            while self._heap:
                ready_at, seq, item = self._heap[0]
                live = self._waiting.get(item) == (ready_at, seq)
                if live and ready_at > now:
                    break
                heapq.heappop(self._heap)
                if live:
                    del self._waiting[item]
                    low = item in self._waiting_low
                    self._waiting_low.discard(item)
                    self.add(item, low_priority=low)
            if self._heap:
                await self._clock.sleep(self._heap[0][0] - now)
        if self._delay_task is asyncio.current_task():
            self._delay_task = None

    # -- shutdown ----------------------------------------------------------------------------------------

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    def shutdown(self) -> None:
        """Ignore further adds, drop pending delayed adds and wake all getters; queued items are still handed
        out, then ``get`` raises ``ShutDown``. Also ends a ``shutdown_with_drain`` that is waiting."""
        self._drain = False
        self._shut_down()
        _wake_all(self._drainers)

    async def shutdown_with_drain(self, discard_queued: bool = False) -> None:
        """``shutdown``, then wait until every item held by a worker is ``done`` (or ``shutdown`` is called).
        ``discard_queued``: hand out nothing more (a graceful stop finishes in-flight work only, so the
        successor, which re-lists everything, is not kept waiting for a backlog).

        Workers must keep calling ``done`` for the items they hold, or this waits forever.
        """
        self._drain = True
        self._shut_down()
        if discard_queued:
            self._queue.clear()
            self._low.clear()
            self._low_on_done.clear()
            self._dirty.clear()
            self._added_at.clear()
            self._metrics.depth(self.name, 0)
        while self._processing and self._drain:
            drainer: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._drainers.append(drainer)
            await drainer

    def _shut_down(self) -> None:
        self._shutting_down = True
        if self._delay_task is not None:
            self._delay_task.cancel()
            self._delay_task = None
        self._heap.clear()
        self._waiting.clear()
        self._waiting_low.clear()
        _wake_all(self._getters)


def _wake_all(waiters: deque[asyncio.Future[None]] | list[asyncio.Future[None]]) -> None:
    for waiter in waiters:
        if not waiter.done():
            waiter.set_result(None)
    waiters.clear()
