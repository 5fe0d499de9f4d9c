"""The local cluster's GPU exporter: ``python -m kaiwo.devcluster.gpuexporter --kubeconfig K --port P``.

kwok runs no containers, so no GPU is ever busy. This process plays both vendors' exporters for the fake
GPU nodes: it watches Nodes and Pods, gives each running pod on a GPU node the GPUs it requested (lowest free
indices, oldest pod first) and serves their utilisation in each vendor's format (kaiwo.gpumetrics.reader
names the labels):

- ``/amd/metrics``: ``gpu_gfx_activity`` as the AMD device-metrics exporter writes it;
- ``/nvidia/metrics``: ``DCGM_FI_DEV_GPU_UTIL`` as the NVIDIA DCGM exporter writes it;
- ``/metrics``: both; ``/healthz``: ok once the caches are filled.

A pod's utilisation is scripted by its annotation ``kwok.kaiwo.dev/gpu-utilization`` (pods inherit it from a
KaiwoJob's or Job's template): a percentage (``"3"``), or a time series ``"90@0s,3@30s"`` (90 % from the start,
3 % from 30 s after the pod started). Without the annotation a pod's GPUs are fully busy (100); GPUs no
pod uses report 0 with empty pod labels, as the real exporters do.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from kaiwo.gpumetrics.reader import AMD_METRIC, NVIDIA_METRIC
from kaiwo.runtime import timestamps
from kaiwo.runtime.client import Client
from kaiwo.runtime.informer import ApiListerWatcher, Informer
from kaiwo.runtime.objects import Obj
from kaiwo.translate.preemption import go_duration

log = logging.getLogger("kaiwo.devcluster.gpuexporter")
UTILIZATION_ANNOTATION = "kwok.kaiwo.dev/gpu-utilization"
BUSY = 100.0
VENDOR_RESOURCES = {"amd": "amd.com/gpu", "nvidia": "nvidia.com/gpu"}


def parse_script(text: str) -> list[tuple[float, float]]:
    """``"3"`` or ``"90@0s,3@30s"`` -> [(seconds after start, percent)], sorted; ValueError if malformed."""
    steps = []
    for part in text.split(","):
        value, _, at = part.strip().partition("@")
        percent = float(value)
        if not 0 <= percent <= 100:
            raise ValueError(f"{value!r}: a utilisation is a percentage 0..100")
        steps.append((go_duration(at) if at else 0.0, percent))
    return sorted(steps)


def scripted(text: str | None, elapsed: float) -> float:
    """The utilisation the annotation gives ``elapsed`` seconds after the pod started (100 if unset/invalid)."""
    if not text:
        return BUSY
    try:
        steps = parse_script(text)
    except ValueError:
        return BUSY
    value = steps[0][1]
    for at, percent in steps:
        if at <= elapsed:
            value = percent
    return value


def _epoch(ts: str | None) -> float | None:
    return timestamps.epoch(ts) if ts else None


def _gpus_requested(pod: Obj, resource: str) -> tuple[int, str]:
    """(GPUs the pod asks for, first container asking) — limits win over requests, as for extended resources."""
    total, first = 0, ""
    for c in (pod.get("spec") or {}).get("containers") or []:
        res = c.get("resources") or {}
        n = int((res.get("limits") or {}).get(resource) or (res.get("requests") or {}).get(resource) or 0)
        if n and not first:
            first = c.get("name", "")
        total += n
    return total, first


@dataclass(frozen=True)
class Gpu:
    vendor: str
    node: str
    index: int
    model: str
    namespace: str = ""
    pod: str = ""
    container: str = ""
    utilization: float = 0.0

    @property
    def uuid(self) -> str:
        return f"{self.node}-gpu-{self.index}"


def gpus(nodes: Iterable[Obj], pods: Iterable[Obj], now: float) -> list[Gpu]:
    """Every GPU of every GPU node, with the running pod that holds it and its scripted utilisation."""
    by_node: dict[str, list[Obj]] = {}
    for p in pods:
        node = (p.get("spec") or {}).get("nodeName")
        if node and (p.get("status") or {}).get("phase") == "Running" and not p["metadata"].get("deletionTimestamp"):
            by_node.setdefault(node, []).append(p)
    out: list[Gpu] = []
    for node in sorted(nodes, key=lambda n: n["metadata"]["name"]):
        name = node["metadata"]["name"]
        labels = node["metadata"].get("labels") or {}
        capacity = (node.get("status") or {}).get("capacity") or {}
        for vendor, resource in VENDOR_RESOURCES.items():
            count = int(capacity.get(resource) or 0)
            if not count:
                continue
            model = labels.get("amd.com/gpu.product-name") or labels.get("nvidia.com/gpu.product") or vendor
            slots: list[Gpu] = []
            holders = sorted(
                by_node.get(name, []), key=lambda p: (p["metadata"].get("creationTimestamp", ""), p["metadata"]["name"])
            )
            for p in holders:
                want, container = _gpus_requested(p, resource)
                started = _epoch((p.get("status") or {}).get("startTime")) or now
                value = scripted((p["metadata"].get("annotations") or {}).get(UTILIZATION_ANNOTATION), now - started)
                for _ in range(min(want, count - len(slots))):
                    slots.append(
                        Gpu(
                            vendor,
                            name,
                            len(slots),
                            model,
                            p["metadata"]["namespace"],
                            p["metadata"]["name"],
                            container,
                            value,
                        )
                    )
            slots += [Gpu(vendor, name, i, model) for i in range(len(slots), count)]
            out += slots
    return out


def families(all_gpus: list[Gpu], vendor: str | None) -> Iterator[Metric]:
    if vendor in (None, "amd"):
        amd = GaugeMetricFamily(
            AMD_METRIC,
            "GPU graphics engine activity in percent",
            labels=[
                "gpu_id",
                "gpu_partition_id",
                "gpu_uuid",
                "serial_number",
                "card_model",
                "hostname",
                "pod",
                "namespace",
                "container",
            ],
        )
        for g in all_gpus:
            if g.vendor == "amd":
                amd.add_metric(
                    [str(g.index), "0", g.uuid, f"kwok{g.index}", g.model, g.node, g.pod, g.namespace, g.container],
                    g.utilization,
                )
        yield amd
    if vendor in (None, "nvidia"):
        dcgm = GaugeMetricFamily(
            NVIDIA_METRIC,
            "GPU utilization (in %).",
            labels=["gpu", "UUID", "device", "modelName", "Hostname", "container", "namespace", "pod"],
        )
        for g in all_gpus:
            if g.vendor == "nvidia":
                dcgm.add_metric(
                    [
                        str(g.index),
                        f"GPU-{g.uuid}",
                        f"nvidia{g.index}",
                        g.model,
                        g.node,
                        g.container,
                        g.namespace,
                        g.pod,
                    ],
                    g.utilization,
                )
        yield dcgm


class _Page(Collector):
    def __init__(self, nodes: Informer, pods: Informer, vendor: str | None) -> None:
        self.nodes, self.pods, self.vendor = nodes, pods, vendor

    def collect(self) -> Iterator[Metric]:
        yield from families(gpus(self.nodes.objects(), self.pods.objects(), time.time()), self.vendor)


def app(nodes: Informer, pods: Informer) -> web.Application:
    pages = {}
    for vendor in (None, "amd", "nvidia"):
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Page(nodes, pods, vendor))
        pages[vendor] = registry

    def handler(vendor: str | None) -> Any:
        async def serve(_: web.Request) -> web.Response:
            return web.Response(body=generate_latest(pages[vendor]), content_type="text/plain")

        return serve

    async def healthz(_: web.Request) -> web.Response:
        ready = nodes.has_synced and pods.has_synced
        return web.Response(status=200 if ready else 503, text="ok" if ready else "syncing")

    a = web.Application()
    a.add_routes(
        [
            web.get("/metrics", handler(None)),
            web.get("/amd/metrics", handler("amd")),
            web.get("/nvidia/metrics", handler("nvidia")),
            web.get("/healthz", healthz),
        ]
    )
    return a


async def serve(kubeconfig: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with await Client.from_kubeconfig(kubeconfig) as client:
        nodes = Informer(ApiListerWatcher(client, await client.resource("v1", "Node")), name="nodes")
        pods = Informer(
            ApiListerWatcher(client, await client.resource("v1", "Pod"), field_selector="status.phase=Running"),
            name="pods",
        )
        tasks = [asyncio.create_task(nodes.run()), asyncio.create_task(pods.run())]
        runner = web.AppRunner(app(nodes, pods), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        log.info("serving GPU metrics on 127.0.0.1:%d", port)
        await stop.wait()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kubeconfig", required=True)
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(serve(args.kubeconfig, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
