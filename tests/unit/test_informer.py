"""Informer relist/watch logic against a scripted ListerWatcher on a fake clock."""

from __future__ import annotations

from kaiwo.runtime.clock import FakeClock
from kaiwo.runtime.informer import (
    BACKOFF_MAX,
    Informer,
    ResourceVersionExpired,
    by_label,
    share_strings,
)
from kaiwo.runtime.objects import Obj
from tests.fakes import Events, Script, cm, run_until_idle


async def test_list_then_watch_events_in_order() -> None:
    script = Script(
        lists=[([cm("a", "1"), cm("b", "2")], "10")],
        watches=[
            [
                {"type": "ADDED", "object": cm("c", "11")},
                {"type": "MODIFIED", "object": cm("a", "12")},
                {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "15"}}},
                {"type": "DELETED", "object": cm("b", "16")},
            ]
        ],
    )
    clock, ev = FakeClock(), Events()
    inf = Informer(script, clock=clock)
    inf.add_handler(ev.handler())
    await run_until_idle(inf, script, clock)
    assert ev.log == [
        ("add", "ns/a", True),
        ("add", "ns/b", True),
        ("add", "ns/c", False),
        ("update", "ns/a", "12"),
        ("delete", "ns/b", ""),
    ]
    assert script.watch_calls == ["10", "16"]  # resumed from the last event after the stream ended
    assert inf.has_synced and sorted(inf.indexer.items) == ["ns/a", "ns/c"]
    assert all("managedFields" not in o["metadata"] for o in inf.objects())


async def test_gone_relists_and_emits_deletes_for_vanished_objects() -> None:
    script = Script(
        lists=[([cm("a", "1"), cm("b", "2"), cm("c", "3")], "10"), ([cm("a", "1"), cm("c", "20")], "30")],
        watches=[[{"type": "ERROR", "object": {"kind": "Status", "code": 410, "message": "too old"}}]],
    )
    clock, ev = FakeClock(), Events()
    inf = Informer(script, clock=clock)
    inf.add_handler(ev.handler())
    await run_until_idle(inf, script, clock)
    assert ev.log[3:] == [("delete", "ns/b", ""), ("update", "ns/c", "20")]  # a is unchanged: no event
    assert inf.relists == 2 and script.watch_calls == ["10", "30"]


async def test_expired_resource_version_error_also_relists() -> None:
    script = Script(lists=[([cm("a", "1")], "10"), ([], "40")], watches=[ResourceVersionExpired("410 Gone")])
    clock, ev = FakeClock(), Events()
    inf = Informer(script, clock=clock)
    inf.add_handler(ev.handler())
    await run_until_idle(inf, script, clock)
    assert ev.log == [("add", "ns/a", True), ("delete", "ns/a", "")]


async def test_errors_back_off_exponentially_to_the_cap() -> None:
    failures = 10
    script = Script(lists=[([], "1")], watches=[ConnectionError("down")] * failures)
    clock = FakeClock()
    sleeps: list[float] = []
    real_sleep = clock.sleep

    async def recording_sleep(s: float) -> None:
        sleeps.append(s)
        await real_sleep(s)

    clock.sleep = recording_sleep  # type: ignore[method-assign,assignment]
    inf = Informer(script, clock=clock)
    await run_until_idle(inf, script, clock, advance=1.0)
    expected = [min(0.8 * 2**i, BACKOFF_MAX) for i in range(failures)]
    assert len(sleeps) == failures
    for got, base in zip(sleeps, expected, strict=True):
        assert base <= got <= base * 1.2  # up to 20 % jitter
    assert script.watch_calls == ["1"] * (failures + 1)  # resumes from the same version; no relist
    assert inf.relists == 1


async def test_indexes_by_namespace_owner_and_label() -> None:
    script = Script(
        lists=[
            (
                [
                    cm("a", "1", ns="x", owner="u1", team="red"),
                    cm("b", "2", ns="y", owner="u1"),
                    cm("c", "3", ns="x", team="blue"),
                ],
                "5",
            )
        ],
        watches=[[{"type": "MODIFIED", "object": cm("a", "6", ns="x", team="blue")}]],
    )
    clock = FakeClock()
    inf = Informer(script, clock=clock)
    inf.add_index("team", by_label("team"))
    await run_until_idle(inf, script, clock)

    def names(objs: list[Obj]) -> list[str]:
        return sorted(o["metadata"]["name"] for o in objs)

    assert names(inf.objects("x")) == ["a", "c"]
    assert names(inf.by_index("owner", "u1")) == ["b"]  # a lost its owner reference in the update
    assert names(inf.by_index("team", "blue")) == ["a", "c"]
    assert inf.by_index("team", "red") == []


async def test_transform_drops_fields_before_caching() -> None:
    def drop_labels(o: Obj) -> Obj:
        o["metadata"].pop("labels", None)
        return o

    script = Script(lists=[([cm("a", "1", team="red")], "5")], watches=[])
    clock = FakeClock()
    inf = Informer(script, clock=clock, transform=drop_labels)
    await run_until_idle(inf, script, clock)
    assert "labels" not in inf.objects()[0]["metadata"]


def fresh(text: str) -> str:
    """A new string object equal to ``text`` (literals are shared by the compiler already)."""
    return "".join(list(text))


async def test_short_strings_of_cached_objects_are_shared() -> None:
    def labelled(name: str, rv: str) -> Obj:
        obj = cm(name, rv)
        obj["metadata"]["labels"] = {"team": fresh("ml-research"), "note": fresh("n" * 65)}
        return obj

    script = Script(lists=[([labelled("a", "1")], "10")], watches=[[{"type": "ADDED", "object": labelled("b", "11")}]])
    clock = FakeClock()
    inf = Informer(script, clock=clock)
    await run_until_idle(inf, script, clock)
    a, b = (o["metadata"]["labels"] for o in sorted(inf.objects(), key=lambda o: str(o["metadata"]["name"])))
    assert a["team"] is b["team"]  # one string for both objects (listed and watched alike)
    assert a["note"] == b["note"] and a["note"] is not b["note"]  # long values stay as they came


def test_share_strings_reaches_into_lists_and_changes_no_value() -> None:
    obj: Obj = {"status": {"conditions": [{"type": fresh("Ready"), "n": 1}]}, "tags": [fresh("gpu"), 2, None]}
    before = repr(obj)
    share_strings(obj)
    assert repr(obj) == before
    assert obj["status"]["conditions"][0]["type"] is "Ready"  # noqa: F632 (identity is the point)
    assert obj["tags"][0] is "gpu"  # noqa: F632
