"""Rate limiters for the workqueue, after client-go's util/workqueue/default_rate_limiters.go.

A rate limiter answers ``when(item)``: how many seconds to wait before the item is added again. Calling
``when`` counts as a requeue (it changes the limiter's state). ``forget(item)`` ends the tracking of an item
(after success or a permanent failure); ``num_requeues(item)`` says how often it was requeued since.
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from typing import Generic, Protocol, TypeVar

from kaiwo.runtime.clock import Clock, RealClock

T = TypeVar("T", bound=Hashable)
T_contra = TypeVar("T_contra", bound=Hashable, contravariant=True)


class RateLimiter(Protocol[T_contra]):
    def when(self, item: T_contra) -> float:
        """Seconds to wait before the item is processed again; records one more requeue."""
        ...

    def forget(self, item: T_contra) -> None:
        """Stop tracking the item: its next ``when`` starts from scratch."""
        ...

    def num_requeues(self, item: T_contra) -> int:
        """How many times ``when`` was called for the item since it was last forgotten."""
        ...


class ItemExponentialFailureRateLimiter:
    """Per item: ``base * 2**failures`` seconds, at most ``cap`` (5 ms, 10 ms, 20 ms, ... by default)."""

    def __init__(self, base: float = 0.005, cap: float = 1000.0) -> None:
        if base < 0 or cap < 0:
            raise ValueError("base and cap must not be negative")
        self._base = base
        self._cap = cap
        self._failures: dict[Hashable, int] = {}

    def when(self, item: Hashable) -> float:
        exp = self._failures.get(item, 0)
        self._failures[item] = exp + 1
        try:
            backoff = math.ldexp(self._base, exp)  # base * 2**exp without an intermediate overflow
        except OverflowError:
            return self._cap
        return min(backoff, self._cap)

    def forget(self, item: Hashable) -> None:
        self._failures.pop(item, None)

    def num_requeues(self, item: Hashable) -> int:
        return self._failures.get(item, 0)


class BucketRateLimiter:
    """One token bucket shared by all items: ``burst`` tokens, refilled at ``qps`` per second.

    Like a reservation on golang.org/x/time/rate's Limiter: every ``when`` takes a token, even one that only
    becomes available in the future (the bucket goes negative), and returns the wait until that token exists.
    """

    def __init__(self, qps: float = 10.0, burst: int = 100, clock: Clock | None = None) -> None:
        if qps <= 0 or burst < 1:
            raise ValueError("qps must be positive and burst at least 1")
        self._qps = qps
        self._burst = float(burst)
        self._clock: Clock = clock or RealClock()
        self._tokens = float(burst)  # may go negative: tokens already promised to callers that wait
        self._last: float | None = None  # time of the last update of _tokens

    def when(self, item: Hashable) -> float:
        now = self._clock.now()
        if self._last is not None:
            elapsed = max(0.0, now - self._last)
            self._tokens = min(self._burst, self._tokens + elapsed * self._qps)
        self._last = now
        self._tokens -= 1
        return 0.0 if self._tokens >= 0 else -self._tokens / self._qps

    def forget(self, item: Hashable) -> None:
        pass

    def num_requeues(self, item: Hashable) -> int:
        return 0


class MaxOfRateLimiter(Generic[T]):
    """The longest delay of several limiters; every limiter sees every ``when`` and ``forget``."""

    def __init__(self, *limiters: RateLimiter[T]) -> None:
        if not limiters:
            raise ValueError("MaxOfRateLimiter needs at least one limiter")
        self._limiters = limiters

    def when(self, item: T) -> float:
        return max([limiter.when(item) for limiter in self._limiters])

    def forget(self, item: T) -> None:
        for limiter in self._limiters:
            limiter.forget(item)

    def num_requeues(self, item: T) -> int:
        return max(limiter.num_requeues(item) for limiter in self._limiters)


def default_controller_rate_limiter(clock: Clock | None = None) -> MaxOfRateLimiter[Hashable]:
    """client-go's DefaultTypedControllerRateLimiter: per-item backoff 5 ms .. 1000 s, overall 10 qps, burst 100."""
    return MaxOfRateLimiter[Hashable](
        ItemExponentialFailureRateLimiter(0.005, 1000.0),
        BucketRateLimiter(qps=10.0, burst=100, clock=clock),
    )
