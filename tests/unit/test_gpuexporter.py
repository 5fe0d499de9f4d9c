"""The local cluster's fake GPU exporter: GPU assignment, scripted utilisation, and that its pages read back
through the real reader as each vendor's format."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector, CollectorRegistry

from kaiwo.devcluster.gpuexporter import families, gpus, parse_script, scripted
from kaiwo.gpumetrics.reader import parse
from kaiwo.runtime.objects import Obj
from tests.builders import NodeBuilder, PodBuilder

T0 = 1_700_000_000.0
START = "2023-11-14T22:13:20Z"  # == T0


VENDOR = {"amd.com/gpu": "amd", "nvidia.com/gpu": "nvidia"}


def node(name: str, resource: str, count: int) -> Obj:
    return NodeBuilder(name).cpu("8", "64Gi").gpus(count, VENDOR[resource], labelled=False).obj()


def pod(name: str, node_name: str, resource: str, n: int, created: str, util: str | None = None) -> Obj:
    built = PodBuilder(name, "ns").created(created).on_node(node_name).sidecar().gpus(n, VENDOR[resource])
    if util is not None:
        built.annotation("kwok.kaiwo.dev/gpu-utilization", util)
    return built.phase("Running").started(START).obj()


def test_script() -> None:
    assert parse_script("3") == [(0.0, 3.0)]
    assert parse_script("3@30s, 90@0s") == [(0.0, 90.0), (30.0, 3.0)]
    with pytest.raises(ValueError):
        parse_script("150")
    assert scripted("90@0s,3@30s", 29) == 90 and scripted("90@0s,3@30s", 30) == 3
    assert scripted(None, 5) == 100 and scripted("nonsense", 5) == 100


def test_gpus_assigned_oldest_first_and_free_ones_idle() -> None:
    nodes = [node("amd-0", "amd.com/gpu", 4), node("nv-0", "nvidia.com/gpu", 2)]
    pods = [
        pod("young", "amd-0", "amd.com/gpu", 2, "2023-11-14T22:00:02Z", util="90@0s,3@30s"),
        pod("old", "amd-0", "amd.com/gpu", 1, "2023-11-14T22:00:01Z", util="7"),
        pod("nv", "nv-0", "nvidia.com/gpu", 1, "2023-11-14T22:00:01Z"),
    ]
    got = gpus(nodes, pods, T0 + 60)
    assert [(g.node, g.index, g.pod, g.container, g.utilization) for g in got] == [
        ("amd-0", 0, "old", "main", 7.0),
        ("amd-0", 1, "young", "main", 3.0),
        ("amd-0", 2, "young", "main", 3.0),
        ("amd-0", 3, "", "", 0.0),
        ("nv-0", 0, "nv", "main", 100.0),
        ("nv-0", 1, "", "", 0.0),
    ]
    pods[0]["status"]["phase"] = "Succeeded"  # a finished pod holds no GPU
    assert [g.pod for g in gpus(nodes, pods, T0 + 60)][:3] == ["old", "", ""]


def test_pages_read_back_as_each_vendor() -> None:
    nodes = [node("amd-0", "amd.com/gpu", 2), node("nv-0", "nvidia.com/gpu", 1)]
    pods = [pod("a", "amd-0", "amd.com/gpu", 1, START, util="3"), pod("n", "nv-0", "nvidia.com/gpu", 1, START)]
    all_gpus = gpus(nodes, pods, T0)

    class Page(Collector):
        def __init__(self, vendor: str | None) -> None:
            self.vendor = vendor

        def collect(self) -> Iterator[Metric]:
            return families(all_gpus, self.vendor)

    def text(vendor: str | None) -> str:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(Page(vendor))
        return generate_latest(registry).decode()

    amd_page = text("amd")
    assert 'gpu_partition_id="0"' in amd_page and 'card_model="amd"' in amd_page and "DCGM" not in amd_page
    assert [(s.vendor, s.namespace, s.pod, s.gpu_id, s.node, s.utilization) for s in parse(amd_page)] == [
        ("amd", "ns", "a", "0", "amd-0", 3.0),
        ("amd", "", "", "1", "amd-0", 0.0),
    ]
    nv_page = text("nvidia")
    assert 'Hostname="nv-0"' in nv_page and 'UUID="GPU-nv-0-gpu-0"' in nv_page
    assert [(s.vendor, s.pod, s.container, s.utilization) for s in parse(nv_page)] == [("nvidia", "n", "main", 100.0)]
    assert len(parse(text(None))) == 3
