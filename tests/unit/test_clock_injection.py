"""Runtime parts read time only through what they are given: a ``Clock`` (monotonic, for waits and rate limits)
and a ``wall`` callable (epoch seconds, for the timestamps they write)."""

from __future__ import annotations

from kaiwo.runtime.apply import Expectations
from kaiwo.runtime.clock import FakeClock
from kaiwo.runtime.events import BURST, REFILL_SECONDS, EventRecorder
from kaiwo.runtime.objects import Obj

NEW_YEAR = 1_767_225_600.0  # 2026-01-01T00:00:00Z
POD: Obj = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "ns", "uid": "u1"}}


class EventSink:
    """Takes Event creates and patches; answers a create with a named Event."""

    def __init__(self) -> None:
        self.created: list[Obj] = []
        self.patches: list[Obj] = []

    async def create(self, obj: Obj) -> Obj:
        self.created.append(obj)
        return {**obj, "metadata": {**obj["metadata"], "name": f"p.{len(self.created)}"}}

    async def patch(self, api_version: str, kind: str, name: str, body: Obj, namespace: str | None = None) -> Obj:
        self.patches.append(body)
        return body


async def test_event_timestamps_come_from_the_injected_wall_clock() -> None:
    now = [NEW_YEAR + 0.5]
    sink = EventSink()
    recorder = EventRecorder(sink, "test", wall=lambda: now[0])  # type: ignore[arg-type]
    await recorder.emit(POD, "Started", "it started")
    assert sink.created[0]["firstTimestamp"] == sink.created[0]["lastTimestamp"] == "2026-01-01T00:00:00Z"
    now[0] += 61.25
    await recorder.emit(POD, "Started", "it started")  # a repeat: the first Event is counted up
    assert sink.patches == [
        {
            "count": 2,
            "lastTimestamp": "2026-01-01T00:01:01Z",
            "series": {"count": 2, "lastObservedTime": "2026-01-01T00:01:01.750000Z"},
        }
    ]


async def test_event_spam_filter_refills_on_the_injected_clock() -> None:
    clock = FakeClock()
    sink = EventSink()
    recorder = EventRecorder(sink, "test", clock=clock, wall=lambda: NEW_YEAR)  # type: ignore[arg-type]
    for i in range(BURST + 1):
        await recorder.emit(POD, "Changed", f"change {i}")
    assert (len(sink.created), recorder.dropped) == (BURST, 1)
    await clock.advance(REFILL_SECONDS)  # one token back
    await recorder.emit(POD, "Changed", "after the refill")
    assert (len(sink.created), recorder.dropped) == (BURST + 1, 1)


async def test_expectations_give_up_after_their_ttl_on_the_injected_clock() -> None:
    clock = FakeClock()
    exp = Expectations(ttl=30.0, clock=clock)
    exp.expect("ns/owner", "ns/child")
    await clock.advance(30.0)
    assert not exp.satisfied("ns/owner")
    await clock.advance(0.5)
    assert exp.satisfied("ns/owner")
