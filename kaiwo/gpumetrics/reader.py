"""Reading GPU utilisation from exporters' Prometheus text (docs/design/gpu-utilisation.md).

Kaiwo scrapes the exporters' ``/metrics`` pages directly (no Prometheus server needed) and parses them with
prometheus-client's text parser. Two metric families count, each a gauge in percent:

- ``gpu_gfx_activity``: AMD device-metrics exporter. Labels ``gpu_id`` (and ``gpu_partition_id`` on
  partitioned GPUs), ``gpu_uuid``, ``hostname``, ``pod``, ``namespace``, ``container``.
- ``DCGM_FI_DEV_GPU_UTIL``: NVIDIA DCGM exporter. Labels ``gpu``, ``UUID``, ``device``, ``modelName``,
  ``Hostname`` (``hostname`` in newer releases), ``pod``, ``namespace``, ``container``.

Exporters that were scraped through a Prometheus server, or relabelled by a collector, carry the same
facts under other names: Prometheus renames clashing target labels to ``exported_pod``,
``exported_namespace`` and ``exported_container`` (then ``pod``/``namespace`` name the exporter's own pod,
so the ``exported_*`` label wins), and common relabelling rules use ``pod_name``, ``kubernetes_pod_name``,
``k8s_pod_name``, ``kubernetes_namespace``, ``k8s_namespace_name``. A GPU that no pod uses has an empty
pod label; its sample is kept (node-level utilisation) with ``pod == ""``.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

AMD_METRIC = "gpu_gfx_activity"
NVIDIA_METRIC = "DCGM_FI_DEV_GPU_UTIL"
VENDOR_OF_METRIC = {AMD_METRIC: "amd", NVIDIA_METRIC: "nvidia"}
RESOURCE_OF_VENDOR = {"amd": "amd.com/gpu", "nvidia": "nvidia.com/gpu"}

# Label names for one fact, most specific first (the first non-empty one is used).
NAMESPACE_LABELS = ("exported_namespace", "namespace", "kubernetes_namespace", "k8s_namespace_name", "pod_namespace")
POD_LABELS = ("exported_pod", "pod", "pod_name", "kubernetes_pod_name", "k8s_pod_name")
CONTAINER_LABELS = ("exported_container", "container", "container_name")
GPU_ID_LABELS = ("gpu_id", "gpu")
GPU_UUID_LABELS = ("gpu_uuid", "UUID", "uuid")
NODE_LABELS = ("Hostname", "hostname", "kubernetes_node", "node")


class MetricsError(RuntimeError):
    """An endpoint could not be read or its page is not Prometheus text."""


@dataclass(frozen=True)
class GpuSample:
    """The utilisation of one GPU (or GPU partition), and the pod using it if any."""

    vendor: str  # "amd" or "nvidia"
    namespace: str
    pod: str  # "" when no pod uses the GPU
    container: str
    gpu_id: str  # index on the node ("3"), "<index>/<partition>" for a partition, else the UUID
    node: str
    utilization: float  # percent, clamped to 0..100


def _first(labels: Mapping[str, str], names: Sequence[str]) -> str:
    for name in names:
        value = labels.get(name)
        if value:
            return value
    return ""


def _gpu_id(labels: Mapping[str, str]) -> str:
    index = _first(labels, GPU_ID_LABELS)
    if not index:
        return _first(labels, GPU_UUID_LABELS)
    partition = labels.get("gpu_partition_id", "")
    return f"{index}/{partition}" if partition not in ("", "0") else index


def parse(text: str) -> list[GpuSample]:
    """The GPU utilisation samples in one Prometheus text page; other metrics are ignored.

    Raises MetricsError when the page is not Prometheus text.
    """
    out: list[GpuSample] = []
    try:
        for family in text_string_to_metric_families(text):
            vendor = VENDOR_OF_METRIC.get(family.name)
            if vendor is None:
                continue
            for s in family.samples:
                if s.name != family.name or math.isnan(s.value):
                    continue
                out.append(
                    GpuSample(
                        vendor=vendor,
                        namespace=_first(s.labels, NAMESPACE_LABELS),
                        pod=_first(s.labels, POD_LABELS),
                        container=_first(s.labels, CONTAINER_LABELS),
                        gpu_id=_gpu_id(s.labels),
                        node=_first(s.labels, NODE_LABELS),
                        utilization=min(100.0, max(0.0, float(s.value))),
                    )
                )
    except ValueError as e:  # the parser's only error type
        raise MetricsError(f"not Prometheus text: {e}") from e
    return out


@dataclass(frozen=True)
class Source:
    """Where and how often GPU metrics are read: one or more exporter URLs (an AMD and a DCGM exporter, say)."""

    endpoints: tuple[str, ...]
    interval: float  # seconds between reads
    timeout: float = 10.0


def endpoints_of(text: str) -> tuple[str, ...]:
    """Comma-separated ``http(s)://`` URLs; ValueError naming the bad one otherwise."""
    urls = tuple(u.strip() for u in text.split(",") if u.strip())
    for url in urls:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"{url!r} is not an http(s) URL")
    return urls


async def _fetch_one(session: aiohttp.ClientSession, url: str, timeout: float) -> list[GpuSample]:
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=timeout)) as r:
            if r.status != 200:
                raise MetricsError(f"{url}: HTTP {r.status}")
            text = await r.text()
    except (aiohttp.ClientError, TimeoutError) as e:
        raise MetricsError(f"{url}: {e!r}") from e
    try:
        return parse(text)
    except MetricsError as e:
        raise MetricsError(f"{url}: {e}") from e


async def read(session: aiohttp.ClientSession, source: Source) -> list[GpuSample]:
    """All samples of all endpoints, read concurrently; MetricsError if any endpoint fails (a partial picture
    would make busy GPUs look idle)."""
    results = await asyncio.gather(*(_fetch_one(session, u, source.timeout) for u in source.endpoints))
    return [s for samples in results for s in samples]


@dataclass(frozen=True)
class PodUtilization:
    """The GPUs one pod uses and their utilisation."""

    vendor: str
    gpus: dict[str, float]  # GPU id -> percent

    @property
    def mean(self) -> float:
        return sum(self.gpus.values()) / len(self.gpus) if self.gpus else 0.0

    @property
    def minimum(self) -> float:
        return min(self.gpus.values()) if self.gpus else 0.0


def by_pod(samples: Iterable[GpuSample]) -> dict[tuple[str, str], PodUtilization]:
    """(namespace, pod) -> its GPUs; samples of GPUs no pod uses are left out."""
    out: dict[tuple[str, str], PodUtilization] = {}
    for s in samples:
        if not s.pod:
            continue
        key = (s.namespace, s.pod)
        entry = out.setdefault(key, PodUtilization(s.vendor, {}))
        entry.gpus[s.gpu_id] = s.utilization  # a pod runs on one node: GPU ids are unique within it
    return out
