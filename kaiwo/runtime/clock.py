"""Time as the runtime sees it: a monotonic ``now()`` and an awaitable ``sleep()``.

Everything that waits (the workqueue's delayed adds, rate limiters) takes a ``Clock`` so tests can drive time
with ``FakeClock`` instead of sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time
from collections.abc import Coroutine
from typing import Any, Protocol, TypeVar

T = TypeVar("T")

# How many loop iterations FakeClock.advance yields after waking sleepers, so that chains of wake-ups
# (sleeper -> task that awaited it -> task that task woke) finish before advance returns.
_SETTLE_STEPS = 20


class Clock(Protocol):
    def now(self) -> float:
        """Monotonic time in seconds."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Return once ``seconds`` have passed on this clock."""
        ...


class RealClock:
    """The event loop's notion of time: ``time.monotonic`` and ``asyncio.sleep``."""

    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class FakeClock:
    """A clock that only moves when ``advance`` is awaited."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        # (deadline, sequence, future) heap; the sequence keeps equal deadlines in the order sleep was called.
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._seq), fut))
        await fut  # a cancelled sleeper leaves a cancelled future, which advance skips

    @property
    def sleepers(self) -> int:
        """How many tasks are sleeping on this clock."""
        return sum(1 for _, _, fut in self._sleepers if not fut.done())

    async def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``, waking sleepers in deadline order.

        Time steps to each sleeper's deadline in turn and the loop runs in between, so a woken task sees
        ``now()`` equal to its deadline, and a sleep it starts that ends within the window is woken too.
        """
        if seconds < 0:
            raise ValueError(f"cannot move a clock backwards ({seconds} s)")
        target = self._now + seconds
        await _settle()  # let tasks that are about to sleep register first
        while self._sleepers and self._sleepers[0][0] <= target:
            deadline = self._sleepers[0][0]
            self._now = max(self._now, deadline)
            while self._sleepers and self._sleepers[0][0] <= deadline:
                fut = heapq.heappop(self._sleepers)[2]
                if not fut.done():
                    fut.set_result(None)
            await _settle()
        self._now = target
        await _settle()


async def _settle() -> None:
    for _ in range(_SETTLE_STEPS):
        await asyncio.sleep(0)


async def bounded(clock: Clock, aw: Coroutine[Any, Any, T], seconds: float) -> T | None:
    """``aw``'s result, or None once ``seconds`` have passed on ``clock`` (``aw`` is then cancelled)."""
    work = asyncio.ensure_future(aw)
    timer = asyncio.ensure_future(clock.sleep(seconds))
    try:
        done, _ = await asyncio.wait({work, timer}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        work.cancel()
        raise
    finally:
        timer.cancel()
    if work in done:
        return work.result()
    work.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await work
    return None
