"""End-to-end operator benchmark: KaiwoJobs in, child Jobs and statuses out, side by side with upstream Kaiwo.

    .venv/bin/python -m bench.bench_e2e                       # ours, upstream v0.2.1, ours; full scenarios
    .venv/bin/python -m bench.bench_e2e --operators ours --bursts 1000 --paced-seconds 20 --rest 0   # quick look

For each operator (in the order given; ``ours,upstream,ours`` by default, so drift of the machine shows) the script
starts a fresh local cluster (``kaiwo-dev``, all addons: Kueue, KubeRay, AppWrapper), installs that operator's CRDs,
starts the operator out of cluster (upstream: its Go binary built from the module proxy, webhooks off, plain-HTTP
metrics), waits for the default queue configuration, and runs, cumulatively:

* ceiling: a plain client creates 1,000 suspended Jobs (the same apiserver's raw create rate in this run);
* burst: N KaiwoJobs in 10 namespaces created as fast as the apiserver allows -> seconds until every child Job
  exists and until every status is written; p50/p99 create->child from a watch in a separate process;
* paced: ``--paced-rate`` KaiwoJobs/s for ``--paced-seconds`` -> p50/p99 create->child;
* API cost per KaiwoJob by verb, from the operator's own ``rest_client_requests_total`` over each scenario;
* rest: the queues put on hold (``stopPolicy: Hold`` in the KaiwoQueueConfig), topped up to ``--rest`` KaiwoJobs,
  settled (finished or PENDING, nothing written for 15 s) -> operator RSS; then the operator restarts over the
  settled objects (a full resync) and the requests it sends after start-up are counted by verb;
* footprint: CPU-seconds of the operator, kube-apiserver, etcd and Kueue during each burst, peak RSS.

Results: a table on stdout and bench/results/e2e.json. Nothing here is a test; see docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from bench._kube import BenchError, machine, print_machine, write_results
from kaiwo.api.groups import KAIWO_API
from kaiwo.devcluster.components import GO_RUNTIME_DEFAULTS
from kaiwo.devcluster.process import _die_with_parent
from kaiwo.runtime.client import ApiError, Client
from kaiwo.runtime.objects import Obj

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results" / "e2e.json"
KAIWO = KAIWO_API
NAMESPACES = 10
WRITE_VERBS = ("POST", "PUT", "PATCH", "DELETE")
CLK_TCK = os.sysconf("SC_CLK_TCK")
COMPONENTS = ("kube-apiserver", "etcd", "kueue", "kube-controller-manager", "kube-scheduler", "kwok")  # CPU shown


# --- processes: CPU and memory from /proc -----------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (children not included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))] if ordered else float("nan")


# --- the operators under test ----------------------------------------------------------------------------------


@dataclass
class Operator:
    """One operator build: how to start it and where its CRDs are."""

    name: str
    argv: list[str]
    env: dict[str, str]
    crds: Path
    metrics_port: int
    probe_port: int
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None

    def start(self, log: Path) -> None:
        self.log = log
        parent = os.getpid()
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                self.argv,
                preexec_fn=lambda: _die_with_parent(parent),  # an interrupted benchmark leaves no operator behind
                env={**os.environ, **self.env},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=REPO,
            )

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def requests(self) -> dict[str, float]:
        """rest_client_requests_total summed by method (both operators export it: controller-runtime's name)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10) as r:
            text = r.read().decode()
        totals: dict[str, float] = {}
        for line in text.splitlines():
            if not line.startswith("rest_client_requests_total{"):
                continue
            labels, value = line.rsplit(" ", 1)
            m = re.search(r'method="([A-Z]+)"', labels)
            if m:
                totals[m.group(1)] = totals.get(m.group(1), 0.0) + float(value)
        return totals


def ours(kubeconfig: str, workers: int | None) -> Operator:
    mport, pport = free_port(), free_port()
    argv = [
        sys.executable,
        "-m",
        "kaiwo.manager",
        "--kubeconfig",
        kubeconfig,
        "--no-leader-elect",
        f"--metrics-bind-address=127.0.0.1:{mport}",
        f"--health-probe-bind-address=127.0.0.1:{pport}",
        "--log-level=warning",
    ]
    if workers:
        argv.append(f"--workers={workers}")
    return Operator("ours", argv, {}, REPO / "charts" / "kaiwo" / "crds", mport, pport)


UPSTREAM_VERSION = "v0.2.1"


def upstream_module() -> Path:
    out = subprocess.run(
        ["go", "mod", "download", "-json", f"github.com/silogen/kaiwo@{UPSTREAM_VERSION}"],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise BenchError(f"go mod download github.com/silogen/kaiwo@{UPSTREAM_VERSION} failed: {out.stderr[-2000:]}")
    return Path(orjson.loads(out.stdout)["Dir"])


def upstream(kubeconfig: str) -> Operator:
    """Upstream Kaiwo's Go operator, built once from its module (kaiwo-dev's binary cache) and run out of cluster
    with its own CRDs and webhooks off (they need a serving certificate and a Service in the cluster)."""
    from kaiwo.devcluster.build import ensure_binaries

    binary = ensure_binaries(["kaiwo-upstream"])["kaiwo-upstream"]
    mport, pport = free_port(), free_port()
    argv = [
        str(binary),
        f"--metrics-bind-address=127.0.0.1:{mport}",
        "--metrics-secure=false",
        f"--health-probe-bind-address=127.0.0.1:{pport}",
    ]
    env = {"KUBECONFIG": kubeconfig, "DISABLE_WEBHOOKS": "true"}
    return Operator("upstream", argv, env, upstream_module() / "config" / "crd" / "bases", mport, pport)


# --- the cluster ------------------------------------------------------------------------------------------------


@dataclass
class Cluster:
    state: Path
    kubeconfig: str = ""
    kubectl: str = ""
    pids: dict[str, int] = field(default_factory=dict)

    def up(self) -> None:
        from kaiwo.devcluster.build import ensure_binaries
        from kaiwo.devcluster.cluster import DevCluster

        cluster = DevCluster(self.state)
        if cluster.status().running:
            cluster.down()
        shutil.rmtree(self.state, ignore_errors=True)
        started = time.monotonic()
        self.kubeconfig = str(cluster.up(timeout=900))
        print(f"  fresh local cluster in {time.monotonic() - started:.0f} s", flush=True)
        self.kubectl = str(ensure_binaries(["kubectl"])["kubectl"])
        comps = cluster.status().data.get("components", {})
        self.pids = {n: int(c["pid"]) for n, c in comps.items() if c.get("pid")}

    def down(self) -> None:
        from kaiwo.devcluster.cluster import DevCluster

        DevCluster(self.state).down()

    def kubectl_run(self, *args: str) -> None:
        out = subprocess.run(
            [self.kubectl, "--kubeconfig", self.kubeconfig, *args], capture_output=True, text=True, check=False
        )
        if out.returncode != 0:
            raise BenchError(f"kubectl {' '.join(args)} failed: {out.stderr[-2000:]}")

    def profile_apiserver(self, out: Path, seconds: float) -> subprocess.Popen[bytes]:
        """Start a CPU profile of kube-apiserver (its /debug/pprof) for ``seconds``, written to ``out``."""
        url = f"/debug/pprof/profile?seconds={seconds:.0f}"
        with open(out, "wb") as f:
            return subprocess.Popen(
                [self.kubectl, "--kubeconfig", self.kubeconfig, "get", "--raw", url],
                stdout=f,
                stderr=subprocess.DEVNULL,
            )

    def requests(self) -> dict[str, float]:
        """kube-apiserver's own ``apiserver_request_total``, summed by "VERB resource[/subresource]"."""
        out = subprocess.run(
            [self.kubectl, "--kubeconfig", self.kubeconfig, "get", "--raw", "/metrics"],
            capture_output=True,
            text=True,
            check=False,
        )
        totals: dict[str, float] = {}
        for line in out.stdout.splitlines():
            if not line.startswith("apiserver_request_total{"):
                continue
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}", 1)[0]))
            sub = labels.get("subresource", "")
            key = f"{labels.get('verb', '')} {labels.get('resource', '')}{'/' + sub if sub else ''}"
            totals[key] = totals.get(key, 0.0) + float(line.rsplit(" ", 1)[1])
        return totals

    def peak_rss_mib(self, names: tuple[str, ...] = ("kube-apiserver", "etcd", "kueue")) -> dict[str, int]:
        return {n: round(status_kib(p, "VmHWM") / 1024) for n, p in self.pids.items() if n in names}

    def cpu(self, names: tuple[str, ...] = COMPONENTS) -> dict[str, float]:
        return {n: cpu_seconds(p) for n, p in self.pids.items() if n in names and Path(f"/proc/{p}").exists()}


# --- the workload ------------------------------------------------------------------------------------------------


def kaiwojob(ns: str, name: str) -> Obj:
    """A small CPU KaiwoJob: no GPUs, so every operator creates its Job without any GPU node facts."""
    return {
        "apiVersion": KAIWO,
        "kind": "KaiwoJob",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "user": "bench@example.com",
            "image": "busybox:1.36",
            "entrypoint": "sleep 1",
            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"cpu": "10m", "memory": "16Mi"}},
        },
    }


def plain_job(ns: str, name: str) -> Obj:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "suspend": True,
            "template": {
                "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox:1.36"}]},
            },
        },
    }


# --- the watcher: a separate process that timestamps first sightings ----------------------------------------------


WATCHER = r"""
import asyncio, sys, time, orjson
from kaiwo.runtime.client import Client

async def main(kubeconfig, prefix, out):
    client = await Client.from_kubeconfig(kubeconfig)
    seen_child, seen_status, phase = {}, {}, {}
    async def watch(path, on_event):
        rv = (await client.request("GET", path, params={"limit": 1}))["metadata"]["resourceVersion"]
        while True:
            params = {"watch": "1", "resourceVersion": rv, "allowWatchBookmarks": "true", "timeoutSeconds": 3600}
            async for line in client.stream_lines(path, params, timeout=3700):
                ev = orjson.loads(line)
                obj = ev["object"]; md = obj.get("metadata", {})
                rv = md.get("resourceVersion", rv)
                if ev["type"] == "BOOKMARK" or not md.get("namespace", "").startswith(prefix):
                    continue
                on_event(md["namespace"] + "/" + md["name"], obj, time.monotonic())
    def job(key, obj, now):
        seen_child.setdefault(key, now)
    def kaiwojob(key, obj, now):
        status = (obj.get("status") or {}).get("status")
        if status:
            seen_status.setdefault(key, now)
            phase[key] = status
    async def dump():
        while True:
            await asyncio.sleep(0.5)
            data = orjson.dumps({"child": seen_child, "status": seen_status, "phase": phase})
            with open(out + ".tmp", "wb") as f:
                f.write(data)
            import os; os.replace(out + ".tmp", out)
    sys.stdout.write("watching\n"); sys.stdout.flush()
    await asyncio.gather(
        watch("/apis/batch/v1/jobs", job),
        watch("/apis/kaiwo.silogen.ai/v1alpha1/kaiwojobs", kaiwojob),  # one watch, so its events are decoded once
        dump(),
    )

asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3]))
"""


class Watcher:
    def __init__(self, kubeconfig: str, prefix: str) -> None:
        self.out = Path(tempfile.mkstemp(prefix="kaiwo-bench-watch-", suffix=".json")[1])
        parent = os.getpid()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WATCHER, kubeconfig, prefix, str(self.out)],
            preexec_fn=lambda: _die_with_parent(parent),
            stdout=subprocess.PIPE,
            cwd=REPO,
        )
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != b"watching":
            raise BenchError("the watcher process did not start")
        time.sleep(1.0)  # its watches are open once it has listed

    def seen(self) -> tuple[dict[str, float], dict[str, float]]:
        try:
            data = orjson.loads(self.out.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return {}, {}
        return data["child"], data["status"]

    def phases(self) -> dict[str, str]:
        """KaiwoJob key -> the status it was last seen with."""
        try:
            return dict(orjson.loads(self.out.read_bytes())["phase"])
        except (OSError, orjson.JSONDecodeError, KeyError):
            return {}

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self.out.unlink(missing_ok=True)


# --- scenarios ---------------------------------------------------------------------------------------------------


async def create_many(client: Client, objs: list[Obj], concurrency: int = 64) -> dict[str, float]:
    """Create all objects, ``concurrency`` at a time; returns key -> monotonic time the create call returned."""
    sem = asyncio.Semaphore(concurrency)
    created: dict[str, float] = {}

    async def one(o: Obj) -> None:
        async with sem:
            await client.create(o)
        created[f"{o['metadata']['namespace']}/{o['metadata']['name']}"] = time.monotonic()

    await asyncio.gather(*(one(o) for o in objs))
    return created


async def paced(client: Client, objs: list[Obj], rate: float) -> dict[str, float]:
    """Create one object every 1/rate seconds (each create in its own task, so a slow call does not delay the
    schedule); returns key -> time its create returned."""
    created: dict[str, float] = {}
    start = time.monotonic()

    async def one(o: Obj) -> None:
        await client.create(o)
        created[f"{o['metadata']['namespace']}/{o['metadata']['name']}"] = time.monotonic()

    tasks = []
    for i, o in enumerate(objs):
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(o)))
    await asyncio.gather(*tasks)
    return created


async def wait_for(keys: set[str], seen: Any, timeout: float, what: str, op: Operator) -> float:
    """Seconds (monotonic time) when every key has been seen, polling the watcher's file."""
    deadline = time.monotonic() + timeout
    while True:
        got = seen()
        missing = keys - got.keys()
        if not missing:
            return float(max(got[k] for k in keys))
        if not op.alive():
            raise BenchError(f"{op.name} operator exited (log: {op.log})")
        if time.monotonic() > deadline:
            raise BenchError(f"{len(missing)} of {len(keys)} {what} missing after {timeout:.0f} s, e.g. {min(missing)}")
        await asyncio.sleep(0.5)


def latencies(created: dict[str, float], seen: dict[str, float]) -> dict[str, float]:
    values = [seen[k] - t for k, t in created.items() if k in seen]
    return {
        "p50_s": round(statistics.median(values), 3) if values else float("nan"),
        "p99_s": round(percentile(values, 0.99), 3),
        "max_s": round(max(values), 3) if values else float("nan"),
    }


def timeline(t0: float, created: dict[str, float], seen: dict[str, float], step: float = 5.0) -> list[list[float]]:
    """[seconds since the burst began, KaiwoJobs created by then, their children seen by then], every ``step``
    seconds: shows whether children trail the creates at a steady rate or stall behind them."""
    made = sorted(created.values())
    got = sorted(seen[k] for k in created if k in seen)
    end = max(made[-1:] + got[-1:], default=t0)
    rows, t = [], t0 + step
    while True:
        rows.append([round(t - t0, 1), bisect.bisect_right(made, t), bisect.bisect_right(got, t)])
        if t >= end:
            return rows
        t += step


def print_profile(profile: Path, lines: int = 40) -> None:
    """The top of an apiserver CPU profile by cumulative time (``go tool pprof``; skipped without Go)."""
    go = shutil.which("go")
    if go is None or not profile.stat().st_size:
        print(f"  apiserver profile: {profile} (no `go` to summarise it)" if go is None else "  no apiserver profile")
        return
    out = subprocess.run([go, "tool", "pprof", "-top", "-cum", str(profile)], capture_output=True, text=True)
    print(f"  apiserver CPU profile ({profile}), top {lines} by cumulative time:")
    print("\n".join("    " + line for line in out.stdout.splitlines()[:lines]), flush=True)


def delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: after.get(k, 0.0) - before.get(k, 0.0) for k in sorted(set(after) | set(before))}


def top_requests(counts: dict[str, float], n: int, rows: int = 16) -> dict[str, float]:
    """The apiserver's busiest request kinds (all clients: the operator, Kueue, controllers, kwok), per KaiwoJob."""
    busiest = sorted(((v, k) for k, v in counts.items() if v > 0 and not k.startswith("WATCH")), reverse=True)
    return {k: round(v / n, 2) for v, k in busiest[:rows]}


async def quiet(op: Operator, settle: float = 3.0, timeout: float = 120.0) -> dict[str, float]:
    """Wait until the operator has sent no request for ``settle`` seconds; return its request counts."""
    deadline = time.monotonic() + timeout
    last = op.requests()
    while time.monotonic() < deadline:
        await asyncio.sleep(settle)
        now = op.requests()
        if now == last:
            return now
        last = now
    return last


@dataclass
class Run:
    op: Operator
    cluster: Cluster
    client: Client
    watcher: Watcher
    prefix: str
    counter: int = 0
    total: int = 0

    def next_objs(self, n: int) -> list[Obj]:
        objs = []
        for _ in range(n):
            ns = f"{self.prefix}{self.counter % NAMESPACES}"
            objs.append(kaiwojob(ns, f"kj-{self.counter:06d}"))
            self.counter += 1
        self.total += n
        return objs

    async def burst(self, n: int, timeout: float, profile: Path | None = None, seconds: float = 0) -> dict[str, Any]:
        objs = self.next_objs(n)
        req0, cpu0, ccpu0 = self.op.requests(), cpu_seconds(self.op.pid), self.cluster.cpu()
        api0 = await asyncio.to_thread(self.cluster.requests)
        profiler = self.cluster.profile_apiserver(profile, seconds) if profile and seconds else None
        t0 = time.monotonic()
        created = await create_many(self.client, objs)
        create_s = time.monotonic() - t0
        keys = set(created)
        children_at = await wait_for(keys, lambda: self.watcher.seen()[0], timeout, "child Jobs", self.op)
        # The operator's writes until every child exists (polled within 0.5 s of it): an upper bound of the
        # writes a KaiwoJob costs before its child, since early KaiwoJobs' status writes fall in the window too.
        req_children = self.op.requests()
        api_children = await asyncio.to_thread(self.cluster.requests)
        status_at = await wait_for(keys, lambda: self.watcher.seen()[1], timeout, "statuses", self.op)
        cpu1, ccpu1 = cpu_seconds(self.op.pid), self.cluster.cpu()
        req1 = await quiet(self.op)
        api1 = await asyncio.to_thread(self.cluster.requests)
        child, _ = self.watcher.seen()
        verbs = delta(req1, req0)
        if profiler is not None and profile is not None:
            profiler.wait()
            print_profile(profile)
        return {
            "n": n,
            "create_s": round(create_s, 2),
            "children_s": round(children_at - t0, 2),
            "statuses_s": round(status_at - t0, 2),
            "create_to_child": latencies(created, child),
            "timeline": timeline(t0, created, child),
            "requests_per_kaiwojob": {k: round(v / n, 2) for k, v in verbs.items() if v},
            "writes_per_kaiwojob": round(sum(verbs.get(v, 0.0) for v in WRITE_VERBS) / n, 2),
            "writes_per_kaiwojob_until_children": round(
                sum(delta(req_children, req0).get(v, 0.0) for v in WRITE_VERBS) / n, 2
            ),
            "operator_cpu_s": round(cpu1 - cpu0, 1),
            "cluster_cpu_s": {k: round(ccpu1[k] - ccpu0.get(k, 0.0), 1) for k in ccpu1},
            "operator_peak_rss_mib": round(status_kib(self.op.pid, "VmHWM") / 1024),
            "cluster_peak_rss_mib": self.cluster.peak_rss_mib(),
            "apiserver_requests_per_kaiwojob_until_children": top_requests(delta(api_children, api0), n),
            "apiserver_requests_per_kaiwojob": top_requests(delta(api1, api0), n),
        }

    async def paced(self, rate: float, seconds: float, timeout: float) -> dict[str, Any]:
        objs = self.next_objs(int(rate * seconds))
        created = await paced(self.client, objs, rate)
        await wait_for(set(created), lambda: self.watcher.seen()[0], timeout, "child Jobs", self.op)
        return {"rate_per_s": rate, "seconds": seconds, "n": len(objs), **latencies(created, self.watcher.seen()[0])}

    async def hold_queues(self, timeout: float) -> None:
        """Put every ClusterQueue of the KaiwoQueueConfig on hold (``stopPolicy: Hold``), as an admin would, and wait
        until Kueue's ClusterQueue says so: Kueue then admits nothing new, so the backlog settles as it is (queued
        KaiwoJobs stay PENDING) instead of running to the end at Kueue's pace. Both operators copy the field."""
        qc = await self.client.get(KAIWO, "KaiwoQueueConfig", "kaiwo")
        for cq in qc["spec"]["clusterQueues"]:
            cq.setdefault("spec", {})["stopPolicy"] = "Hold"
        await self.client.request("PUT", f"/apis/{KAIWO}/kaiwoqueueconfigs/kaiwo", body=qc)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            cq = await cluster_queue(self.client)
            if cq is not None and (cq.get("spec") or {}).get("stopPolicy") == "Hold":
                return
            await asyncio.sleep(1.0)
        raise BenchError(f"ClusterQueue 'kaiwo' not on hold after {timeout:.0f} s")

    async def cluster_quiet(self, settle: float, timeout: float) -> None:
        """Wait until no client (Kueue, the controllers, kwok, the operator) has written anything but leases, events
        and node heartbeats for ``settle`` seconds: nothing is left to change, so a restart meets settled objects."""

        def writes() -> dict[str, float]:
            counts = self.cluster.requests()
            return {
                k: v
                for k, v in counts.items()
                if k.split(" ")[0] in (*WRITE_VERBS, "APPLY")
                and k.split(" ")[1].split("/")[0] not in ("leases", "events", "nodes")
            }

        deadline = time.monotonic() + timeout
        last, since = await asyncio.to_thread(writes), time.monotonic()
        while time.monotonic() - since < settle:
            if time.monotonic() > deadline:
                raise BenchError(f"the cluster still writes after {timeout:.0f} s")
            await asyncio.sleep(1.0)
            now = await asyncio.to_thread(writes)
            if now != last:
                last, since = now, time.monotonic()

    async def rest(self, total: int, timeout: float, log_dir: Path) -> dict[str, Any]:
        # Settled means no transition is left. Kueue admits a backlog over many minutes, so the queues are put on
        # hold first: admitted KaiwoJobs finish, queued ones stay PENDING with their Job and Workload, and the
        # cluster goes quiet with ``total`` KaiwoJobs and their children in the operator's caches.
        await self.hold_queues(timeout)
        if total > self.total:
            created = await create_many(self.client, self.next_objs(total - self.total))
            await wait_for(set(created), lambda: self.watcher.seen()[1], timeout, "statuses", self.op)
        await self.cluster_quiet(settle=15.0, timeout=timeout)
        await quiet(self.op, settle=5.0, timeout=300.0)
        phases = self.watcher.phases()
        rss = status_kib(self.op.pid, "VmRSS")
        hwm = status_kib(self.op.pid, "VmHWM")
        # A full resync: the operator restarts over settled objects; count what it sends once caches are synced.
        self.op.stop()
        self.op.start(log_dir / f"{self.op.name}-restart.log")
        await ready(self.op, 120)
        after = await quiet(self.op, settle=5.0, timeout=300.0)
        writes = {k: v for k, v in after.items() if k in WRITE_VERBS and v}
        return {
            "kaiwojobs": self.total,
            "phases": {p: sum(1 for v in phases.values() if v == p) for p in sorted(set(phases.values()))},
            "operator_rss_mib": round(rss / 1024),
            "operator_peak_rss_mib": round(hwm / 1024),
            "restart_requests": {k: v for k, v in after.items() if v},
            "restart_writes": writes,
            "restart_rss_mib": round(status_kib(self.op.pid, "VmRSS") / 1024),
        }


def _serving(op: Operator) -> bool:
    """/readyz answers 200 and /metrics can be read."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{op.probe_port}/readyz", timeout=2):
            pass
        op.requests()
    except OSError:
        return False
    return True


async def ready(op: Operator, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not op.alive():
            raise BenchError(f"{op.name} operator exited at start (log: {op.log})")
        if await asyncio.to_thread(_serving, op):
            return
        await asyncio.sleep(0.5)
    raise BenchError(f"{op.name} operator not ready after {timeout:.0f} s (log: {op.log})")


async def ceiling(client: Client, n: int) -> dict[str, float]:
    ns = "ceiling-bench"  # outside the burst prefix, so the watcher ignores it
    await client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    t0 = time.monotonic()
    await create_many(client, [plain_job(ns, f"j-{i:06d}") for i in range(n)])
    wall = time.monotonic() - t0
    await client.delete("v1", "Namespace", ns)
    return {"n": n, "seconds": round(wall, 2), "per_s": round(n / wall)}


async def cluster_queue(client: Client) -> Obj | None:
    """Kueue's default ClusterQueue 'kaiwo' (both operators create it from the nodes), or None."""
    for version in ("kueue.x-k8s.io/v1beta2", "kueue.x-k8s.io/v1beta1"):
        with contextlib.suppress(ApiError):  # the version is not served
            return await client.get_or_none(version, "ClusterQueue", "kaiwo")
    raise BenchError("the apiserver serves no Kueue ClusterQueue version")


async def wait_queue_config(client: Client, timeout: float) -> float:
    """Seconds until the default ClusterQueue 'kaiwo' exists."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if await cluster_queue(client) is not None:
            return time.monotonic() - t0
        await asyncio.sleep(1.0)
    raise BenchError(f"no ClusterQueue 'kaiwo' after {timeout:.0f} s")


async def run_operator(which: str, args: argparse.Namespace, state: Path, log_dir: Path) -> dict[str, Any]:
    print(f"== {which}", flush=True)
    cluster = Cluster(state)
    cluster.up()
    op = ours(cluster.kubeconfig, args.workers) if which == "ours" else upstream(cluster.kubeconfig)
    cluster.kubectl_run("apply", "--server-side", "--force-conflicts", "-f", str(op.crds))
    cluster.kubectl_run("wait", "--for=condition=Established", "crd", "--all", "--timeout=120s")
    client = await Client.from_kubeconfig(cluster.kubeconfig)
    watcher = None
    result: dict[str, Any] = {"operator": which}
    try:
        result["ceiling"] = await ceiling(client, 1000)
        print(f"  ceiling: 1000 Jobs in {result['ceiling']['seconds']} s", flush=True)
        prefix = "bench-"
        for i in range(NAMESPACES):
            await client.create(
                {
                    "apiVersion": "v1",
                    "kind": "Namespace",
                    "metadata": {"name": f"{prefix}{i}", "labels": {"kueue-managed": "true"}},
                }
            )
        op.start(log_dir / f"{which}.log")
        await ready(op, 120)
        result["queue_config_s"] = round(await wait_queue_config(client, 120), 1)
        watcher = Watcher(cluster.kubeconfig, prefix)
        run = Run(op, cluster, client, watcher, prefix)
        result["bursts"] = []
        for n in args.bursts:
            first = n == args.bursts[0]
            profile = log_dir / f"{which}-apiserver-burst{n}.pprof" if first and args.profile_seconds else None
            b = await run.burst(n, timeout=args.timeout, profile=profile, seconds=args.profile_seconds)
            result["bursts"].append(b)
            print(
                f"  burst {n}: children {b['children_s']} s, statuses {b['statuses_s']} s, "
                f"p99 create->child {b['create_to_child']['p99_s']} s, writes/KaiwoJob {b['writes_per_kaiwojob']}",
                flush=True,
            )
            print("  timeline (s, created, children): " + "  ".join(f"{t:g}:{c}/{k}" for t, c, k in b["timeline"]))
            for title, key in (("until every child exists", "_until_children"), ("until quiet", "")):
                busiest = b[f"apiserver_requests_per_kaiwojob{key}"]
                print(f"  apiserver requests per KaiwoJob, all clients, {title}:", flush=True)
                print("".join(f"    {v:6.2f}  {k}\n" for k, v in busiest.items()), end="", flush=True)
            if n == args.bursts[0] and args.paced_seconds > 0:
                result["paced"] = await run.paced(args.paced_rate, args.paced_seconds, args.timeout)
                print(f"  paced: p50 {result['paced']['p50_s']} s, p99 {result['paced']['p99_s']} s", flush=True)
        if args.rest:
            result["rest"] = await run.rest(args.rest, args.timeout, log_dir)
            print(f"  rest: {result['rest']}", flush=True)
    finally:
        if watcher:
            watcher.stop()
        op.stop()
        await client.close()
        cluster.down()
    return result


# --- report ------------------------------------------------------------------------------------------------------


def rows(results: list[dict[str, Any]]) -> Iterator[tuple[str, list[Any]]]:
    def get(r: dict[str, Any], *path: Any) -> Any:
        for p in path:
            try:
                r = r[p]
            except (KeyError, IndexError, TypeError):
                return None
        return r

    n_bursts = max((len(r.get("bursts", [])) for r in results), default=0)
    yield "ceiling: 1000 plain Jobs (s)", [get(r, "ceiling", "seconds") for r in results]
    for i in range(n_bursts):
        n = next(get(r, "bursts", i, "n") for r in results if get(r, "bursts", i, "n"))
        yield f"burst {n}: all children (s)", [get(r, "bursts", i, "children_s") for r in results]
        yield f"burst {n}: all statuses (s)", [get(r, "bursts", i, "statuses_s") for r in results]
        yield f"burst {n}: p50 create->child (s)", [get(r, "bursts", i, "create_to_child", "p50_s") for r in results]
        yield f"burst {n}: p99 create->child (s)", [get(r, "bursts", i, "create_to_child", "p99_s") for r in results]
        yield f"burst {n}: writes per KaiwoJob", [get(r, "bursts", i, "writes_per_kaiwojob") for r in results]
        yield (
            f"burst {n}: writes/KaiwoJob by all children",
            [get(r, "bursts", i, "writes_per_kaiwojob_until_children") for r in results],
        )
        yield f"burst {n}: operator CPU (s)", [get(r, "bursts", i, "operator_cpu_s") for r in results]
        for comp in ("kube-apiserver", "etcd", "kueue", "kube-controller-manager", "kwok"):
            yield f"burst {n}: {comp} CPU (s)", [get(r, "bursts", i, "cluster_cpu_s", comp) for r in results]
        yield f"burst {n}: operator peak RSS (MiB)", [get(r, "bursts", i, "operator_peak_rss_mib") for r in results]
    yield "paced: p50 create->child (s)", [get(r, "paced", "p50_s") for r in results]
    yield "paced: p99 create->child (s)", [get(r, "paced", "p99_s") for r in results]
    yield "rest: operator RSS (MiB)", [get(r, "rest", "operator_rss_mib") for r in results]
    yield (
        "resync: writes",
        [sum((get(r, "rest", "restart_writes") or {}).values()) if r.get("rest") else None for r in results],
    )
    yield (
        "resync: all requests",
        [sum((get(r, "rest", "restart_requests") or {}).values()) if r.get("rest") else None for r in results],
    )


def print_table(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    names = [r["operator"] for r in results]
    ours_idx = [i for i, n in enumerate(names) if n == "ours"]
    theirs_idx = [i for i, n in enumerate(names) if n == "upstream"]
    header = f"{'':40}" + "".join(f"{n:>12}" for n in names) + (f"{'ours/theirs':>14}" if theirs_idx else "")
    print(header)
    table = []
    for label, values in rows(results):
        ratio = None
        if ours_idx and theirs_idx:
            ov = [values[i] for i in ours_idx if isinstance(values[i], (int, float))]
            tv = [values[i] for i in theirs_idx if isinstance(values[i], (int, float))]
            if ov and tv and statistics.mean(tv):
                ratio = round(statistics.mean(ov) / statistics.mean(tv), 2)
        cells = "".join(f"{'-' if v is None else v:>12}" for v in values)
        print(f"{label:40}{cells}" + (f"{'-' if ratio is None else ratio:>14}" if theirs_idx else ""))
        table.append({"row": label, "values": values, "ours_over_theirs": ratio})
    return table


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--operators", default="ours,upstream,ours", help="comma list of ours/upstream, run in order")
    p.add_argument("--bursts", default="1000,5000", help="burst sizes, run one after another (cumulative)")
    p.add_argument("--paced-rate", type=float, default=50.0)
    p.add_argument("--paced-seconds", type=float, default=60.0, help="0 skips the paced scenario")
    p.add_argument("--rest", type=int, default=10000, help="KaiwoJobs held for the at-rest footprint; 0 skips")
    p.add_argument("--workers", type=int, default=None, help="our --workers (default: the manager's default)")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds any one wait may take")
    p.add_argument(
        "--profile-seconds",
        type=float,
        default=0.0,
        help="profile kube-apiserver's CPU for this long from the start of the first burst (0: no profile)",
    )
    p.add_argument("--state", type=Path, default=Path("/tmp/kd-bench-e2e"), help="the local cluster's state folder")
    args = p.parse_args()
    args.bursts = [int(b) for b in args.bursts.split(",") if b]
    operators = [o.strip() for o in args.operators.split(",") if o.strip()]
    if unknown := set(operators) - {"ours", "upstream"}:
        p.error(f"unknown operator(s): {', '.join(sorted(unknown))}")
    # SIGTERM unwinds like Ctrl-C, so the clean-up below stops the operator and the cluster.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    m = machine()
    print_machine(m)
    # The local cluster's Go runtime settings (kaiwo-dev's defaults unless this environment sets them).
    m["cluster_go_runtime"] = {k: os.environ.get(k, v) for k, v in GO_RUNTIME_DEFAULTS.items()}
    print(f"cluster Go runtime: {m['cluster_go_runtime']}", flush=True)
    log_dir = Path(tempfile.mkdtemp(prefix="kaiwo-bench-e2e-"))
    print(f"operator logs: {log_dir}", flush=True)
    results = []
    for which in operators:
        try:
            results.append(asyncio.run(run_operator(which, args, args.state, log_dir)))
        except BenchError as e:
            print(f"  {which} failed: {e}", file=sys.stderr, flush=True)
            results.append({"operator": which, "error": str(e)})
    table = print_table(results)
    write_results(
        RESULTS, {"machine": m, "args": {**vars(args), "state": str(args.state)}, "runs": results, "table": table}
    )
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
