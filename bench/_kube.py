"""Shared helpers of the benchmarks that need a Kubernetes API server (bench_informer, bench_resync).

A cluster is either given (``--kubeconfig``) or a local one is started with DevCluster in /tmp/kd-bench
(reused when it already runs; stopped at the end only when this process started it).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import inspect
import os
import platform
import secrets
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import orjson

from kaiwo.runtime.client import ApiError, Client
from kaiwo.runtime.objects import Obj

DEFAULT_STATE = Path("/tmp/kd-bench")


def write_results(path: Path, result: dict[str, Any]) -> None:
    """Write a benchmark's result as indented JSON (bench/results/ is not committed) and say where."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")
    print(f"wrote {path}")


class BenchError(RuntimeError):
    """A benchmark step failed or timed out; the message says which and why."""


# --- the machine ---------------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_total_kib = 0
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_total_kib = int(line.split()[1])
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_count": os.cpu_count(),
        "cpu_model": model or platform.processor() or "unknown",
        "mem_total_gib": round(mem_total_kib / 1024 / 1024, 1),
        "python": sys.version.split()[0],
        "python_impl": platform.python_implementation(),
        "platform": platform.platform(),
    }


def print_machine(m: dict[str, Any]) -> None:
    print(
        f"machine: {m['nproc']} CPUs ({m['cpu_model']}), {m['mem_total_gib']} GiB, "
        f"{m['python_impl']} {m['python']}, {m['platform']}"
    )


def status_kib(field: str) -> int:
    """A field of /proc/self/status in KiB (VmRSS, VmHWM, ...)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise BenchError(f"/proc/self/status has no {field}")


def rss_bytes(collect: bool = True) -> int:
    """Resident set size after a full garbage collection."""
    if collect:
        gc.collect()
    return status_kib("VmRSS") * 1024


def reset_peak_rss() -> bool:
    """Reset VmHWM (Linux >= 4.0: write 5 to clear_refs); False if not permitted."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


class CpuWall:
    """Wall and CPU (time.process_time: this process, all threads) seconds of a block."""

    def __init__(self) -> None:
        self.wall = self.cpu = 0.0

    @contextlib.contextmanager
    def measure(self) -> Iterator[CpuWall]:
        wall0, cpu0 = time.perf_counter(), time.process_time()
        try:
            yield self
        finally:
            self.wall = time.perf_counter() - wall0
            self.cpu = time.process_time() - cpu0


# --- the cluster ---------------------------------------------------------------------------------------------


class ClusterHandle:
    """The kubeconfig to use, and how to stop the local cluster if this process started it."""

    def __init__(self, kubeconfig: str | None, state: Path = DEFAULT_STATE) -> None:
        self.given = kubeconfig
        self.state = state
        self.started = False
        self.kubeconfig = kubeconfig or ""

    def up(self) -> str:
        if self.given:
            return self.given
        from kaiwo.devcluster.cluster import DevCluster  # only needed without --kubeconfig

        cluster = DevCluster(self.state)
        running = cluster.status().running
        print(
            f"local cluster in {self.state}: {'reusing the running one' if running else 'starting (~30 s)'}", flush=True
        )
        started = time.perf_counter()
        # Only the control plane: no third-party controllers (addons) are needed here.
        path = cluster.up(addons=()) if "addons" in inspect.signature(cluster.up).parameters else cluster.up()
        self.started = not running
        if self.started:
            print(f"local cluster ready in {time.perf_counter() - started:.1f} s", flush=True)
        self.kubeconfig = str(path)
        return self.kubeconfig

    def down(self) -> None:
        if not self.started:
            return
        from kaiwo.devcluster.cluster import DevCluster

        print(f"stopping the local cluster in {self.state} (started by this benchmark)", flush=True)
        DevCluster(self.state).down()
        self.started = False


async def create_namespace(client: Client, prefix: str) -> str:
    name = prefix + secrets.token_hex(3)
    await client.create(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": {"kaiwo.bench": "true"}}}
    )
    return name


async def delete_namespace(client: Client, ns: str, timeout: float = 120.0) -> float:
    """Delete every ConfigMap of ``ns`` (one deletecollection) and then the namespace; wait until it is gone.

    Returns the seconds it took; raises BenchError on timeout (the namespace is then still terminating)."""
    started = time.perf_counter()
    res = await client.resource("v1", "ConfigMap")
    with contextlib.suppress(ApiError):
        await client.request("DELETE", res.path(ns), timeout=timeout)
    await client.delete("v1", "Namespace", ns)
    deadline = time.monotonic() + timeout
    while await client.get_or_none("v1", "Namespace", ns) is not None:
        if time.monotonic() > deadline:
            raise BenchError(
                f"namespace {ns} still exists {timeout:.0f} s after its deletion "
                "(is the namespace controller of kube-controller-manager running?)"
            )
        await asyncio.sleep(0.5)
    return time.perf_counter() - started


@contextlib.asynccontextmanager
async def configmap_namespace(
    client: Client,
    prefix: str,
    n: int,
    concurrency: int,
    create_timeout: float,
    what: str = "ConfigMaps",
) -> AsyncIterator[tuple[str, dict[str, float]]]:
    """A fresh namespace holding ``n`` ConfigMaps ``cm-000000``...; yields (namespace, creation timings) and
    deletes the namespace afterwards (a failed clean-up is a warning, not a failed benchmark)."""
    ns = await create_namespace(client, prefix)
    try:
        print(f"namespace {ns}: creating {n} {what}, {concurrency} at a time", flush=True)
        created = await create_all(
            client, lambda i: configmap(ns, f"cm-{i:06d}", i), n, concurrency, timeout=create_timeout
        )
        print(
            f"  created {n} in {created['wall_s']:.1f} s ({created['per_s']:.0f}/s, {created['cpu_s']:.1f} CPU s)",
            flush=True,
        )
        yield ns, created
    finally:
        try:
            seconds = await delete_namespace(client, ns)
            print(f"deleted namespace {ns} ({seconds:.1f} s)", flush=True)
        except Exception as e:
            print(f"WARNING: cleaning up namespace {ns} failed: {e}", file=sys.stderr)


def configmap(ns: str, name: str, i: int) -> Obj:
    """A small ConfigMap: a name, 2 labels and 2 short data keys."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": ns,
            "labels": {"app.kubernetes.io/name": "kaiwo-bench", "bench.kaiwo/shard": str(i % 16)},
        },
        "data": {"index": str(i), "mode": "small"},
    }


async def create_all(
    client: Client,
    objs: Callable[[int], Obj],
    n: int,
    concurrency: int = 32,
    progress_every: float = 5.0,
    timeout: float = 900.0,
) -> dict[str, float]:
    """Create ``objs(i)`` for i in range(n), ``concurrency`` requests at a time. The responses are dropped at
    once, so the process does not keep N parsed objects (and their freed memory) around.
    """
    sem = asyncio.Semaphore(concurrency)
    done = 0
    last_print = time.monotonic()

    async def one(i: int) -> None:
        nonlocal done, last_print
        async with sem:
            await client.create(objs(i))
        done += 1
        if time.monotonic() - last_print > progress_every:
            last_print = time.monotonic()
            print(f"  created {done}/{n}", flush=True)

    timer = CpuWall()
    with timer.measure():
        await within(asyncio.gather(*(one(i) for i in range(n))), timeout, f"creating {n} ConfigMaps")
    return {
        "n": n,
        "concurrency": concurrency,
        "wall_s": timer.wall,
        "cpu_s": timer.cpu,
        "per_s": n / timer.wall if timer.wall else 0.0,
    }


async def within(aw: Awaitable[Any], timeout: float, what: str) -> Any:
    try:
        return await asyncio.wait_for(aw, timeout)
    except TimeoutError:
        raise BenchError(f"timed out after {timeout:.0f} s: {what}") from None


async def wait_until(cond: Callable[[], bool], timeout: float, what: Callable[[], str], interval: float = 0.01) -> None:
    """Poll ``cond`` (cheap, synchronous) until true; BenchError naming ``what()`` on timeout."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:.0f} s waiting for {what()}")
        await asyncio.sleep(interval)
