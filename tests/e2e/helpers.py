"""Polling helpers for e2e tests: every wait has a deadline and says what it waited for."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import aiohttp

T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T | None]], what: str, timeout: float = 60.0, interval: float = 0.25
) -> T:
    """Call ``probe`` until it returns something truthy; fail with ``what`` and the last value otherwise."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while True:
        last = await probe()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last seen: {last!r}")
        await asyncio.sleep(interval)


async def http_ok(url: str) -> bool:
    """Whether ``url`` answers 200 now (False while nothing listens there yet)."""
    try:
        async with aiohttp.ClientSession() as http, http.get(url) as r:
            return r.status == 200
    except aiohttp.ClientError:
        return False


def assert_no_overlap(events: list[tuple[str, float]]) -> None:
    """Each replica's reconciles (who, time) form one time span; the spans of different replicas must not overlap."""
    spans: dict[str, tuple[float, float]] = {}
    for who, t in events:
        lo, hi = spans.get(who, (t, t))
        spans[who] = (min(lo, t), max(hi, t))
    ordered = sorted(spans.items(), key=lambda kv: kv[1][0])
    for (a, (_, a_end)), (b, (b_start, _)) in itertools.pairwise(ordered):
        assert a_end < b_start, f"{a} still reconciled at {a_end:.3f} after {b} started at {b_start:.3f}"
