import asyncio
import itertools
from collections.abc import Hashable, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kaiwo.runtime.clock import FakeClock, RealClock
from kaiwo.runtime.ratelimit import ItemExponentialFailureRateLimiter
from kaiwo.runtime.workqueue import LOW_PRIORITY_EVERY, ShutDown, WorkQueue

pytestmark = pytest.mark.timeout(30)  # a broken queue tends to hang a getter rather than fail


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def queue(clock: FakeClock) -> Iterator[WorkQueue[str]]:
    q: WorkQueue[str] = WorkQueue("test", clock=clock, rate_limiter=ItemExponentialFailureRateLimiter(1.0, 8.0))
    yield q
    q.shutdown()


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def drain(q: WorkQueue[str]) -> list[str]:
    """Get and finish everything that is queued now, in order."""
    got = []
    while len(q):
        item = await q.get()
        q.done(item)
        got.append(item)
    return got


# -- the queue ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("adds", "expected"),
    [
        (["a", "b", "c"], ["a", "b", "c"]),
        (["c", "a", "b"], ["c", "a", "b"]),
        (["a", "a", "a"], ["a"]),
        (["a", "b", "a", "c", "b"], ["a", "b", "c"]),  # a duplicate keeps its first position
        ([], []),
    ],
)
async def test_fifo_order_and_dedup(queue: WorkQueue[str], adds: list[str], expected: list[str]) -> None:
    for item in adds:
        queue.add(item)
    assert len(queue) == len(expected)
    assert await drain(queue) == expected


async def test_readd_during_processing_coalesces_into_exactly_one_more_pass(queue: WorkQueue[str]) -> None:
    queue.add("a")
    item = await queue.get()
    for _ in range(3):
        queue.add("a")
    assert len(queue) == 0  # not handed out again while a worker holds it
    queue.done(item)
    assert len(queue) == 1
    assert await queue.get() == "a"
    queue.done("a")
    assert len(queue) == 0


async def test_done_without_get_is_an_error(queue: WorkQueue[str]) -> None:
    queue.add("a")
    with pytest.raises(ValueError, match="not being processed"):
        queue.done("a")
    assert await drain(queue) == ["a"]


async def test_get_waits_for_an_add(queue: WorkQueue[str]) -> None:
    getter = asyncio.create_task(queue.get())
    await settle()
    assert not getter.done()
    queue.add("a")
    assert await getter == "a"
    queue.done("a")


async def test_a_cancelled_getter_passes_its_wakeup_on(queue: WorkQueue[str]) -> None:
    first = asyncio.create_task(queue.get())
    second = asyncio.create_task(queue.get())
    await settle()
    queue.add("a")  # wakes `first` ...
    first.cancel()  # ... which is cancelled before it runs
    assert await asyncio.wait_for(second, 1) == "a"
    assert first.cancelled()
    queue.done("a")


# What a worker does while it holds an item: how many times it yields, and whether it first re-adds the
# item itself (True) or another key (False), at low priority or not, or adds nothing (None).
Step = tuple[int, bool | None, int, bool]


@settings(max_examples=60, deadline=None)
@given(
    adds=st.lists(st.tuples(st.integers(0, 5), st.booleans(), st.integers(0, 3)), max_size=60),
    steps=st.lists(
        st.tuples(st.integers(0, 3), st.one_of(st.none(), st.booleans()), st.integers(0, 5), st.booleans()),
        min_size=1,
        max_size=20,
    ),
    workers=st.integers(1, 8),
)
async def test_an_item_is_never_held_by_two_workers(
    adds: list[tuple[int, bool, int]], steps: list[Step], workers: int
) -> None:
    q: WorkQueue[int] = WorkQueue("prop", clock=FakeClock())
    plan = itertools.cycle(steps)
    step = 0
    last_add: dict[int, int] = {}  # key -> step of its last accepted add
    last_get: dict[int, int] = {}  # key -> step it was last handed out
    held: set[int] = set()
    # Workers' adds are bounded: a worker that re-adds its key forever without yielding would never end.
    budget = 40

    def add(key: int, low: bool) -> None:
        nonlocal step
        step += 1
        if not q.shutting_down:
            last_add[key] = step
        q.add(key, low_priority=low)

    async def worker() -> None:
        nonlocal step, budget
        while True:
            try:
                key = await q.get()
            except ShutDown:
                return
            step += 1
            try:
                assert key not in held, f"{key} handed to a second worker"
                held.add(key)
                last_get[key] = step
                pauses, same, other, low = next(plan)
                if same is not None and budget > 0:
                    budget -= 1
                    add(key if same else other, low)
                for _ in range(pauses):
                    await asyncio.sleep(0)
            finally:
                held.discard(key)
                q.done(key)

    tasks = [asyncio.create_task(worker()) for _ in range(workers)]
    try:
        for key, low, pause in adds:
            add(key, low)
            for _ in range(pause):
                await asyncio.sleep(0)
        async with asyncio.timeout(10):
            await q.shutdown_with_drain()
            await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
    assert len(q) == 0
    # Every accepted add was followed by a pass over the key.
    for key, added in last_add.items():
        assert last_get.get(key, -1) > added, f"add of {key} at step {added} never processed"


# -- low priority -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("adds", "expected"),
    [
        ([("x", True), ("y", True), ("a", False), ("b", False)], ["a", "b", "x", "y"]),
        ([("x", True), ("a", False), ("y", True), ("b", False)], ["a", "b", "x", "y"]),
        # a normal add of a low-priority item moves it up, without a duplicate
        ([("x", True), ("y", True), ("z", True), ("y", False)], ["y", "x", "z"]),
        ([("x", True), ("a", False), ("x", False)], ["a", "x"]),
        # a low-priority add never demotes an item already queued normally
        ([("a", False), ("x", True), ("a", True)], ["a", "x"]),
        ([("x", True), ("x", True)], ["x"]),
    ],
)
async def test_low_priority_order_and_promotion(
    queue: WorkQueue[str], adds: list[tuple[str, bool]], expected: list[str]
) -> None:
    for item, low in adds:
        queue.add(item, low_priority=low)
    assert len(queue) == len(expected)
    assert await drain(queue) == expected


async def test_a_stream_of_live_changes_does_not_starve_low_priority_items(queue: WorkQueue[str]) -> None:
    queue.add("resync-0", low_priority=True)
    queue.add("resync-1", low_priority=True)
    served = []
    for i in range(2 * (LOW_PRIORITY_EVERY + 1)):
        queue.add(f"live-{i}")
        item = await queue.get()
        served.append(item)
        queue.done(item)
    assert served.index("resync-0") == LOW_PRIORITY_EVERY
    assert served.index("resync-1") == 2 * LOW_PRIORITY_EVERY + 1


async def test_low_priority_is_served_after_the_normal_fifo_empties(queue: WorkQueue[str]) -> None:
    for i in range(1000):
        queue.add(f"resync-{i}", low_priority=True)
    assert await queue.get() == "resync-0"
    queue.add("live")  # a live change arriving during a resync goes ahead of the remaining 999 keys
    assert await queue.get() == "live"
    assert await queue.get() == "resync-1"
    for item in ("resync-0", "live", "resync-1"):
        queue.done(item)


@pytest.mark.parametrize(
    ("readds", "expected"),
    [
        ([True], ["b", "a"]),  # re-added at low priority while processing: back in the low FIFO on done
        ([False], ["a", "b"]),
        ([True, False], ["a", "b"]),  # a later normal add wins
        ([False, True], ["a", "b"]),
    ],
)
async def test_priority_of_an_item_readded_during_processing(
    queue: WorkQueue[str], readds: list[bool], expected: list[str]
) -> None:
    queue.add("a")
    item = await queue.get()
    for low in readds:
        queue.add("a", low_priority=low)
    queue.add("b", low_priority=True)
    queue.done(item)
    assert await drain(queue) == expected


# -- delays -------------------------------------------------------------------------------------------------


async def test_delayed_item_is_not_available_before_its_time(queue: WorkQueue[str], clock: FakeClock) -> None:
    queue.add_after("a", 1.0)
    await clock.advance(0.5)
    assert len(queue) == 0
    await clock.advance(0.25)
    assert len(queue) == 0
    await clock.advance(0.25)
    assert len(queue) == 1
    assert await drain(queue) == ["a"]


@pytest.mark.parametrize("delay", [0.0, -1.0])
async def test_non_positive_delay_adds_immediately(queue: WorkQueue[str], clock: FakeClock, delay: float) -> None:
    queue.add_after("a", delay)
    assert len(queue) == 1
    assert clock.sleepers == 0


@pytest.mark.parametrize(
    ("delays", "expected"),
    [
        ([("c", 3.0), ("a", 1.0), ("b", 2.0)], ["a", "b", "c"]),
        ([("a", 2.0), ("b", 2.0), ("c", 1.0)], ["c", "a", "b"]),  # equal times keep call order
        ([("a", 0.5), ("b", 4.0)], ["a", "b"]),
    ],
)
async def test_delayed_items_arrive_in_ready_time_order(
    queue: WorkQueue[str], clock: FakeClock, delays: list[tuple[str, float]], expected: list[str]
) -> None:
    for item, delay in delays:
        queue.add_after(item, delay)
    await clock.advance(10)
    assert await drain(queue) == expected


@pytest.mark.parametrize(
    ("delays", "ready_at"),
    [
        ([5.0, 1.0], 1.0),  # an earlier time replaces a pending later one
        ([1.0, 5.0], 1.0),  # a later time does not postpone a pending earlier one
        ([3.0, 2.0, 4.0, 2.5], 2.0),
    ],
)
async def test_add_after_of_the_same_item_keeps_the_earliest_time(
    queue: WorkQueue[str], clock: FakeClock, delays: list[float], ready_at: float
) -> None:
    for delay in delays:
        queue.add_after("a", delay)
    await clock.advance(ready_at - 0.125)
    assert len(queue) == 0
    await clock.advance(0.125)
    assert await drain(queue) == ["a"]
    assert clock.sleepers == 0  # superseded entries are dropped, not waited for
    await clock.advance(10)  # and do not add the item again
    assert len(queue) == 0


async def test_an_earlier_item_interrupts_the_wait_for_a_later_one(queue: WorkQueue[str], clock: FakeClock) -> None:
    queue.add_after("late", 100)
    await settle()
    queue.add_after("soon", 1)
    await clock.advance(1)
    assert await drain(queue) == ["soon"]
    await clock.advance(99)
    assert await drain(queue) == ["late"]
    assert clock.sleepers == 0  # the waiter stops when nothing is pending


async def test_get_is_woken_by_a_delayed_add(queue: WorkQueue[str], clock: FakeClock) -> None:
    getter = asyncio.create_task(queue.get())
    queue.add_after("a", 2)
    await clock.advance(1)
    assert not getter.done()
    await clock.advance(1)
    assert getter.done()
    assert getter.result() == "a"
    queue.done("a")


async def test_delayed_add_of_an_item_in_processing_coalesces(queue: WorkQueue[str], clock: FakeClock) -> None:
    queue.add("a")
    item = await queue.get()
    queue.add_after("a", 1)
    await clock.advance(1)
    assert len(queue) == 0
    queue.done(item)
    assert await drain(queue) == ["a"]


@pytest.mark.parametrize(
    ("adds", "expected"),
    [
        ([True], ["b", "a"]),  # a low-priority delayed add lands in the low FIFO
        ([False], ["a", "b"]),
        ([True, False], ["a", "b"]),  # one normal delayed add among them makes it normal
        ([False, True], ["a", "b"]),
    ],
)
async def test_a_delayed_add_keeps_its_priority(
    queue: WorkQueue[str], clock: FakeClock, adds: list[bool], expected: list[str]
) -> None:
    queue.add("b", low_priority=True)
    for low in adds:
        queue.add_after("a", 1, low_priority=low)
    await clock.advance(1)
    assert await drain(queue) == expected


async def test_a_burst_of_low_priority_delayed_adds_is_one_pass(queue: WorkQueue[str], clock: FakeClock) -> None:
    for _ in range(5):  # related changes spread over the batch period ride along with the first
        queue.add_after("a", 1, low_priority=True)
        await clock.advance(0.125)
    assert len(queue) == 0
    await clock.advance(0.375)
    assert await drain(queue) == ["a"]
    await clock.advance(10)
    assert len(queue) == 0


async def test_a_low_priority_delayed_add_of_a_queued_item_is_a_no_op(queue: WorkQueue[str], clock: FakeClock) -> None:
    queue.add("a")
    queue.add_after("a", 1, low_priority=True)  # the queued pass will read the newer state
    assert clock.sleepers == 0
    assert await drain(queue) == ["a"]
    await clock.advance(1)
    assert len(queue) == 0
    held = await _hold(queue, "a")  # while a worker holds it, the change needs one more pass
    queue.add_after("a", 1, low_priority=True)
    await clock.advance(1)
    queue.done(held)
    assert await drain(queue) == ["a"]


async def _hold(queue: WorkQueue[str], item: str) -> str:
    queue.add(item)
    return await queue.get()


@pytest.fixture
def queue_delayed_outside_a_loop(clock: FakeClock) -> Iterator[WorkQueue[str]]:
    q: WorkQueue[str] = WorkQueue("early", clock=clock)  # a sync fixture: no event loop is running here
    q.add_after("a", 1)
    yield q
    q.shutdown()


async def test_add_after_before_the_loop_runs_is_picked_up_by_get(
    queue_delayed_outside_a_loop: WorkQueue[str], clock: FakeClock
) -> None:
    getter = asyncio.create_task(queue_delayed_outside_a_loop.get())
    await clock.advance(1)
    assert await asyncio.wait_for(getter, 1) == "a"
    queue_delayed_outside_a_loop.done("a")


# -- rate limiting ------------------------------------------------------------------------------------------


async def test_add_rate_limited_backs_off_and_forget_resets(queue: WorkQueue[str], clock: FakeClock) -> None:
    # The fixture's limiter: 1 s, 2 s, 4 s, 8 s, 8 s ...
    for expected_delay in (1.0, 2.0, 4.0, 8.0, 8.0):
        queue.add_rate_limited("a")
        await clock.advance(expected_delay - 0.5)
        assert len(queue) == 0, f"available before {expected_delay} s"
        await clock.advance(0.5)
        assert await drain(queue) == ["a"]
    assert queue.num_requeues("a") == 5
    queue.forget("a")
    assert queue.num_requeues("a") == 0
    queue.add_rate_limited("a")
    await clock.advance(1)
    assert await drain(queue) == ["a"]


async def test_default_rate_limiter_starts_at_5ms(clock: FakeClock) -> None:
    q: WorkQueue[str] = WorkQueue("default", clock=clock)
    try:
        q.add_rate_limited("a")
        await clock.advance(0.004)
        assert len(q) == 0
        await clock.advance(0.001)
        assert len(q) == 1
    finally:
        q.shutdown()


# -- shutdown -----------------------------------------------------------------------------------------------


async def test_shutdown_wakes_blocked_getters(queue: WorkQueue[str]) -> None:
    getters = [asyncio.create_task(queue.get()) for _ in range(3)]
    await settle()
    assert not any(g.done() for g in getters)
    queue.shutdown()
    results = await asyncio.wait_for(asyncio.gather(*getters, return_exceptions=True), 1)
    assert all(isinstance(r, ShutDown) for r in results)
    assert queue.shutting_down


async def test_shutdown_hands_out_what_is_queued_then_raises(queue: WorkQueue[str], clock: FakeClock) -> None:
    queue.add("a")
    queue.add("b", low_priority=True)
    queue.add_after("later", 1)
    queue.shutdown()
    queue.add("ignored")
    queue.add_after("ignored", 1)
    queue.add_rate_limited("ignored")
    assert queue.num_requeues("ignored") == 0
    assert await drain(queue) == ["a", "b"]
    await clock.advance(5)  # pending delayed adds were dropped
    assert len(queue) == 0
    assert clock.sleepers == 0
    with pytest.raises(ShutDown):
        await queue.get()


async def test_shutdown_with_drain_waits_for_items_in_flight(queue: WorkQueue[str]) -> None:
    queue.add("a")
    queue.add("b")
    a, b = await queue.get(), await queue.get()
    drainer = asyncio.create_task(queue.shutdown_with_drain())
    await settle()
    assert queue.shutting_down
    assert not drainer.done()
    queue.done(a)
    await settle()
    assert not drainer.done()
    queue.done(b)
    await asyncio.wait_for(drainer, 1)


async def test_shutdown_with_drain_returns_at_once_when_nothing_is_in_flight(queue: WorkQueue[str]) -> None:
    await asyncio.wait_for(queue.shutdown_with_drain(), 1)
    with pytest.raises(ShutDown):
        await queue.get()


async def test_shutdown_ends_a_waiting_drain(queue: WorkQueue[str]) -> None:
    queue.add("a")
    item = await queue.get()
    drainer = asyncio.create_task(queue.shutdown_with_drain())
    await settle()
    assert not drainer.done()
    queue.shutdown()
    await asyncio.wait_for(drainer, 1)
    queue.done(item)


# -- metrics ------------------------------------------------------------------------------------------------


class RecordingMetrics:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, float]] = []

    def add(self, name: str) -> None:
        self.events.append(("add", name, 0))

    def get(self, name: str, queue_seconds: float) -> None:
        self.events.append(("get", name, queue_seconds))

    def done(self, name: str, work_seconds: float) -> None:
        self.events.append(("done", name, work_seconds))

    def retry(self, name: str) -> None:
        self.events.append(("retry", name, 0))

    def depth(self, name: str, n: int) -> None:
        self.events.append(("depth", name, n))


async def test_metrics_hooks(clock: FakeClock) -> None:
    metrics = RecordingMetrics()
    limiter: ItemExponentialFailureRateLimiter = ItemExponentialFailureRateLimiter(1.0, 1.0)
    q: WorkQueue[Hashable] = WorkQueue("m", clock=clock, metrics=metrics, rate_limiter=limiter)
    try:
        q.add("a")
        q.add("a")  # a duplicate of a dirty item: not counted
        q.add("b")
        await clock.advance(2)
        a = await q.get()  # waited 2 s
        await clock.advance(3)
        q.add("a")  # re-added while processing: counted, and waits from now
        await clock.advance(1)
        q.done(a)  # worked 4 s
        b = await q.get()  # waited 6 s
        q.done(b)  # worked 0 s
        await clock.advance(0.5)
        a = await q.get()  # waited 1.5 s (since its re-add)
        q.done(a)
        q.add_rate_limited("c")
        await clock.advance(1)
    finally:
        q.shutdown()
    assert metrics.events == [
        ("add", "m", 0),
        ("depth", "m", 1),
        ("add", "m", 0),
        ("depth", "m", 2),
        ("get", "m", 2.0),
        ("depth", "m", 1),
        ("add", "m", 0),
        ("depth", "m", 2),
        ("done", "m", 4.0),
        ("get", "m", 6.0),
        ("depth", "m", 1),
        ("done", "m", 0.0),
        ("get", "m", 1.5),
        ("depth", "m", 0),
        ("done", "m", 0.0),
        ("retry", "m", 0),
        ("add", "m", 0),
        ("depth", "m", 1),
    ]


# -- the clocks ---------------------------------------------------------------------------------------------


async def test_fake_clock_wakes_sleepers_in_deadline_order_at_their_deadline(clock: FakeClock) -> None:
    woken: list[tuple[str, float]] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woken.append((name, clock.now()))

    tasks = [asyncio.create_task(sleeper(n, s)) for n, s in [("c", 3), ("a", 1), ("late", 9), ("b", 2), ("a2", 1)]]
    await settle()
    assert clock.sleepers == 5
    await clock.advance(5)
    assert woken == [("a", 1), ("a2", 1), ("b", 2), ("c", 3)]
    assert clock.now() == 5
    assert clock.sleepers == 1
    tasks[2].cancel()  # a cancelled sleeper is skipped
    await clock.advance(10)
    assert woken == [("a", 1), ("a2", 1), ("b", 2), ("c", 3)]
    assert clock.sleepers == 0


async def test_fake_clock_wakes_a_sleep_started_within_the_window(clock: FakeClock) -> None:
    woken: list[float] = []

    async def ticker() -> None:
        for _ in range(3):
            await clock.sleep(1)
            woken.append(clock.now())

    task = asyncio.create_task(ticker())
    await clock.advance(2.5)
    assert woken == [1, 2]
    await clock.advance(0.5)
    assert woken == [1, 2, 3]
    await task


async def test_fake_clock_edges(clock: FakeClock) -> None:
    await clock.sleep(0)  # does not wait for advance
    await clock.sleep(-1)
    with pytest.raises(ValueError):
        await clock.advance(-1)
    assert FakeClock(start=100).now() == 100


async def test_real_clock() -> None:
    real = RealClock()
    before = real.now()
    await real.sleep(0)
    assert real.now() >= before
