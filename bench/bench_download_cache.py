"""The download cache's saving: a second workload's time to RUNNING with and without ``cacheDownloads``.

    .venv/bin/python -m bench.bench_download_cache --kubeconfig <state>/kubeconfig [--rounds 3]

Needs a local cluster with Kueue (`kaiwo-dev up`; pods are kwok's, so a "download" takes the cluster's pod
completion time, not real I/O). Runs the KaiwoJob controller in this process (with the Kaiwo CRDs applied), and per
round creates in a fresh namespace:

* without the cache: workload A downloads, then workload B with the same inputs downloads again;
* with the cache: workload C downloads into the shared volume, then workload D with the same inputs reuses it.

Times B and D from their create call to the first RUNNING or COMPLETE status (kwok pods of Jobs finish quickly,
so COMPLETE can come first). Prints a table and writes bench/results/download_cache.json.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench._kube import write_results
from kaiwo.api import crds
from kaiwo.api.groups import KAIWO_API
from kaiwo.controllers import queueconfig, workload
from kaiwo.runtime.client import ApiError, Client
from kaiwo.runtime.manager import Manager, ManagerOptions

API = KAIWO_API
RESULTS = Path(__file__).parent / "results" / "download_cache.json"
DONE = ("RUNNING", "COMPLETE")
KUEUE = "kueue.x-k8s.io/v1beta1"


def job(name: str, ns: str, repo: str, cache: bool) -> dict[str, Any]:
    data: dict[str, Any] = {"storageSize": "1Gi", "download": {"git": [{"repository": repo, "targetPath": "r"}]}}
    if cache:
        data["cacheDownloads"] = True
    return {
        "apiVersion": API,
        "kind": "KaiwoJob",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"image": "busybox:1.36", "entrypoint": "true", "storage": {"storageEnabled": True, "data": data}},
    }


async def to_running(client: Client, obj: dict[str, Any], timeout: float = 180) -> float:
    started = time.perf_counter()
    await client.create(obj)
    meta = obj["metadata"]
    while time.perf_counter() - started < timeout:
        live = await client.get(API, "KaiwoJob", meta["name"], meta["namespace"])
        phase = (live.get("status") or {}).get("status")
        if phase in DONE:
            return time.perf_counter() - started
        if phase in ("FAILED", "ERROR"):
            raise RuntimeError(f"{meta['name']}: {live['status']}")
        await asyncio.sleep(0.05)
    raise TimeoutError(f"{meta['name']} not RUNNING after {timeout}s")


async def until(check: Callable[[], Awaitable[object]], what: str, timeout: float = 120) -> None:
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if await check():
            return
        await asyncio.sleep(0.5)
    raise TimeoutError(what)


async def _served(client: Client) -> bool:
    try:
        await client.resource(API, "KaiwoQueueConfig")
        await client.resource(API, "KaiwoJob")
        return True
    except ApiError:
        return False


async def run(kubeconfig: str, rounds: int) -> dict[str, Any]:
    async with await Client.from_kubeconfig(kubeconfig) as client:
        for crd in crds.installable():
            await client.apply(crd, "kaiwo-bench")
        await until(lambda: _served(client), "the Kaiwo CRDs served")
        mgr = Manager(client, ManagerOptions(health_address="", metrics_address=""))
        await queueconfig.setup(mgr)
        await workload.setup(mgr, "KaiwoJob")
        stop = asyncio.Event()
        task = asyncio.create_task(mgr.run(stop))
        await until(lambda: client.get_or_none(KUEUE, "ClusterQueue", "kaiwo"), "the default ClusterQueue")
        without: list[float] = []
        cached: list[float] = []
        try:
            for i in range(rounds):
                ns = f"bench-dlcache-{secrets.token_hex(3)}"
                labels = {"kueue-managed": "true"}
                await client.create(
                    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": labels}}
                )
                await asyncio.sleep(2)  # the default ServiceAccount and the LocalQueue
                repo = f"https://example.com/{ns}.git"
                await to_running(client, job("a", ns, repo, cache=False))
                without.append(await to_running(client, job("b", ns, repo, cache=False)))
                await to_running(client, job("c", ns, repo, cache=True))
                cached.append(await to_running(client, job("d", ns, repo, cache=True)))
                print(f"round {i + 1}: without cache {without[-1]:.2f} s, with cache {cached[-1]:.2f} s", flush=True)
                await client.delete("v1", "Namespace", ns)
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)
    result = {
        "rounds": rounds,
        "second_workload_to_running_s": {
            "without_cache_median": round(statistics.median(without), 2),
            "with_cache_median": round(statistics.median(cached), 2),
            "without_cache": [round(x, 2) for x in without],
            "with_cache": [round(x, 2) for x in cached],
        },
    }
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kubeconfig", required=True)
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args()
    result = asyncio.run(run(a.kubeconfig, a.rounds))
    r = result["second_workload_to_running_s"]
    print(f"second workload to RUNNING: without cache {r['without_cache_median']} s, with {r['with_cache_median']} s")
    write_results(RESULTS, result)


if __name__ == "__main__":
    main()
