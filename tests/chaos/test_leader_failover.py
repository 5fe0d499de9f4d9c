"""Replicas of the real operator hand over on SIGTERM (with a backlog) and take over after SIGKILL (mid-burst):
one leader at a time (reconcile records never overlap), every KaiwoJob ends with exactly one child Job, and no Job
is suspended again after Kueue admitted it (so no pod is restarted).

Bursts are 40 KaiwoJobs each (the issue asks for 300; smaller to fit the suite's time budget on 2 cores).
"""

from __future__ import annotations

import signal
import time

from kaiwo.runtime.client import Client
from tests.chaos.conftest import (
    Operators,
    burst,
    each_has_one_child,
    leader,
    metric,
    ready,
    resuspended_jobs,
    wait_exit,
)
from tests.e2e.helpers import assert_no_overlap, eventually

BURST = 40
LEASE_DURATION = 15.0


async def test_graceful_handover_with_a_backlog_then_takeover_after_sigkill_mid_burst(
    client: Client, kubeconfig: str, namespace: str, kaiwo_crds: None, operators: Operators
) -> None:
    ops = {n: operators.spawn(n, kubeconfig) for n in ("a", "b")}
    first = await leader(client, namespace, "a", "b")
    second = "b" if first == "a" else "a"
    await eventually(lambda: _reconciled(operators, first), f"{first} reconciles", timeout=60)

    # Graceful: a backlog of KaiwoJobs, then SIGTERM while the leader works through it.
    names = [f"term-{i}" for i in range(BURST)]
    await burst(client, namespace, names)
    sent = time.time()
    ops[first].signal(signal.SIGTERM)
    code = await wait_exit(ops[first], 40)
    assert code == 0, f"{first} exited {code} after SIGTERM"
    took_over = await eventually(
        lambda: _first_after(operators, second, sent), f"{second} reconciles after the hand-over", timeout=30
    )
    graceful = took_over - sent
    metric("failover_graceful_seconds", graceful)
    done_by_first = {k for k in operators.keys(first, sent + 30) if "/term-" in k}
    metric("graceful_backlog_left_to_successor", BURST - len(done_by_first))
    assert graceful <= 3.0, f"graceful hand-over took {graceful:.1f}s"
    await eventually(lambda: each_has_one_child(client, namespace, names), "one Job per KaiwoJob", timeout=90)

    # Crash: a third replica stands by; SIGKILL the leader in the middle of a burst.
    ops["c"] = operators.spawn("c", kubeconfig)
    await eventually(lambda: ready(ops["c"]), "standby c ready", timeout=60)
    names2 = [f"kill-{i}" for i in range(BURST)]
    await burst(client, namespace, names2[: BURST // 3])
    killed = time.time()
    ops[second].signal(signal.SIGKILL)
    await burst(client, namespace, names2[BURST // 3 :])
    took_over = await eventually(
        lambda: _first_after(operators, "c", killed), "c reconciles after the kill", timeout=LEASE_DURATION + 30
    )
    takeover = took_over - killed
    metric("failover_sigkill_seconds", takeover)
    # c counts the lease from the last renewal its watch delivered and tries when that expires (runtime.md
    # #leader-election): at most a lease duration after the kill, plus the time to start reconciling.
    assert takeover <= LEASE_DURATION + 3.0, f"takeover after SIGKILL took {takeover:.1f}s"
    await eventually(lambda: each_has_one_child(client, namespace, names + names2), "one Job per KaiwoJob", timeout=90)
    assert_no_overlap(operators.reconciles())
    assert await resuspended_jobs(client, namespace) == {}, "a failover re-suspended running Jobs (pods restarted)"


async def _reconciled(operators: Operators, who: str) -> bool:
    return operators.first_reconcile(who) is not None


async def _first_after(operators: Operators, who: str, t: float) -> float | None:
    return operators.first_reconcile(who, t)
