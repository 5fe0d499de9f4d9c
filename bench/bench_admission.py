"""Kueue admission latency on a running cluster: Job created -> Job unsuspended by Kueue.

    KUBECONFIG=/path/to/kubeconfig .venv/bin/python -m bench.bench_admission [--jobs 100] [--rounds 3]

Needs Kueue managing namespaces labelled kueue-managed=true (the local cluster's setup, `kaiwo-dev up`). It
creates a namespace, a ResourceFlavor, a ClusterQueue with quota for every Job and a LocalQueue, then:

* single: one suspended Job with the queue label, ``--rounds`` times one after another;
* burst: ``--jobs`` such Jobs created at once (concurrent POSTs).

A Job's latency runs from the moment its create call returned to the moment a watch on Jobs delivered it with
``spec.suspend: false``. Prints a table and writes bench/results/admission.json; deletes what it created.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import secrets
import statistics
import time
from pathlib import Path
from typing import Any

import orjson

from bench._kube import write_results
from kaiwo.runtime.client import Client

KUEUE = "kueue.x-k8s.io/v1beta2"
RESULTS = Path(__file__).parent / "results" / "admission.json"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def summary(latencies: list[float]) -> dict[str, float]:
    return {
        "n": len(latencies),
        "p50_ms": round(statistics.median(latencies) * 1000, 1),
        "p95_ms": round(percentile(latencies, 0.95) * 1000, 1),
        "max_ms": round(max(latencies) * 1000, 1),
    }


def job(name: str, ns: str, queue: str) -> dict[str, Any]:
    req = {"cpu": "100m", "memory": "64Mi"}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": ns, "labels": {"kueue.x-k8s.io/queue-name": queue}},
        "spec": {
            "suspend": True,
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "main",
                            "image": "busybox:1.36",
                            "command": ["true"],
                            "resources": {"requests": req, "limits": req},
                        }
                    ],
                }
            },
        },
    }


async def admit(
    client: Client, ns: str, queue: str, names: list[str], timeout: float = 300
) -> tuple[list[float], float]:
    """Create the Jobs at once; return each one's created->unsuspended latency and the batch makespan."""
    res = await client.resource("batch/v1", "Job")
    rv = (await client.request("GET", res.path(ns), params={"limit": 1}))["metadata"]["resourceVersion"]
    created: dict[str, float] = {}
    unsuspended: dict[str, float] = {}
    wanted = set(names)

    async def watch() -> None:
        nonlocal rv
        while True:  # the apiserver closes watchers that fall behind (as on a busy 2-core host); resume then
            params = {"watch": "true", "resourceVersion": rv, "timeoutSeconds": int(timeout)}
            async for line in client.stream_lines(res.path(ns), params, timeout=timeout):
                event = orjson.loads(line)
                obj = event["object"]
                if event["type"] == "ERROR":
                    raise RuntimeError(f"watch failed: {obj.get('message')}")
                rv = obj["metadata"]["resourceVersion"]
                name = obj["metadata"]["name"]
                if name in wanted and obj["spec"].get("suspend") is False and name not in unsuspended:
                    unsuspended[name] = time.perf_counter()
                    if len(unsuspended) == len(wanted):
                        return

    watcher = asyncio.create_task(watch())

    async def create(name: str) -> None:
        await client.create(job(name, ns, queue))
        created[name] = time.perf_counter()

    started = time.perf_counter()
    await asyncio.gather(*(create(n) for n in names))
    await asyncio.wait_for(watcher, timeout)
    return [unsuspended[n] - created[n] for n in names], max(unsuspended.values()) - started


async def wait_active(client: Client, cluster_queue: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        q = await client.get(KUEUE, "ClusterQueue", cluster_queue)
        if any(c["type"] == "Active" and c["status"] == "True" for c in q.get("status", {}).get("conditions", [])):
            return
        await asyncio.sleep(0.1)
    raise TimeoutError(f"ClusterQueue {cluster_queue} not Active within {timeout:.0f}s")


async def run(jobs: int, rounds: int) -> dict[str, Any]:
    async with await Client.from_kubeconfig(os.environ.get("KUBECONFIG")) as client:
        suffix = secrets.token_hex(3)
        ns, flavor, cq, lq = f"bench-admission-{suffix}", f"bench-{suffix}", f"bench-{suffix}", "bench"
        await client.create(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": {"kueue-managed": "true"}}}
        )
        await client.create({"apiVersion": KUEUE, "kind": "ResourceFlavor", "metadata": {"name": flavor}})
        await client.create(
            {
                "apiVersion": KUEUE,
                "kind": "ClusterQueue",
                "metadata": {"name": cq},
                "spec": {
                    "namespaceSelector": {},
                    "resourceGroups": [
                        {
                            "coveredResources": ["cpu", "memory"],
                            "flavors": [
                                {
                                    "name": flavor,
                                    "resources": [
                                        {"name": "cpu", "nominalQuota": "1000"},
                                        {"name": "memory", "nominalQuota": "1000Gi"},
                                    ],
                                }
                            ],
                        }
                    ],
                },
            }
        )
        await client.create(
            {
                "apiVersion": KUEUE,
                "kind": "LocalQueue",
                "metadata": {"name": lq, "namespace": ns},
                "spec": {"clusterQueue": cq},
            }
        )
        try:
            await wait_active(client, cq)
            single: list[float] = []
            for i in range(rounds):
                latencies, _ = await admit(client, ns, lq, [f"single-{i}"])
                single += latencies
            burst, makespan = await admit(client, ns, lq, [f"burst-{i:03d}" for i in range(jobs)])
        finally:
            await client.delete("v1", "Namespace", ns)
            await client.delete(KUEUE, "ClusterQueue", cq)
            await client.delete(KUEUE, "ResourceFlavor", flavor)
    return {
        "single": summary(single),
        "burst": {**summary(burst), "makespan_ms": round(makespan * 1000, 1)},
        "host": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=100, help="Jobs created at once in the burst")
    ap.add_argument("--rounds", type=int, default=5, help="single-Job measurements")
    args = ap.parse_args()
    result = asyncio.run(run(args.jobs, args.rounds))
    print(f"{'case':<22}{'n':>5}{'p50 ms':>10}{'p95 ms':>10}{'max ms':>10}")
    for case, label in (("single", "1 Job"), ("burst", f"{args.jobs} Jobs at once")):
        s = result[case]
        print(f"{label:<22}{s['n']:>5}{s['p50_ms']:>10}{s['p95_ms']:>10}{s['max_ms']:>10}")
    print(f"burst makespan (first create -> last unsuspend): {result['burst']['makespan_ms']} ms")
    write_results(RESULTS, result)


if __name__ == "__main__":
    main()
