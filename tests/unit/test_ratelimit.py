from collections.abc import Hashable

import pytest

from kaiwo.runtime.clock import FakeClock
from kaiwo.runtime.ratelimit import (
    BucketRateLimiter,
    ItemExponentialFailureRateLimiter,
    MaxOfRateLimiter,
    RateLimiter,
    default_controller_rate_limiter,
)


@pytest.mark.parametrize(
    ("base", "cap", "expected"),
    [
        (0.005, 1000.0, [0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56]),
        (1.0, 10.0, [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]),
        (0.5, 0.5, [0.5, 0.5, 0.5]),
        (0.0, 1.0, [0.0, 0.0, 0.0]),
    ],
)
def test_exponential_backoff_sequence(base: float, cap: float, expected: list[float]) -> None:
    limiter = ItemExponentialFailureRateLimiter(base, cap)
    assert [limiter.when("a") for _ in expected] == pytest.approx(expected)
    assert limiter.num_requeues("a") == len(expected)


def test_exponential_backoff_reaches_the_1000s_cap_and_never_overflows() -> None:
    limiter = ItemExponentialFailureRateLimiter()  # 5 ms .. 1000 s
    delays = [limiter.when("a") for _ in range(5000)]
    assert delays[17] == pytest.approx(0.005 * 2**17)  # 655.36 s, the last one below the cap
    assert delays[18:] == [1000.0] * (5000 - 18)
    assert max(delays) == 1000.0


def test_exponential_backoff_is_per_item_and_forget_resets() -> None:
    limiter = ItemExponentialFailureRateLimiter(1.0, 100.0)
    assert [limiter.when("a"), limiter.when("a"), limiter.when("b"), limiter.when("a")] == [1.0, 2.0, 1.0, 4.0]
    assert (limiter.num_requeues("a"), limiter.num_requeues("b"), limiter.num_requeues("c")) == (3, 1, 0)
    limiter.forget("a")
    limiter.forget("never-seen")
    assert limiter.num_requeues("a") == 0
    assert limiter.when("a") == 1.0
    assert limiter.when("b") == 2.0


async def test_bucket_allows_the_burst_then_spaces_by_qps() -> None:
    clock = FakeClock()
    limiter = BucketRateLimiter(qps=10, burst=100, clock=clock)
    assert [limiter.when(i) for i in range(100)] == [0.0] * 100
    # Every further call reserves the next token: 0.1 s, 0.2 s, ... from now.
    assert [limiter.when(i) for i in range(100, 105)] == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5])
    assert limiter.num_requeues(0) == 0
    limiter.forget(0)  # a no-op: the bucket is shared by all items


async def test_bucket_refills_at_qps_up_to_the_burst() -> None:
    clock = FakeClock()
    limiter = BucketRateLimiter(qps=2, burst=3, clock=clock)
    assert [limiter.when("x") for _ in range(4)] == pytest.approx([0.0, 0.0, 0.0, 0.5])
    await clock.advance(0.5)  # pays back the token reserved above
    assert limiter.when("x") == pytest.approx(0.5)
    await clock.advance(1.0)  # +2 tokens: one covers the debt, one is free
    assert limiter.when("x") == 0.0
    assert limiter.when("x") == pytest.approx(0.5)
    await clock.advance(3600)  # a long idle time refills only up to the burst
    assert [limiter.when("x") for _ in range(4)] == pytest.approx([0.0, 0.0, 0.0, 0.5])


@pytest.mark.parametrize(("qps", "burst"), [(0, 1), (-1, 1), (1, 0)])
def test_bucket_rejects_bad_settings(qps: float, burst: int) -> None:
    with pytest.raises(ValueError):
        BucketRateLimiter(qps=qps, burst=burst)


class FixedLimiter:
    """A limiter with a fixed answer that records what it was asked."""

    def __init__(self, delay: float, requeues: int = 0) -> None:
        self.delay = delay
        self.requeues = requeues
        self.asked: list[Hashable] = []
        self.forgotten: list[Hashable] = []

    def when(self, item: Hashable) -> float:
        self.asked.append(item)
        return self.delay

    def forget(self, item: Hashable) -> None:
        self.forgotten.append(item)

    def num_requeues(self, item: Hashable) -> int:
        return self.requeues


@pytest.mark.parametrize(
    ("delays", "requeues", "expected_delay", "expected_requeues"),
    [
        ([1.0, 3.0, 2.0], [0, 5, 1], 3.0, 5),
        ([0.0], [2], 0.0, 2),
        ([7.0, 0.0], [0, 0], 7.0, 0),
    ],
)
def test_max_of_picks_the_longest_delay_and_forwards_everything(
    delays: list[float], requeues: list[int], expected_delay: float, expected_requeues: int
) -> None:
    limiters = [FixedLimiter(d, r) for d, r in zip(delays, requeues, strict=True)]
    limiter = MaxOfRateLimiter[Hashable](*limiters)
    assert limiter.when("k") == expected_delay
    assert limiter.num_requeues("k") == expected_requeues
    limiter.forget("k")
    for one in limiters:
        assert one.asked == ["k"]  # every limiter counts the requeue, not only the winner
        assert one.forgotten == ["k"]


def test_max_of_needs_a_limiter() -> None:
    with pytest.raises(ValueError):
        MaxOfRateLimiter[Hashable]()


async def test_default_controller_rate_limiter_combines_backoff_and_bucket() -> None:
    clock = FakeClock()
    limiter: RateLimiter[str] = default_controller_rate_limiter(clock)
    # The first failure of each item waits 5 ms while the bucket's burst of 100 lasts ...
    assert [limiter.when(f"item-{i}") for i in range(100)] == pytest.approx([0.005] * 100)
    # ... then the bucket's 10 qps dominates.
    assert limiter.when("item-100") == pytest.approx(0.1)
    await clock.advance(3600)
    # One item failing over and over backs off exponentially up to 1000 s.
    delays = [limiter.when("hot") for _ in range(20)]
    assert delays[:3] == pytest.approx([0.005, 0.01, 0.02])
    assert delays[-1] == 1000.0
    assert limiter.num_requeues("hot") == 20
    limiter.forget("hot")
    assert limiter.num_requeues("hot") == 0
