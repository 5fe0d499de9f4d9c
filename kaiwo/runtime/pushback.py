"""The apiserver's "slow down" (429 Too Many Requests), shared by every call of one client.

Without it, each caller retries on its own: 64 workers per controller and a dozen informers each send a request
every Retry-After seconds, and an apiserver that is already overloaded (API Priority and Fairness queues full)
gets hundreds of requests a second that it must refuse. With it, the whole client behaves like one polite
caller (docs/design/runtime.md, "Pushback"):

- a 429 closes the gate until its Retry-After (the latest one seen wins);
- once that time has passed, one request at a time goes out as a probe;
- the first answer that is not a 429 opens the gate for everyone; a probe that ends without an answer
  (connection error, timeout, cancelled) hands the probe to the next waiting caller.

Invariants: with the gate open, ``admit`` costs one attribute read; no caller waits past its own deadline (it gets
``TimeoutError``, as if its last attempt had timed out); at most one probe is in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


class Pushback:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.active = False  # a 429 was the latest word of the server
        self._until = 0.0  # no request starts before this (clock time)
        self._probing = False
        self._changed = asyncio.Event()  # replaced after each set: waiters wake once per change
        self.episodes = 0  # times the gate closed (observability and tests)

    async def admit(self, end: float) -> bool:
        """Wait until a request may start; True when it is the probe (its outcome must be reported).
        ``end`` is the caller's deadline on the same clock."""
        while self.active:
            now = self._clock()
            if now >= self._until and not self._probing:
                self._probing = True
                return True
            if now >= end:
                raise TimeoutError("the apiserver asked to slow down (429) until past this call's deadline")
            wait = min(end, self._until) - now if now < self._until else end - now
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), max(wait, 0.001))
        return False

    def throttled(self, retry_after: float, *, probe: bool) -> None:
        """A request was answered 429: hold every request until ``retry_after`` seconds from now. A call that was
        already in flight when the gate closed (not the probe) leaves the probe in flight alone."""
        if not self.active:
            self.episodes += 1
            log.warning("the apiserver asks to slow down (429): requests wait %.1fs, then one at a time", retry_after)
        self.active = True
        self._until = max(self._until, self._clock() + retry_after)
        if probe:
            self._probing = False
        self._wake()

    def answered(self) -> None:
        """A request got an answer that is not a 429: the server accepts work again."""
        if self.active:
            log.warning("the apiserver accepts requests again")
            self.active = False
            self._probing = False
            self._wake()

    def abandoned(self) -> None:
        """The probe ended without an answer: the next waiting caller probes."""
        if self._probing:
            self._probing = False
            self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()
