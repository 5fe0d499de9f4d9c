"""Two manager processes on one Lease: one leads; SIGTERM hands over in about one retry period, SIGKILL within
lease duration + retry period; their reconciles never overlap in time."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path

from kaiwo.runtime.client import Client
from tests.e2e.helpers import assert_no_overlap, eventually

LEASE = "kaiwo-e2e-leader"
RETRY, LEASE_DURATION = 2.0, 15.0


def spawn(kubeconfig: str, ns: str, out: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.e2e.leader_candidate", kubeconfig, ns, LEASE, str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def identity(p: subprocess.Popen[str]) -> str:
    assert p.stdout is not None
    return p.stdout.readline().split()[1]


def activity(out: Path) -> list[tuple[str, float]]:
    return [(who, float(t)) for who, t in (line.split() for line in out.read_text().splitlines() if line)]


async def holder(client: Client, ns: str) -> str:
    lease = await client.get_or_none("coordination.k8s.io/v1", "Lease", LEASE, ns)
    return ((lease or {}).get("spec") or {}).get("holderIdentity") or ""


async def test_one_leader_graceful_and_crash_handover(
    client: Client, kubeconfig: str, namespace: str, tmp_path: Path
) -> None:
    await client.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "tick", "namespace": namespace}})
    out = tmp_path / "activity.log"
    out.touch()
    a = spawn(kubeconfig, namespace, out)
    b = spawn(kubeconfig, namespace, out)
    procs = {identity(a): a, identity(b): b}
    c: subprocess.Popen[str] | None = None
    try:
        first = await eventually(lambda: holder(client, namespace), "a first leader", timeout=30)
        await eventually(lambda: _has_activity(out, first), "reconciles of the leader", timeout=15)
        assert {who for who, _ in activity(out)} == {first}, "only the leader may reconcile"
        second = next(i for i in procs if i != first)

        # Graceful: SIGTERM releases the Lease; the standby takes over within about one retry period.
        procs[first].send_signal(signal.SIGTERM)
        started = time.monotonic()
        assert procs[first].wait(30) == 0
        await eventually(
            lambda: holder_is(client, namespace, second), "handover after SIGTERM", timeout=15, interval=0.05
        )
        graceful = time.monotonic() - started
        assert graceful <= RETRY + 1.5, f"graceful handover took {graceful:.1f}s"
        await eventually(lambda: _has_activity(out, second), "reconciles of the new leader", timeout=15)

        # Crash: a new standby takes over within lease duration + retry period after SIGKILL of the leader.
        c = spawn(kubeconfig, namespace, out)
        third = identity(c)
        await asyncio.sleep(3)  # let the standby observe the current lease
        procs[second].send_signal(signal.SIGKILL)
        killed_at = time.time()
        started = time.monotonic()
        await eventually(
            lambda: holder_is(client, namespace, third), "takeover after SIGKILL", timeout=30, interval=0.1
        )
        crash = time.monotonic() - started
        assert crash <= LEASE_DURATION + RETRY + 1.0, f"takeover after a crash took {crash:.1f}s"
        await eventually(lambda: _has_activity(out, third), "reconciles of the third leader", timeout=15)
        events = activity(out)
        assert all(t <= killed_at for who, t in events if who == second)
        assert_no_overlap(events)
    finally:
        for p in (a, b, c):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()


async def _has_activity(out: Path, who: str) -> bool:
    return any(w == who for w, _ in activity(out))


async def holder_is(client: Client, ns: str, who: str) -> bool:
    return await holder(client, ns) == who
