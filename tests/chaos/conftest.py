"""Chaos fixtures: real operator processes, a fault proxy, and the records that prove one leader at a time.

The cluster, namespace and CRD fixtures are the e2e ones (tests/conftest.py): one cluster per session. Every
chaos test is also marked ``e2e`` (it needs the cluster). Measured numbers are printed as ``CHAOS <name>=<value>``
lines (run pytest with ``-s`` to see them).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import aiohttp
import pytest
import yaml

from kaiwo.devcluster.cluster import DevCluster
from kaiwo.manager import LEASE_NAME
from kaiwo.runtime.client import Client
from kaiwo.runtime.objects import Obj
from tests.chaos.proxy import FaultProxy
from tests.e2e import helpers
from tests.e2e.helpers import eventually, times_reported


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/chaos" in str(item.path):
            item.add_marker(pytest.mark.e2e)
            item.add_marker(pytest.mark.chaos)


def metric(name: str, value: float | int | str) -> None:
    print(f"CHAOS {name}={value:.2f}" if isinstance(value, float) else f"CHAOS {name}={value}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Operator:
    """One operator process (a replica), its health port and its log."""

    name: str
    proc: subprocess.Popen[bytes]
    health: int
    log: Path

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def exited(self) -> int | None:
        return self.proc.poll()


class Operators:
    """Spawns operator replicas that append their reconciles to one activity file."""

    def __init__(self, folder: Path, namespace: str) -> None:
        self.folder = folder
        self.namespace = namespace
        self.activity = folder / "activity.log"
        self.activity.touch()
        self.running: list[Operator] = []

    def spawn(self, name: str, kubeconfig: str, *flags: str) -> Operator:
        health = free_port()
        log = self.folder / f"{name}.log"
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tests.chaos.operator_candidate",
                    str(self.activity),
                    "--kubeconfig",
                    kubeconfig,
                    "--leader-election-namespace",
                    self.namespace,
                    "--health-probe-bind-address",
                    f"127.0.0.1:{health}",
                    "--metrics-bind-address",
                    "0",
                    "--log-format",
                    "text",
                    *flags,
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "POD_NAME": name},
            )
        op = Operator(name, proc, health, log)
        self.running.append(op)
        return op

    def reconciles(self) -> list[tuple[str, float]]:
        """(replica, unix time) of every reconcile start, in file order."""
        out = []
        for line in self.activity.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 2:
                out.append((parts[0], float(parts[1])))
        return out

    def keys(self, who: str, before: float = float("inf")) -> set[str]:
        """The object keys a replica reconciled (before a time)."""
        out = set()
        for line in self.activity.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 4 and parts[0] == who and float(parts[1]) < before:
                out.add(parts[3])
        return out

    def first_reconcile(self, who: str, after: float = 0.0) -> float | None:
        return next((t for w, t in self.reconciles() if w == who and t >= after), None)

    def stop_all(self) -> None:
        for op in self.running:
            if op.proc.poll() is None:
                op.proc.kill()
            op.proc.wait(10)


@pytest.fixture
def operators(tmp_path: Path, namespace: str) -> Iterator[Operators]:
    ops = Operators(tmp_path, namespace)
    try:
        yield ops
    finally:
        ops.stop_all()


async def wait_exit(op: Operator, timeout: float) -> int | None:
    """The replica's exit code, or None if it still runs after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code = op.exited()
        if code is not None:
            return code
        await asyncio.sleep(0.05)
    return None


async def lease_holder(client: Client, namespace: str) -> str:
    lease = await client.get_or_none("coordination.k8s.io/v1", "Lease", LEASE_NAME, namespace)
    return ((lease or {}).get("spec") or {}).get("holderIdentity") or ""


async def leader(client: Client, namespace: str, *names: str) -> str:
    """The replica name whose identity holds the Lease (waits until one of ``names`` does)."""

    async def which() -> str | None:
        holder = await lease_holder(client, namespace)
        return next((n for n in names if holder.startswith(f"{n}_")), None)

    found: str = await eventually(which, f"one of {names} holds the Lease", timeout=60, interval=0.1)
    return found


async def ready(op: Operator) -> bool:
    with contextlib.suppress(aiohttp.ClientError, OSError):
        async with (
            aiohttp.ClientSession() as s,
            s.get(f"http://127.0.0.1:{op.health}/readyz", timeout=aiohttp.ClientTimeout(total=2)) as r,
        ):
            return r.status == 200
    return False


def kaiwojob(name: str, ns: str) -> Obj:
    return helpers.kaiwojob(name, ns, entrypoint="sleep 3600", user="chaos@amd.com")


async def children_by_owner(client: Client, ns: str) -> dict[str, int]:
    """KaiwoJob name -> how many Jobs it controls."""
    counts: dict[str, int] = {}
    for job in await client.list("batch/v1", "Job", ns):
        for ref in job["metadata"].get("ownerReferences") or []:
            if ref.get("kind") == "KaiwoJob" and ref.get("controller"):
                counts[ref["name"]] = counts.get(ref["name"], 0) + 1
    return counts


async def each_has_one_child(client: Client, ns: str, names: list[str]) -> dict[str, int] | None:
    counts = await children_by_owner(client, ns)
    assert all(c <= 1 for c in counts.values()), f"duplicate children: {counts}"
    return counts if all(counts.get(n) == 1 for n in names) else None


async def resuspended_jobs(client: Client, ns: str) -> dict[str, int]:
    """Jobs suspended more than once (a Job created suspended gets one ``Suspended`` event; another means its pods
    were deleted and would start again): name -> times. Aggregated Events count as often as they say."""
    times: dict[str, int] = {}
    for e in await client.list("v1", "Event", ns):
        if e.get("reason") == "Suspended" and (e.get("involvedObject") or {}).get("kind") == "Job":
            name = e["involvedObject"]["name"]
            times[name] = times.get(name, 0) + times_reported(e)
    return {name: n for name, n in times.items() if n > 1}


async def burst(client: Client, ns: str, names: list[str]) -> None:
    for n in names:
        await client.create(kaiwojob(n, ns))


@pytest.fixture
def cluster_state(dev_cluster: DevCluster | None) -> Path:
    if dev_cluster is None:
        pytest.skip("needs the local control plane (its CA for the proxy, its processes to stop)")
    return dev_cluster.layout.root


def apiserver_address(kubeconfig: str) -> tuple[str, int]:
    url = urlparse(yaml.safe_load(Path(kubeconfig).read_text())["clusters"][0]["cluster"]["server"])
    return url.hostname or "127.0.0.1", url.port or 443


@pytest.fixture
async def proxy(cluster_state: Path, kubeconfig: str) -> AsyncIterator[FaultProxy]:
    p = FaultProxy(cluster_state, apiserver_address(kubeconfig))
    await p.start()
    try:
        yield p
    finally:
        await p.close()


def seconds_since(t: float) -> float:
    return time.time() - t
