"""Applier skipping and status minimality, Expectations, on a recording fake client."""

from __future__ import annotations

from kaiwo.runtime.apply import DEFAULT_HASH_ANNOTATION, Applier, Expectations, desired_hash
from kaiwo.runtime.objects import Obj
from tests.builders import ObjectBuilder
from tests.fakes import Call, RecordingClient


def thing(namespace: str | None = None) -> ObjectBuilder:
    """An object of some kind with a status subresource."""
    return ObjectBuilder("g/v1", "K", "x", namespace)


def cm(**data: str) -> Obj:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": "ns"}, "data": data}


async def test_apply_records_hash_and_skips_when_live_has_it() -> None:
    client = RecordingClient()
    applier = Applier(client, "mgr")  # type: ignore[arg-type]
    sent = await applier.apply(cm(a="1"), None)
    assert sent is not None
    assert sent["metadata"]["annotations"][DEFAULT_HASH_ANNOTATION] == desired_hash(cm(a="1"))
    live = sent
    assert await applier.apply(cm(a="1"), live) is None
    assert len(client.calls) == 1
    assert await applier.apply(cm(a="2"), live) is not None
    assert len(client.calls) == 2 and (applier.applied, applier.skipped) == (2, 1)


def test_hash_is_independent_of_key_order() -> None:
    a = {"kind": "K", "metadata": {"name": "n", "labels": {"x": "1", "y": "2"}}}
    b = {"metadata": {"labels": {"y": "2", "x": "1"}, "name": "n"}, "kind": "K"}
    assert desired_hash(a) == desired_hash(b)
    assert desired_hash(a) != desired_hash({**a, "kind": "L"})


async def test_status_is_written_only_when_it_differs() -> None:
    client = RecordingClient()
    applier = Applier(client, "mgr")  # type: ignore[arg-type]
    live = thing("ns").resource_version("7").status_field("phase", "RUNNING").obj()
    assert await applier.write_status(live, {"phase": "RUNNING"}) is None
    assert client.calls == []
    assert (await applier.write_status(live, {"phase": "COMPLETE"}) or {})["status"] == {"phase": "COMPLETE"}
    # the cached resourceVersion is a precondition: a stale cache cannot overwrite newer status
    precondition = {"metadata": {"resourceVersion": "7"}, "status": {"phase": "COMPLETE"}}
    assert client.calls == [Call("patch", "K", "x", "ns", precondition, "status")]


def test_expectations_wait_for_the_cache_and_expire() -> None:
    exp = Expectations(ttl=300)
    assert exp.satisfied("ns/owner")
    exp.expect("ns/owner", "ns/child-abc")
    assert not exp.satisfied("ns/owner")
    exp.observed("ns/owner", "ns/child-abc")
    assert exp.satisfied("ns/owner")
    expiring = Expectations(ttl=0)
    expiring.expect("o", "c")
    assert expiring.satisfied("o")  # a lost watch event cannot block the owner forever


async def test_a_stale_cache_does_not_repeat_our_last_status_write() -> None:
    client = RecordingClient()
    applier = Applier(client, "mgr")  # type: ignore[arg-type]
    stale = thing("ns").uid("u1").resource_version("10").status_field("phase", "PENDING").obj()
    assert await applier.write_status(stale, {"phase": "RUNNING"}) is not None
    # the watch has not delivered our write: the same status is not sent again, another one is
    assert await applier.write_status(stale, {"phase": "RUNNING"}) is None
    assert await applier.write_status(stale, {"phase": "COMPLETE"}) is not None
    assert [c.body["status"]["phase"] for c in client.calls] == ["RUNNING", "COMPLETE"]
    # the cache moved on (someone reset the status): the live object decides again
    moved = {**stale, "metadata": {**stale["metadata"], "resourceVersion": "12"}}
    assert await applier.write_status(moved, {"phase": "COMPLETE"}) is not None
    assert len(client.calls) == 3


async def test_status_comparison_can_ignore_fields() -> None:
    client = RecordingClient()
    applier = Applier(client, "mgr")  # type: ignore[arg-type]
    live = thing().uid("u").resource_version("1").status_field("phase", "RUNNING").status_field("duration", 5).obj()

    def differs(old: Obj, new: Obj) -> bool:
        return old.get("phase") != new.get("phase")

    assert await applier.write_status(live, {"phase": "RUNNING", "duration": 9}, differs) is None
    assert client.calls == []
