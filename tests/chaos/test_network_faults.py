"""A fault proxy between one operator replica and the apiserver: delays and drops are ridden out; a silent path
makes the leader step down before the standby can acquire (their reconcile records never overlap); a stalled
watch is replaced within the read-idle timeout; a 429 storm costs a bounded number of requests."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

from kaiwo.runtime.client import Client
from kaiwo.runtime.informer import ApiListerWatcher, FuncHandler, Informer
from tests.chaos.conftest import (
    Operators,
    each_has_one_child,
    kaiwojob,
    leader,
    metric,
    ready,
    wait_exit,
)
from tests.chaos.proxy import FaultProxy
from tests.e2e.helpers import assert_no_overlap, eventually

RENEW_DEADLINE = 10.0


class Load:
    """Creates one KaiwoJob every ``period`` seconds so that the leader always has something to reconcile."""

    def __init__(self, client: Client, ns: str, period: float = 0.5) -> None:
        self.client, self.ns, self.period = client, ns, period
        self.names: list[str] = []
        self.task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            name = f"load-{len(self.names)}"
            await self.client.create(kaiwojob(name, self.ns))
            self.names.append(name)
            await asyncio.sleep(self.period)

    def start(self) -> None:
        self.task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        assert self.task is not None
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


async def test_leader_behind_a_faulty_network_rides_out_delay_and_drops_and_steps_down_when_silent(
    client: Client,
    kubeconfig: str,
    namespace: str,
    kaiwo_crds: None,
    operators: Operators,
    proxy: FaultProxy,
    tmp_path: Path,
) -> None:
    proxied = str(proxy.kubeconfig(Path(kubeconfig), tmp_path / "proxied.kubeconfig"))
    a = operators.spawn("a", proxied)
    assert await leader(client, namespace, "a") == "a"
    b = operators.spawn("b", kubeconfig)
    await eventually(lambda: ready(b), "standby b ready", timeout=60)
    load = Load(client, namespace)
    load.start()
    try:
        proxy.set("delay", delay=0.2)
        await asyncio.sleep(6)
        assert await leader(client, namespace, "a", "b") == "a", "a 0.2 s delay must not cost the Lease"

        proxy.set("drop")
        await asyncio.sleep(3)
        proxy.set("pass")
        resumed = time.time()
        await eventually(
            lambda: _reconciled_after(operators, "a", resumed), "a reconciles again after the drops", timeout=30
        )
        assert await leader(client, namespace, "a", "b") == "a", "3 s of dropped connections must not cost the Lease"

        silent = time.time()
        proxy.set("silent")
        code = await wait_exit(a, RENEW_DEADLINE + 10)
        stepped_down = time.time() - silent
        assert code == 1, f"the leader behind a silent network must exit with 1 (got {code})"
        took_over = await eventually(
            lambda: _reconciled_after(operators, "b", silent), "b reconciles after taking over", timeout=40
        )
        metric("silent_leader_exit_seconds", stepped_down)
        metric("failover_silent_network_seconds", took_over - silent)
        assert stepped_down < took_over - silent, "the old leader must be gone before the standby reconciles"
    finally:
        await load.stop()
    records = operators.reconciles()
    a_last = max(t for w, t in records if w == "a")
    metric("silent_gap_last_a_to_first_b_seconds", took_over - a_last)
    assert_no_overlap(records)
    await eventually(lambda: each_has_one_child(client, namespace, load.names), "one Job per KaiwoJob", timeout=60)


async def _reconciled_after(operators: Operators, who: str, t: float) -> float | None:
    return operators.first_reconcile(who, t)


async def test_a_stalled_watch_is_replaced_within_the_idle_timeout(
    client: Client, kubeconfig: str, namespace: str, proxy: FaultProxy, tmp_path: Path
) -> None:
    idle = 3.0
    proxied = str(proxy.kubeconfig(Path(kubeconfig), tmp_path / "proxied.kubeconfig"))
    seen: dict[str, float] = {}
    async with await Client.from_kubeconfig(proxied) as pc:
        res = await pc.resource("v1", "ConfigMap")
        inf = Informer(ApiListerWatcher(pc, res, namespace, idle_timeout=idle), name="configmaps")

        def arrived(obj: dict[str, Any], initial: bool) -> None:
            seen.setdefault(obj["metadata"]["name"], time.monotonic())

        inf.add_handler(FuncHandler(add=arrived))
        task = asyncio.create_task(inf.run())
        try:
            await asyncio.wait_for(inf.wait_synced(), 30)
            await asyncio.sleep(0.5)  # the watch is open
            proxy.set("stall")  # the open watch never delivers again; new connections work
            stalled = time.monotonic()
            cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "after-stall", "namespace": namespace}}
            await client.create(cm)
            await eventually(lambda: _has(seen, "after-stall"), "the event through a replaced watch", timeout=30)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    replaced = seen["after-stall"] - stalled
    metric("stalled_watch_replaced_seconds", replaced)
    assert replaced <= idle + 3.0, f"the stalled watch was replaced after {replaced:.1f}s (idle timeout {idle}s)"
    assert inf.watches >= 2


async def some_have_a_child(client: Client, namespace: str) -> bool:
    return bool(await client.list("batch/v1", "Job", namespace))


async def _has(seen: dict[str, float], name: str) -> bool:
    return name in seen


async def test_a_429_storm_costs_a_bounded_number_of_requests_and_work_converges_after_it(
    client: Client,
    kubeconfig: str,
    namespace: str,
    kaiwo_crds: None,
    operators: Operators,
    proxy: FaultProxy,
    tmp_path: Path,
) -> None:
    storm, retry_after = 15.0, 2
    proxied = str(proxy.kubeconfig(Path(kubeconfig), tmp_path / "proxied.kubeconfig"))
    op = operators.spawn("solo", proxied, "--no-leader-elect")
    await eventually(lambda: ready(op), "the operator ready", timeout=90)
    # The storm begins while the operator is busy: a backlog of KaiwoJobs is being reconciled by its workers (the
    # state CI met when an earlier test had left work behind), and more arrive during the storm.
    backlog = [f"busy-{i}" for i in range(40)]
    await asyncio.gather(*(client.create(kaiwojob(n, namespace)) for n in backlog))
    await eventually(lambda: some_have_a_child(client, namespace), "the backlog being worked on", timeout=30)
    proxy.set("http429", retry_after=retry_after)
    names = [f"storm-{i}" for i in range(10)]
    for n in names:
        await client.create(kaiwojob(n, namespace))
    await asyncio.sleep(storm)
    proxy.set("pass")
    ended = time.time()
    count = proxy.throttled
    metric("storm_429_requests", count)
    metric("storm_429_requests_per_second", count / storm)
    assert op.exited() is None, "a 429 storm must not stop the operator"
    # The client's shared pushback (kaiwo.runtime.pushback): every call in flight when the storm begins may meet
    # one 429 (dozens: informers re-listing, workers mid-reconcile), then the whole client sends one probe per
    # Retry-After. Callers retrying on their own (64 workers per controller) would make several hundred.
    assert count <= 100 + storm / retry_after, f"{count} requests in a {storm:.0f}s 429 storm: {proxy.throttled_by}"
    await eventually(lambda: each_has_one_child(client, namespace, backlog + names), "one Job per KaiwoJob", timeout=90)
    metric("storm_converge_seconds", time.time() - ended)
