"""Manager start-up and supervision with scripted informers: a cache that cannot sync holds back only the
controllers that watch it (and /readyz names it); a dead informer fails readiness and ends ``run`` with 1."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from kaiwo.manager import ensure_kaiwo_config
from kaiwo.runtime.controller import Controller, Request
from kaiwo.runtime.informer import Informer
from kaiwo.runtime.manager import Manager, ManagerOptions
from kaiwo.runtime.objects import Obj
from tests.fakes import RecordingClient, RecordingReconciler, cache


class Lists:
    """A ListerWatcher whose list answers at once (``syncs``) or never; its watch stays open and quiet."""

    def __init__(self, syncs: bool) -> None:
        self.syncs = syncs

    async def list_page(self, continue_token: str | None) -> Obj:
        if not self.syncs:
            await asyncio.Event().wait()
        item = {"metadata": {"name": "x", "namespace": "ns", "resourceVersion": "1"}}
        return {"items": [item], "metadata": {"resourceVersion": "1"}}

    async def watch(self, resource_version: str, timeout_seconds: int, client_grace: float) -> AsyncIterator[Obj]:
        await asyncio.Event().wait()
        yield {}


class NoClient:
    def __init__(self) -> None:
        self.observers: list[Any] = []


def manager(**opts: Any) -> Manager:
    options = ManagerOptions(health_address="", metrics_address="", resync_period=0, **opts)
    return Manager(NoClient(), options)  # type: ignore[arg-type]


async def test_a_cache_that_cannot_sync_holds_back_only_the_controllers_watching_it() -> None:
    mgr = manager(cache_sync_timeout=0.2)
    good, stuck = Informer(Lists(True), name="Good.v1"), Informer(Lists(False), name="Optional.example.com/v1")
    mgr.informers[("v1", "Good", None, None)] = good
    mgr.informers[("example.com/v1", "Optional", None, None)] = stuck
    r1, r2 = RecordingReconciler(), RecordingReconciler()
    c1, c2 = Controller("uses-good", r1), Controller("uses-optional", r2)
    c1.watches(good)
    c2.watches(stuck)
    mgr.add(c1)
    mgr.add(c2)
    stop = asyncio.Event()
    task = asyncio.create_task(mgr.run(stop))
    await asyncio.sleep(0.6)
    assert r1.seen == [Request("ns", "x")] and r2.seen == []
    reason = mgr.not_ready()
    assert "Optional.example.com/v1" in reason and "uses-optional" in reason and "uses-good" not in reason
    stop.set()
    assert await asyncio.wait_for(task, 5) == 0


async def test_a_dead_informer_fails_readiness_and_ends_run_with_1() -> None:
    mgr = manager()
    inf = Informer(Lists(True), name="Good.v1")
    mgr.informers[("v1", "Good", None, None)] = inf
    c = Controller("c", RecordingReconciler())
    c.watches(inf)
    mgr.add(c)
    real_run = inf.run

    async def dies() -> None:
        task = asyncio.create_task(real_run())
        await asyncio.sleep(0.3)
        task.cancel()
        raise RuntimeError("a bug")

    inf.run = dies  # type: ignore[method-assign]
    code = await asyncio.wait_for(mgr.run(asyncio.Event()), 5)
    assert code == 1 and mgr.failed == "informer-Good.v1"
    assert "informer-Good.v1 died" in mgr.not_ready()


async def test_the_default_kaiwo_config_is_created_once_and_a_restart_writes_nothing() -> None:
    configs = cache()
    client = RecordingClient({"KaiwoConfig": configs})
    await ensure_kaiwo_config(client)  # type: ignore[arg-type]
    assert client.writes == ["create KaiwoConfig"]
    client.clear()
    await ensure_kaiwo_config(client)  # type: ignore[arg-type]
    assert client.writes == [], "a restart over an existing KaiwoConfig must not even try to create it"
