"""Informer cold start and cache memory: N small ConfigMaps listed (paginated) into a fresh Informer.

    .venv/bin/python -m bench.bench_informer [--objects 10000] [--kubeconfig PATH] [--no-isolate]

Without ``--kubeconfig`` a local cluster is started with DevCluster in /tmp/kd-bench (reused if running; stopped
at the end only if this run started it). Steps:

1. create a fresh namespace and N small ConfigMaps in it (name, 2 labels, 2 short data keys), 32 POSTs at a
   time (the rate is reported);
2. in this process: a fresh namespace-scoped ``Informer`` (``ApiListerWatcher``) from start to
   ``wait_synced`` (20 LIST pages of 500 for N=10,000): wall and CPU seconds (``time.process_time``), and
   the RSS delta (VmRSS after ``gc.collect()``) from before the informer was built to after the sync, per
   object. Cross-checks of the retained memory, from a second informer built after ``tracemalloc.start()``:
   tracemalloc's net allocation (snapshot difference, with the lines that allocated it) and a walk of the
   cache's object graph (``sys.getsizeof`` of each distinct object, strings that are equal but not shared
   counted as duplicates);
3. the same, each in a fresh child process (no allocator state left from earlier passes), for these variants:
   ``baseline`` (as above), ``intern`` (a ``transform=`` that interns the strings repeated across objects),
   ``page-strip`` (prototype of a runtime change: managedFields dropped from each LIST page as it arrives
   instead of after the whole list) and ``page-strip+intern``.

Target: <= 3,000 bytes per small object (RSS delta). The namespace is deleted at the end. Prints a table and
writes bench/results/informer.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import subprocess
import sys
import time
import tracemalloc
from collections import Counter
from collections.abc import AsyncIterator
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
    reset_peak_rss,
    rss_bytes,
    status_kib,
    within,
    write_results,
)
from kaiwo.runtime.client import Client
from kaiwo.runtime.informer import (
    CLIENT_GRACE,
    ApiListerWatcher,
    Informer,
    ListerWatcher,
    Transform,
    strip_managed_fields,
)
from kaiwo.runtime.objects import Obj

RESULTS = Path(__file__).parent / "results" / "informer.json"
TARGET_BYTES_PER_OBJECT = 3000
VARIANTS = ("baseline", "intern", "page-strip", "page-strip+intern")


# --- variants --------------------------------------------------------------------------------------------------


def intern_repeated(obj: Obj) -> Obj:
    """A transform that makes the strings repeated across objects shared: namespace, label and annotation keys
    and short values, creationTimestamp (one per second of creation), apiVersion/kind, ownerReference kinds.
    Unique strings (name, uid, resourceVersion) are left alone: interning them saves nothing."""
    si = sys.intern
    for k in ("apiVersion", "kind"):
        v = obj.get(k)
        if isinstance(v, str):
            obj[k] = si(v)
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        for k in ("namespace", "creationTimestamp", "generateName"):
            v = meta.get(k)
            if isinstance(v, str):
                meta[k] = si(v)
        for field in ("labels", "annotations"):
            d = meta.get(field)
            if isinstance(d, dict):
                meta[field] = {si(k): si(v) if isinstance(v, str) and len(v) <= 64 else v for k, v in d.items()}
        for ref in meta.get("ownerReferences") or ():
            for k in ("apiVersion", "kind"):
                if isinstance(ref.get(k), str):
                    ref[k] = si(ref[k])
    return obj


class PageStripListerWatcher:
    """Prototype of a runtime change: drop managedFields from every item as each LIST page arrives.

    ``Informer._relist`` keeps all pages' items (managedFields included) until the last page, then strips them;
    doing it per page bounds the transient memory to one page and keeps the freed blocks from fragmenting the
    heap between the objects that stay cached."""

    def __init__(self, inner: ApiListerWatcher, transform: Transform | None = None) -> None:
        self.inner = inner
        self.transform = transform

    async def list_page(self, continue_token: str | None) -> Obj:
        page = await self.inner.list_page(continue_token)
        items = page.get("items") or []
        for i, o in enumerate(items):
            o = strip_managed_fields(o)
            items[i] = self.transform(o) if self.transform else o
        return page

    def watch(
        self,
        resource_version: str,
        timeout_seconds: int,
        client_grace: float = CLIENT_GRACE,
    ) -> AsyncIterator[Obj]:
        return self.inner.watch(resource_version, timeout_seconds, client_grace)


def build_informer(client: Client, ns: str, variant: str, path_resource: Any) -> Informer:
    transform = intern_repeated if variant.endswith("intern") else None
    api_lw = ApiListerWatcher(client, path_resource, ns)
    lw: ListerWatcher = PageStripListerWatcher(api_lw, transform) if variant.startswith("page-strip") else api_lw
    return Informer(lw, name=f"bench-{variant}", transform=transform)


# --- memory accounting ------------------------------------------------------------------------------------------


def graph_size(informer: Informer) -> dict[str, Any]:
    """Bytes of the distinct objects reachable from the cache (sys.getsizeof), by type; plus the bytes that
    interning would save (strings equal to one seen before but a different object)."""
    seen: set[int] = set()
    by_type: Counter[str] = Counter()
    counts: Counter[str] = Counter()
    first_of: dict[str, int] = {}
    dup_bytes: Counter[str] = Counter()  # string value -> bytes of its extra copies
    where: dict[str, str] = {}  # string value -> the field of its first duplicate
    by_path: Counter[str] = Counter()  # field -> bytes of duplicates found there

    def visit(o: Any, path: str) -> None:
        if id(o) in seen or o is None or isinstance(o, bool):
            return
        seen.add(id(o))
        size = sys.getsizeof(o)
        t = type(o).__name__
        by_type[t] += size
        counts[t] += 1
        if isinstance(o, str):
            if o in first_of and first_of[o] != id(o):
                dup_bytes[o] += size
                by_path[_generic_path(path)] += size
                where.setdefault(o, path)
            else:
                first_of.setdefault(o, id(o))
        elif isinstance(o, dict):
            for k, v in o.items():
                visit(k, path + ".<key>")
                visit(v, f"{path}.{k}" if isinstance(k, str) else path)
        elif isinstance(o, list | tuple | set | frozenset):
            for v in o:
                visit(v, path + "[]")

    for obj in informer.indexer.items.values():
        visit(obj, "obj")
    objects_total = sum(by_type.values())
    # The indexer's own structures: the key -> object dict, the keys and the secondary indexes.
    before, before_counts = dict(by_type), dict(counts)
    visit(informer.indexer.items, "items")
    visit(informer.indexer.indexes, "indexes")
    index_total = sum(by_type.values()) - objects_total
    return {
        "objects_bytes": objects_total,
        "index_bytes": index_total,
        "by_type_bytes": dict(before),
        "by_type_count": before_counts,
        "duplicate_string_bytes": sum(dup_bytes.values()),
        "duplicate_string_bytes_by_field": dict(by_path.most_common(8)),
        "duplicate_string_top": [
            {"value": v[:40], "first_field": _generic_path(where[v]), "bytes": b} for v, b in dup_bytes.most_common(8)
        ],
    }


def _generic_path(path: str) -> str:
    # Label/annotation/data values are reported per map, not per key.
    for field in ("labels", "annotations", "data"):
        marker = f".{field}."
        if marker in path:
            return path.split(marker)[0] + marker + "*"
    return path


def tracemalloc_top(diff: list[tracemalloc.StatisticDiff], n: int) -> list[dict[str, Any]]:
    root = str(Path(__file__).resolve().parents[1]) + "/"
    rows = []
    for s in diff[:n]:
        frame = s.traceback[0]
        rows.append(
            {
                "where": f"{frame.filename.replace(root, '')}:{frame.lineno}",
                "bytes": s.size_diff,
                "blocks": s.count_diff,
            }
        )
    return rows


# --- one measurement ----------------------------------------------------------------------------------------------


async def measure(client: Client, ns: str, n: int, variant: str, timeout: float) -> dict[str, Any]:
    """RSS pass, then a tracemalloc pass, of a fresh informer of ``ns`` (which holds ``n`` ConfigMaps)."""
    res = await client.resource("v1", "ConfigMap")
    requests: Counter[str] = Counter()
    client.observers.append(lambda method, code: requests.update([method]))

    # Pass 1: time, CPU and RSS (nothing traced).
    gc.collect()
    rss0 = rss_bytes()
    peak_reset = reset_peak_rss()
    timer = CpuWall()
    informer = build_informer(client, ns, variant, res)
    with timer.measure():
        task = asyncio.create_task(informer.run(), name=f"informer-{variant}")
        await within(informer.wait_synced(), timeout, f"informer ({variant}) to sync {n} ConfigMaps")
    gets = requests["GET"]
    rss1 = rss_bytes()
    hwm = status_kib("VmHWM") * 1024 if peak_reset else 0
    cached = len(informer.indexer.items)
    if cached < n:  # n plus what the cluster puts in every namespace (the kube-root-ca.crt ConfigMap)
        raise BenchError(f"informer ({variant}) cached {cached} objects, expected at least {n}")
    n = cached
    await _stop(task)
    del informer, task
    gc.collect()

    # Pass 2: the same under tracemalloc (net allocation and where it comes from), then the graph walk.
    tracemalloc.start(1)
    before = tracemalloc.take_snapshot()
    tracemalloc.reset_peak()
    base_current, _ = tracemalloc.get_traced_memory()
    informer = build_informer(client, ns, variant, res)
    task = asyncio.create_task(informer.run(), name=f"informer-{variant}-traced")
    await within(informer.wait_synced(), timeout, f"informer ({variant}, traced) to sync {n} ConfigMaps")
    gc.collect()
    current, peak = tracemalloc.get_traced_memory()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    diff = after.compare_to(before, "lineno")
    graph = graph_size(informer)
    await _stop(task)
    del informer, task, before, after
    gc.collect()

    return {
        "variant": variant,
        "pid": 0,
        "cached_objects": n,
        "sync_wall_s": round(timer.wall, 3),
        "sync_cpu_s": round(timer.cpu, 3),
        "list_requests": gets,
        "objects_per_s": round(n / timer.wall) if timer.wall else 0,
        "rss_before_mib": round(rss0 / 2**20, 1),
        "rss_after_mib": round(rss1 / 2**20, 1),
        "rss_delta_bytes_per_object": round((rss1 - rss0) / n),
        "peak_rss_delta_bytes_per_object": round((hwm - rss0) / n) if hwm else None,
        "tracemalloc_bytes_per_object": round((current - base_current) / n),
        "tracemalloc_peak_bytes_per_object": round((peak - base_current) / n),
        "tracemalloc_top": tracemalloc_top(diff, 6),
        "graph_bytes_per_object": round((graph["objects_bytes"] + graph["index_bytes"]) / n),
        "graph_object_bytes_per_object": round(graph["objects_bytes"] / n),
        "graph_index_bytes_per_object": round(graph["index_bytes"] / n),
        "graph_duplicate_string_bytes_per_object": round(graph["duplicate_string_bytes"] / n),
        "graph": graph,
    }


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def measure_in_child(kubeconfig: str, ns: str, n: int, variant: str, timeout: float) -> dict[str, Any]:
    argv = [
        sys.executable,
        "-m",
        "bench.bench_informer",
        "--kubeconfig",
        kubeconfig,
        "--measure-only",
        ns,
        "--objects",
        str(n),
        "--variant",
        variant,
        "--timeout",
        str(timeout),
    ]
    proc = subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout * 3, cwd=Path(__file__).resolve().parents[1]
    )
    if proc.returncode != 0:
        raise BenchError(f"child measurement ({variant}) failed with code {proc.returncode}:\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


# --- the run ----------------------------------------------------------------------------------------------------


async def run(args: argparse.Namespace, kubeconfig: str) -> dict[str, Any]:
    report: dict[str, Any] = {}
    async with (
        await Client.from_kubeconfig(kubeconfig) as client,
        configmap_namespace(client, "kaiwo-bench-informer-", args.objects, args.concurrency, args.create_timeout) as (
            ns,
            created,
        ),
    ):
        report["create"] = created
        gc.collect()
        print("measuring in this process: baseline", flush=True)
        in_process = await measure(client, ns, args.objects, "baseline", args.timeout)
        in_process["where"] = "same process"
        rows = [in_process]
        if not args.no_isolate:
            for variant in args.variants:
                print(f"measuring in a child process: {variant}", flush=True)
                row = await asyncio.to_thread(measure_in_child, kubeconfig, ns, args.objects, variant, args.timeout)
                row["where"] = "child process"
                rows.append(row)
        report["results"] = rows
    report["namespace"] = ns
    return report


async def run_child(args: argparse.Namespace) -> dict[str, Any]:
    async with await Client.from_kubeconfig(args.kubeconfig) as client:
        result = await measure(client, args.measure_only, args.objects, args.variant, args.timeout)
    result["pid"] = os.getpid()
    return result


def print_table(report: dict[str, Any], n: int) -> None:
    c = report["create"]
    print()
    print(
        f"informer benchmark: {n} small ConfigMaps in one namespace, LIST pages of 500, target "
        f"<= {TARGET_BYTES_PER_OBJECT} B/object (RSS)"
    )
    print(
        f"create: {n} in {c['wall_s']:.1f} s = {c['per_s']:.0f} objects/s (concurrency {c['concurrency']}, "
        f"client CPU {c['cpu_s']:.1f} s = {1e6 * c['cpu_s'] / n:.0f} us/create)"
    )
    head = (
        f"{'variant':<19}{'where':<15}{'sync s':>7}{'CPU s':>7}{'obj/s':>8}{'RSS B/obj':>10}"
        f"{'tracem B/obj':>13}{'tm peak B/obj':>14}{'graph B/obj':>12}{'dup str B':>10}  target"
    )
    print(head)
    print("-" * len(head))
    for r in report["results"]:
        ok = "ok" if r["rss_delta_bytes_per_object"] <= TARGET_BYTES_PER_OBJECT else "ABOVE"
        print(
            f"{r['variant']:<19}{r['where']:<15}{r['sync_wall_s']:>7.2f}{r['sync_cpu_s']:>7.2f}"
            f"{r['objects_per_s']:>8}{r['rss_delta_bytes_per_object']:>10}"
            f"{r['tracemalloc_bytes_per_object']:>13}{r['tracemalloc_peak_bytes_per_object']:>14}"
            f"{r['graph_bytes_per_object']:>12}"
            f"{r['graph_duplicate_string_bytes_per_object']:>10}  {ok}"
        )
    print("RSS B/obj: VmRSS growth (after gc.collect) from before the informer to after its sync, per cached object.")
    print("  'same process' reuses heap freed after the creation phase, so it reads low; a fresh child process is")
    print("  what an operator starting up pays. tracem: tracemalloc's net allocation; tm peak: its peak during the")
    print("  LIST; graph: sys.getsizeof of the distinct objects reachable from the cache; dup str: bytes of strings")
    print("  that equal another cached string but are a separate object (what interning could save).")
    base = report["results"][0]
    g = base["graph"]
    print()
    print(f"where the memory of one cached object goes (baseline, object graph; {n} objects):")
    for t, b in sorted(g["by_type_bytes"].items(), key=lambda kv: -kv[1]):
        print(f"  {t:<8} {b / n:>7.0f} B/object in {g['by_type_count'][t] / n:.1f} objects/object")
    print(f"  indexer (key dict, keys, namespace/owner indexes): {base['graph_index_bytes_per_object']} B/object")
    print("  duplicated strings (equal value, separate object) by field:")
    for field, b in g["duplicate_string_bytes_by_field"].items():
        print(f"    {field:<40} {b / n:>6.0f} B/object")
    print("  the most duplicated strings:")
    for d in g["duplicate_string_top"]:
        print(f"    {d['value']!r:<30} {d['bytes'] / n:>6.0f} B/object  (first duplicate in {d['first_field']})")
    print("tracemalloc: net allocation by line (baseline):")
    for row in base["tracemalloc_top"]:
        print(f"  {row['where']:<45} {row['bytes'] / n:>7.0f} B/object {row['blocks'] / n:>6.1f} blocks/object")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--objects", type=int, default=10_000, help="ConfigMaps to create and list (N)")
    ap.add_argument("--kubeconfig", help="use this cluster instead of a local DevCluster")
    ap.add_argument("--state", type=Path, default=DEFAULT_STATE, help="DevCluster state folder")
    ap.add_argument("--concurrency", type=int, default=32, help="concurrent creates")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for one informer sync")
    ap.add_argument("--create-timeout", type=float, default=1800.0, help="seconds to wait for all creates")
    ap.add_argument("--no-isolate", action="store_true", help="skip the child-process variants")
    ap.add_argument(
        "--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS), help="variants measured in child processes"
    )
    ap.add_argument("--measure-only", metavar="NAMESPACE", help=argparse.SUPPRESS)
    ap.add_argument("--variant", choices=VARIANTS, default="baseline", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.measure_only:  # child mode: one measurement of an existing namespace, JSON on the last line
        if not args.kubeconfig:
            ap.error("--measure-only needs --kubeconfig")
        print(json.dumps(asyncio.run(run_child(args))))
        return

    info = machine()
    print_machine(info)
    cluster = ClusterHandle(args.kubeconfig, args.state)
    started = time.perf_counter()
    try:
        kubeconfig = cluster.up()
        report = asyncio.run(run(args, kubeconfig))
    finally:
        cluster.down()
    print_table(report, args.objects)
    out: dict[str, Any] = {
        "benchmark": "informer",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": info,
        "objects": args.objects,
        "list_page_size": 500,
        "target_bytes_per_object": TARGET_BYTES_PER_OBJECT,
        "cluster": "given kubeconfig" if args.kubeconfig else f"DevCluster {args.state}",
        "total_s": round(time.perf_counter() - started, 1),
        **report,
    }
    write_results(RESULTS, out)


if __name__ == "__main__":
    main()
