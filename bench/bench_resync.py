"""A full resync of N unchanged keys through a real controller: API requests, CPU and wall time.

    .venv/bin/python -m bench.bench_resync [--objects 10000] [--workers 4] [--repeat 5] [--kubeconfig PATH]
                                           [--profile]

Without ``--kubeconfig`` a local cluster is started with DevCluster in /tmp/kd-bench (reused if running; stopped
at the end only if this run started it). Steps:

1. create a fresh namespace and N small parent ConfigMaps in it (32 POSTs at a time);
2. run a ``Manager`` (no health/metrics server, no periodic resync) and a ``Controller`` (``--workers``) that
   watches the parents and owns the children. Its reconciler reads the parent from the cache, computes a child
   ConfigMap ``<name>-child`` (labelled ``bench.kaiwo/child``, data derived from the parent, an ownerReference
   to the parent) and hands it to ``Applier(client, "bench").apply(desired, live_from_cache)``. Two informer
   layouts (``--layouts``, both by default, in order, on the same namespace):
   ``shared``: one namespace-scoped ConfigMap informer from ``Manager.informer`` holds parents and children
   (keys of children are skipped by the reconciler); ``split``: a label-selected informer for the parents and
   one for the children (so a resync enqueues the N parents only);
3. initial pass: from the manager's start until every parent has been reconciled, all N children are in the
   cache and the controller is idle (queue empty, no reconcile running): requests by method and wall time.
   The first layout creates the N children; the next one finds them current and sends no apply;
4. resync (``--repeat`` times): ``controller.resync()`` enqueues every cached primary object (shared: N
   parents, N children and the namespace's kube-root-ca.crt; split: N parents), then wait until the controller
   is idle. Reported: API requests sent meanwhile (target 0: every child already carries its desired hash),
   CPU seconds (``time.process_time``; target <= 2.0), wall time, reconciles per second;
5. with ``--profile``, one more resync under cProfile: the functions that cost the most CPU.

The manager is stopped with its stop event and the namespace deleted. Prints a table and writes
bench/results/resync.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import io
import pstats
import statistics
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench._kube import (
    DEFAULT_STATE,
    BenchError,
    ClusterHandle,
    CpuWall,
    configmap_namespace,
    machine,
    print_machine,
    wait_until,
    within,
    write_results,
)
from kaiwo.runtime.apply import Applier
from kaiwo.runtime.client import Client
from kaiwo.runtime.controller import Controller, Request, Result
from kaiwo.runtime.informer import Informer, by_label
from kaiwo.runtime.manager import Manager, ManagerOptions
from kaiwo.runtime.objects import Obj

RESULTS = Path(__file__).parent / "results" / "resync.json"
TARGET_CPU_S = 2.0
TARGET_REQUESTS = 0
CHILD_LABEL = "bench.kaiwo/child"
PARENT_LABEL = "app.kubernetes.io/name"  # set on every parent by bench._kube.configmap
CONTROLLER = "bench-resync"


def desired_child(parent: Obj) -> Obj:
    meta = parent["metadata"]
    data = parent.get("data") or {}
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": f"{meta['name']}-child",
            "namespace": meta["namespace"],
            "labels": {CHILD_LABEL: "true", "bench.kaiwo/parent": meta["name"]},
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "ConfigMap", "name": meta["name"], "uid": meta["uid"], "controller": True}
            ],
        },
        "data": {"parent-index": str(data.get("index", "")), "summary": f"{meta['name']}:{data.get('mode', '')}"},
    }


class ChildReconciler:
    """For each parent ConfigMap, apply its child (skipped by the Applier when the cached child is current)."""

    def __init__(self, parents: Informer, children: Informer, applier: Applier) -> None:
        self.informer = parents
        self.children = children
        self.applier = applier
        self.counts: Counter[str] = Counter()
        # Reconciles in progress. Exact for idleness: the worker calls reconcile right after taking the key
        # and hands the key back (queue.done) right after it returns, with no await in between.
        self.active = 0

    async def reconcile(self, request: Request) -> Result | None:
        self.counts["reconcile"] += 1
        self.active += 1
        try:
            return await self._reconcile(request)
        finally:
            self.active -= 1

    async def _reconcile(self, request: Request) -> Result | None:
        obj = self.informer.get_by(request.name, request.namespace)
        if obj is None:
            self.counts["gone"] += 1
            return None
        labels = obj["metadata"].get("labels") or {}
        if CHILD_LABEL in labels:
            self.counts["child"] += 1
            return None
        if PARENT_LABEL not in labels:  # e.g. kube-root-ca.crt
            self.counts["other"] += 1
            return None
        self.counts["parent"] += 1
        desired = desired_child(obj)
        live = self.children.get_by(desired["metadata"]["name"], request.namespace)
        await self.applier.apply(desired, live)
        return None


class GcTimer:
    """Collections per generation and seconds spent in the cyclic garbage collector while installed."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.collections: Counter[int] = Counter()
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._started
            self.collections[int(info["generation"])] += 1

    def __enter__(self) -> GcTimer:
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self)


class Bench:
    """One manager and controller over the namespace, in one of two layouts:

    - ``shared``: one ConfigMap informer (``Manager.informer``) is both the controller's primary source and
      the children's cache; ``resync`` therefore enqueues children too, which the reconciler skips;
    - ``split``: two label-selected informers from ``Manager.informer(label_selector=...)`` (parents:
      ``app.kubernetes.io/name=kaiwo-bench``, children: ``bench.kaiwo/child=true``); ``resync`` enqueues the N
      parents only.
    """

    def __init__(self, client: Client, ns: str, n: int, workers: int, layout: str) -> None:
        self.client = client
        self.ns = ns
        self.n = n
        self.layout = layout
        self.requests: Counter[str] = Counter()
        client.observers.append(self._observe)
        self.manager = Manager(client, ManagerOptions(health_address="", metrics_address="", resync_period=0))
        self.workers = workers
        self.stop = asyncio.Event()
        self.run_task: asyncio.Task[int] | None = None

    def _observe(self, method: str, code: int) -> None:
        self.requests[f"{method} {code}"] += 1

    async def setup(self) -> None:
        if self.layout == "shared":
            self.informer = self.child_informer = await self.manager.informer("v1", "ConfigMap", namespace=self.ns)
        else:
            self.informer = await self.manager.informer(
                "v1", "ConfigMap", namespace=self.ns, label_selector=f"{PARENT_LABEL}=kaiwo-bench"
            )
            self.child_informer = await self.manager.informer(
                "v1", "ConfigMap", namespace=self.ns, label_selector=f"{CHILD_LABEL}=true"
            )
        self.child_informer.add_index("child", by_label(CHILD_LABEL))
        self.applier = Applier(self.client, "bench")
        self.reconciler = ChildReconciler(self.informer, self.child_informer, self.applier)
        self.controller = Controller(CONTROLLER, self.reconciler, workers=self.workers)
        self.controller.watches(self.informer)
        self.controller.owns(self.child_informer, "v1", "ConfigMap")
        self.manager.add(self.controller)

    def children_cached(self) -> int:
        return len(self.child_informer.indexer.indexes.get("child", {}).get("true", ()))

    def sample(self, metric: str, **labels: str) -> float:
        value = self.manager.metrics.registry.get_sample_value(metric, labels)
        return value or 0.0

    def idle(self) -> bool:
        # Not the active-workers gauge: registry.get_sample_value collects every metric (~0.5 ms a call), which
        # would put the poll loop's own CPU into the measurement.
        return len(self.controller.queue) == 0 and self.reconciler.active == 0

    def describe(self) -> str:
        return (
            f"the controller to be idle with {self.n} children cached: {self.children_cached()} children "
            f"cached, queue length {len(self.controller.queue)}, active workers "
            f"{self.sample('controller_runtime_active_workers', controller=CONTROLLER):.0f}, "
            f"reconciles {dict(self.reconciler.counts)}, errors "
            f"{self.sample('controller_runtime_reconcile_errors_total', controller=CONTROLLER):.0f}, "
            f"requests {dict(self.requests)}"
        )

    def watches_open(self) -> bool:
        opened = sum(v for k, v in self.requests.items() if k.startswith("WATCH "))
        return opened >= len(self.manager.informers)

    def run_task_done(self) -> bool:
        return self.run_task is not None and self.run_task.done()

    def errors(self) -> int:
        return int(self.sample("controller_runtime_reconcile_errors_total", controller=CONTROLLER))

    async def initial_pass(self, timeout: float) -> dict[str, Any]:
        before = Counter(self.requests)
        timer = CpuWall()
        with timer.measure():
            started = time.perf_counter()
            self.run_task = asyncio.create_task(self.manager.run(self.stop), name="manager")
            await within(self.informer.wait_synced(), timeout, "the ConfigMap informer to sync")
            synced_after = time.perf_counter() - started
            # Done: all children cached, the controller idle and every informer's watch answered (so that a watch
            # opening late is not counted as a request of the first resync).
            await wait_until(
                lambda: (
                    (self.children_cached() >= self.n and self.idle() and self.watches_open()) or self.run_task_done()
                ),
                timeout,
                self.describe,
                interval=0.05,
            )
            if self.run_task_done():
                raise BenchError(f"the manager stopped early: {self.describe()}")
        reqs = self.requests - before
        return {
            "wall_s": round(timer.wall, 2),
            "cpu_s": round(timer.cpu, 2),
            "informer_sync_s": round(synced_after, 2),
            "requests": sum(reqs.values()),
            "requests_by_method": dict(sorted(reqs.items())),
            "applied": self.applier.applied,
            "skipped": self.applier.skipped,
            "reconciles": dict(self.reconciler.counts),
            "reconcile_errors": self.errors(),
            "children_cached": self.children_cached(),
        }

    async def resync(self, timeout: float, profile: cProfile.Profile | None = None) -> dict[str, Any]:
        await wait_until(self.idle, timeout, self.describe)
        gc.collect()
        before = Counter(self.requests)
        reconciles_before = self.reconciler.counts["reconcile"]
        applied_before, skipped_before = self.applier.applied, self.applier.skipped
        errors_before = self.errors()
        timer = CpuWall()
        with GcTimer() as gc_timer, timer.measure():
            if profile is not None:
                profile.enable()
            enqueued = self.controller.resync()
            await wait_until(self.idle, timeout, self.describe, interval=0.005)
            if profile is not None:
                profile.disable()
        reqs = self.requests - before
        reconciles = self.reconciler.counts["reconcile"] - reconciles_before
        if reconciles < enqueued:
            raise BenchError(f"resync enqueued {enqueued} keys but only {reconciles} were reconciled")
        return {
            "enqueued": enqueued,
            "reconciles": reconciles,
            "wall_s": round(timer.wall, 3),
            "cpu_s": round(timer.cpu, 3),
            "reconciles_per_s": round(reconciles / timer.wall) if timer.wall else 0,
            "cpu_us_per_reconcile": round(1e6 * timer.cpu / reconciles, 1) if reconciles else 0,
            "requests": sum(reqs.values()),
            "requests_by_method": dict(sorted(reqs.items())),
            "applied": self.applier.applied - applied_before,
            "skipped": self.applier.skipped - skipped_before,
            "reconcile_errors": self.errors() - errors_before,
            "gc_s": round(gc_timer.seconds, 3),
            "gc_collections": {f"gen{g}": c for g, c in sorted(gc_timer.collections.items())},
            "live_gc_objects": len(gc.get_objects()),
        }

    async def shutdown(self, timeout: float = 60.0) -> int | None:
        if self.run_task is None:
            return None
        self.stop.set()
        code: int = await within(self.run_task, timeout, "the manager to stop")
        self.run_task = None
        for observer in (self._observe, self.manager.metrics.observe_request):
            with contextlib.suppress(ValueError):
                self.client.observers.remove(observer)
        return code


def profile_rows(profile: cProfile.Profile, top: int) -> tuple[list[dict[str, Any]], str]:
    out = io.StringIO()
    stats = pstats.Stats(profile, stream=out)
    stats.sort_stats("tottime").print_stats(top)
    rows = []
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    root = str(Path(__file__).resolve().parents[1]) + "/"
    for (filename, line, func), (_cc, ncalls, tottime, cumtime, _callers) in sorted(
        raw.items(), key=lambda kv: -kv[1][2]
    )[:top]:
        where = f"{filename.replace(root, '').split('site-packages/')[-1]}:{line}({func})"
        rows.append(
            {"function": where, "calls": ncalls, "tottime_s": round(tottime, 4), "cumtime_s": round(cumtime, 4)}
        )
    return rows, out.getvalue()


def cumulative_rows(profile: cProfile.Profile, names: tuple[str, ...]) -> list[dict[str, Any]]:
    """Inclusive time of selected functions (where the resync's CPU goes, by layer)."""
    stats = pstats.Stats(profile)
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    rows = []
    for (filename, line, func), (_cc, ncalls, _tottime, cumtime, _callers) in raw.items():
        key = f"{'/'.join(Path(filename).parts[-2:])}:{func}"
        if key in names:
            rows.append({"function": key, "line": line, "calls": ncalls, "cumtime_s": round(cumtime, 4)})
    rows.sort(key=lambda r: -float(r["cumtime_s"]))
    return rows


LAYERS = (
    "runtime/controller.py:process",
    "runtime/controller.py:resync",
    "bench/bench_resync.py:reconcile",
    "bench/bench_resync.py:desired_child",
    "runtime/apply.py:apply",
    "runtime/apply.py:unchanged",
    "runtime/apply.py:desired_hash",
    "runtime/workqueue.py:get",
    "runtime/workqueue.py:add",
    "runtime/workqueue.py:done",
    "runtime/metrics.py:add",
    "runtime/metrics.py:get",
    "runtime/metrics.py:done",
    "runtime/metrics.py:depth",
    "prometheus_client/metrics.py:labels",
    "prometheus_client/metrics.py:inc",
    "prometheus_client/metrics.py:dec",
    "prometheus_client/metrics.py:set",
    "prometheus_client/metrics.py:observe",
    "python3.11/uuid.py:uuid4",
    "runtime/logs.py:log_context",
    "trace/__init__.py:start_as_current_span",
)


async def run_layout(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    try:
        await bench.setup()
        print(
            f"[{bench.layout}] initial pass: manager + controller ({args.workers} workers), {args.objects} parents",
            flush=True,
        )
        out["initial"] = await bench.initial_pass(args.timeout)
        i = out["initial"]
        print(f"  done in {i['wall_s']:.1f} s: {i['requests']} requests {i['requests_by_method']}", flush=True)
        out["resyncs"] = []
        for k in range(args.repeat):
            r = await bench.resync(args.resync_timeout)
            out["resyncs"].append(r)
            print(
                f"  resync {k + 1}/{args.repeat}: {r['reconciles']} reconciles in {r['wall_s']:.2f} s, "
                f"{r['cpu_s']:.2f} CPU s, {r['requests']} requests",
                flush=True,
            )
        out["summary"] = summarize(out["resyncs"])
        if args.profile:
            profile = cProfile.Profile()
            r = await bench.resync(args.resync_timeout, profile)
            rows, _text = profile_rows(profile, args.profile_top)
            out["profile"] = {"resync": r, "top_tottime": rows, "layers": cumulative_rows(profile, LAYERS)}
        out["manager_exit_code"] = await bench.shutdown()
    finally:
        with contextlib.suppress(Exception):
            await bench.shutdown()
    return out


async def run(args: argparse.Namespace, kubeconfig: str) -> dict[str, Any]:
    report: dict[str, Any] = {"layouts": {}}
    async with (
        await Client.from_kubeconfig(kubeconfig) as client,
        configmap_namespace(
            client, "kaiwo-bench-resync-", args.objects, args.concurrency, args.create_timeout, "parent ConfigMaps"
        ) as (ns, created),
    ):
        report["create"] = created
        for layout in args.layouts:  # the children made by the first layout's pass are reused by the next
            bench = Bench(client, ns, args.objects, args.workers, layout)
            report["layouts"][layout] = await run_layout(bench, args)
    report["namespace"] = ns
    return report


def summarize(resyncs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "cpu_s_median": round(statistics.median(r["cpu_s"] for r in resyncs), 3),
        "cpu_s_min": min(r["cpu_s"] for r in resyncs),
        "cpu_s_max": max(r["cpu_s"] for r in resyncs),
        "wall_s_median": round(statistics.median(r["wall_s"] for r in resyncs), 3),
        "reconciles_per_s_median": round(statistics.median(r["reconciles_per_s"] for r in resyncs)),
        "requests_max": max(r["requests"] for r in resyncs),
    }


def print_table(report: dict[str, Any], args: argparse.Namespace) -> None:
    n = args.objects
    c = report["create"]
    print()
    print(
        f"resync benchmark: {n} parent ConfigMaps, a child each, {args.workers} workers; targets: "
        f"{TARGET_REQUESTS} requests and <= {TARGET_CPU_S} CPU s per resync"
    )
    print(
        f"create parents: {n} in {c['wall_s']:.1f} s = {c['per_s']:.0f}/s (concurrency {c['concurrency']}, "
        f"client CPU {1e6 * c['cpu_s'] / n:.0f} us/create)"
    )
    for layout, lr in report["layouts"].items():
        i = lr["initial"]
        print()
        print(
            f"[{layout}] initial pass (manager start, informer sync, {i['applied']} child applies, watch events): "
            f"{i['wall_s']:.1f} s wall (informer synced after {i['informer_sync_s']:.1f} s), {i['cpu_s']:.1f} CPU s, "
            f"{i['requests']} requests {i['requests_by_method']}, applies skipped {i['skipped']}, "
            f"reconciles {i['reconciles']}, errors {i['reconcile_errors']}"
        )
        head = (
            f"{'resync':<9}{'keys':>7}{'reconciles':>11}{'requests':>9}{'CPU s':>8}{'wall s':>8}{'rec/s':>8}"
            f"{'CPU us/rec':>11}{'skipped':>9}{'GC s':>6}{'gen2':>5}  targets"
        )
        print(head)
        print("-" * len(head))
        rows = [(str(k + 1), r) for k, r in enumerate(lr["resyncs"])]
        if "profile" in lr:
            rows.append(("cProfile", lr["profile"]["resync"]))
        for label, r in rows:
            ok = "ok" if r["requests"] <= TARGET_REQUESTS and r["cpu_s"] <= TARGET_CPU_S else "MISSED"
            if label == "cProfile":
                ok = "(profiled: slower)"
            print(
                f"{label:<9}{r['enqueued']:>7}{r['reconciles']:>11}{r['requests']:>9}{r['cpu_s']:>8.2f}"
                f"{r['wall_s']:>8.2f}{r['reconciles_per_s']:>8}{r['cpu_us_per_reconcile']:>11}"
                f"{r['skipped']:>9}{r['gc_s']:>6.2f}{r['gc_collections'].get('gen2', 0):>5}  {ok}"
                f"{' ' + str(r['requests_by_method']) if r['requests'] else ''}"
            )
        s = lr["summary"]
        print(
            f"[{layout}] median of {len(lr['resyncs'])}: {s['cpu_s_median']} CPU s (min {s['cpu_s_min']}, max "
            f"{s['cpu_s_max']}), {s['wall_s_median']} s wall, {s['reconciles_per_s_median']} reconciles/s, "
            f"at most {s['requests_max']} requests per resync"
        )
    for layout, lr in report["layouts"].items():
        if "profile" not in lr:
            continue
        p = lr["profile"]
        recs = p["resync"]["reconciles"]
        print()
        print(f"[{layout}] cProfile of one resync ({recs} reconciles), inclusive time by layer (us per reconcile):")
        for row in p["layers"]:
            print(f"  {row['function']:<42}{row['calls']:>8} calls {1e6 * row['cumtime_s'] / recs:>8.1f} us")
        print(f"[{layout}] top {args.profile_top} functions by own time:")
        for row in p["top_tottime"]:
            print(f"  {row['function'][:80]:<80}{row['calls']:>8} {1e6 * row['tottime_s'] / recs:>7.1f} us/rec")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--objects", type=int, default=10_000, help="parent ConfigMaps (N)")
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=5, help="measured resyncs")
    ap.add_argument("--kubeconfig", help="use this cluster instead of a local DevCluster")
    ap.add_argument("--state", type=Path, default=DEFAULT_STATE, help="DevCluster state folder")
    ap.add_argument("--concurrency", type=int, default=32, help="concurrent creates of parents")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds for the initial pass")
    ap.add_argument("--resync-timeout", type=float, default=120.0, help="seconds for one resync")
    ap.add_argument("--create-timeout", type=float, default=1800.0, help="seconds to create the parents")
    ap.add_argument(
        "--layouts",
        nargs="+",
        choices=("shared", "split"),
        default=["shared", "split"],
        help="informer layouts to measure, in this order (see Bench)",
    )
    ap.add_argument("--profile", action="store_true", help="profile one extra resync per layout with cProfile")
    ap.add_argument("--profile-top", type=int, default=25)
    args = ap.parse_args()

    info = machine()
    print_machine(info)
    cluster = ClusterHandle(args.kubeconfig, args.state)
    started = time.perf_counter()
    try:
        kubeconfig = cluster.up()
        report = asyncio.run(run(args, kubeconfig))
    finally:
        cluster.down()
    print_table(report, args)
    out: dict[str, Any] = {
        "benchmark": "resync",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": info,
        "objects": args.objects,
        "workers": args.workers,
        "targets": {"requests": TARGET_REQUESTS, "cpu_s": TARGET_CPU_S},
        "cluster": "given kubeconfig" if args.kubeconfig else f"DevCluster {args.state}",
        "total_s": round(time.perf_counter() - started, 1),
        **report,
    }
    write_results(RESULTS, out)


if __name__ == "__main__":
    main()
