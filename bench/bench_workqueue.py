"""Throughput of the workqueue in one process: items per second through add + get + done.

    .venv/bin/python bench/bench_workqueue.py [--items 200000] [--workers 4] [--repeat 5]

Prints a table and writes bench/results/workqueue.json. One item = one add, one get and one done.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kaiwo.runtime.workqueue import QueueMetrics, ShutDown, WorkQueue

RESULTS = Path(__file__).parent / "results" / "workqueue.json"
TARGET_OPS = 100_000
Run = Callable[[], Coroutine[Any, Any, int]]


class CountingMetrics:
    """A metrics sink that does a little work per hook, like a Prometheus client would."""

    def __init__(self) -> None:
        self.adds = self.gets = self.dones = self.retries = 0
        self.depth_now = 0
        self.queue_seconds = self.work_seconds = 0.0

    def add(self, name: str) -> None:
        self.adds += 1

    def get(self, name: str, queue_seconds: float) -> None:
        self.gets += 1
        self.queue_seconds += queue_seconds

    def done(self, name: str, work_seconds: float) -> None:
        self.dones += 1
        self.work_seconds += work_seconds

    def retry(self, name: str) -> None:
        self.retries += 1

    def depth(self, name: str, n: int) -> None:
        self.depth_now = n


async def _worker(q: WorkQueue[int], yield_per_item: bool) -> int:
    n = 0
    while True:
        try:
            item = await q.get()
        except ShutDown:
            return n
        if yield_per_item:
            await asyncio.sleep(0)  # an async reconcile that awaits once
        q.done(item)
        n += 1


async def prefilled(items: int, workers: int, metrics: QueueMetrics | None = None) -> int:
    """Add everything, then let the workers drain the queue."""
    q: WorkQueue[int] = WorkQueue("bench", metrics=metrics)
    for i in range(items):
        q.add(i)
    q.shutdown()  # workers still get what is queued, then ShutDown
    counts = await asyncio.gather(*(_worker(q, False) for _ in range(workers)))
    return sum(counts)


async def streaming(items: int, workers: int, yield_per_item: bool = False, batch: int = 100) -> int:
    """A producer adds in batches and yields; workers wait in get and process concurrently."""
    q: WorkQueue[int] = WorkQueue("bench")
    tasks = [asyncio.create_task(_worker(q, yield_per_item)) for _ in range(workers)]
    for start in range(0, items, batch):
        for i in range(start, min(start + batch, items)):
            q.add(i)
        await asyncio.sleep(0)
    await q.shutdown_with_drain()
    counts = await asyncio.gather(*tasks)
    return sum(counts)


def _measure(run: Run, items: int, repeat: int) -> dict[str, float]:
    rates = []
    for _ in range(repeat):
        start = time.perf_counter()
        processed = asyncio.run(run())
        elapsed = time.perf_counter() - start
        if processed != items:
            raise RuntimeError(f"processed {processed} of {items} items")
        rates.append(items / elapsed)
    return {"ops_per_s_median": statistics.median(rates), "ops_per_s_best": max(rates)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    n, w = args.items, args.workers

    scenarios: list[tuple[str, Run]] = [
        ("prefilled", lambda: prefilled(n, w)),
        ("prefilled + metrics hooks", lambda: prefilled(n, w, CountingMetrics())),
        ("streaming (batches of 100)", lambda: streaming(n, w)),
        ("streaming, 1 await per item", lambda: streaming(n, w, yield_per_item=True)),
    ]
    rows = []
    for name, run in scenarios:
        result = _measure(run, n, args.repeat)
        rows.append({"scenario": name, "items": n, "workers": w, **result})

    print(f"workqueue throughput: {n} items, {w} workers, median/best of {args.repeat} (one op = add+get+done)")
    print(f"{'scenario':<30} {'ops/s (median)':>15} {'ops/s (best)':>13}  target {TARGET_OPS:,}")
    for row in rows:
        ok = "ok" if row["ops_per_s_median"] >= TARGET_OPS else "BELOW"
        print(f"{row['scenario']:<30} {row['ops_per_s_median']:>15,.0f} {row['ops_per_s_best']:>13,.0f}  {ok}")

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "benchmark": "workqueue",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "target_ops_per_s": TARGET_OPS,
        "results": rows,
    }
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
