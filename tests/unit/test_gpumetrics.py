"""The GPU metrics reader on exposition text shaped like each vendor's exporter."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp import web

from kaiwo.gpumetrics.reader import GpuSample, MetricsError, Source, by_pod, endpoints_of, parse, read

AMD_PAGE = """\
# HELP gpu_gfx_activity Graphics engine activity in percent
# TYPE gpu_gfx_activity gauge
gpu_gfx_activity{card_model="102-G30211-0C",card_series="AMD Instinct MI300X OAM",card_vendor="AMD",cluster_name="",\
container="main",gpu_compute_partition_type="spx",gpu_id="0",gpu_partition_id="0",\
gpu_uuid="ccff74a1-0000-1000-80e0-c6d49f5b0d86",hostname="mi300-1",namespace="team-a",pod="train-0",\
serial_number="692409005408"} 3
gpu_gfx_activity{card_model="102-G30211-0C",container="main",gpu_id="1",gpu_partition_id="0",gpu_uuid="u1",\
hostname="mi300-1",namespace="team-a",pod="train-0"} 5
gpu_gfx_activity{container="",gpu_id="2",gpu_partition_id="0",gpu_uuid="u2",hostname="mi300-1",namespace="",pod=""} 0
gpu_gfx_activity{container="c",gpu_id="3",gpu_partition_id="2",hostname="mi300-1",namespace="team-b",pod="cpx"} 250
# TYPE gpu_power_usage gauge
gpu_power_usage{gpu_id="0",hostname="mi300-1"} 400
"""

DCGM_PAGE = """\
# HELP DCGM_FI_DEV_GPU_UTIL GPU utilization (in %).
# TYPE DCGM_FI_DEV_GPU_UTIL gauge
DCGM_FI_DEV_GPU_UTIL{gpu="0",UUID="GPU-8f1f4d06",pci_bus_id="00000000:00:04.0",device="nvidia0",\
modelName="NVIDIA H100 80GB HBM3",Hostname="h100-0",container="serve",namespace="team-b",pod="llm-7d9"} 91
DCGM_FI_DEV_GPU_UTIL{gpu="1",UUID="GPU-aa",device="nvidia1",modelName="NVIDIA H100 80GB HBM3",Hostname="h100-0",\
container="",namespace="",pod=""} 0
# HELP DCGM_FI_DEV_FB_USED Framebuffer memory used (in MiB).
# TYPE DCGM_FI_DEV_FB_USED gauge
DCGM_FI_DEV_FB_USED{gpu="0",UUID="GPU-8f1f4d06"} 1952
"""

# DCGM scraped through Prometheus: the target's pod/namespace labels name the exporter pod, the workload's are
# renamed exported_*. Untyped (no TYPE line), as a federation page may be.
DCGM_VIA_PROMETHEUS = """\
DCGM_FI_DEV_GPU_UTIL{gpu="2",UUID="GPU-bb",hostname="h100-1",namespace="gpu-operator",\
pod="nvidia-dcgm-exporter-x7",exported_namespace="team-c",exported_pod="job-0",exported_container="main"} 42.5
"""


def test_amd_labels() -> None:
    samples = parse(AMD_PAGE)
    assert samples[0] == GpuSample("amd", "team-a", "train-0", "main", "0", "mi300-1", 3.0)
    assert [s.gpu_id for s in samples] == ["0", "1", "2", "3/2"]  # a partition other than 0 is part of the id
    assert samples[2].pod == "" and samples[2].namespace == ""  # an unused GPU is kept, without a pod
    assert samples[3].utilization == 100.0  # clamped
    assert {s.vendor for s in samples} == {"amd"}  # gpu_power_usage ignored


def test_dcgm_labels() -> None:
    samples = parse(DCGM_PAGE)
    assert samples == [
        GpuSample("nvidia", "team-b", "llm-7d9", "serve", "0", "h100-0", 91.0),
        GpuSample("nvidia", "", "", "", "1", "h100-0", 0.0),
    ]


def test_exported_labels_win_over_the_exporters_own() -> None:
    (s,) = parse(DCGM_VIA_PROMETHEUS)
    assert (s.namespace, s.pod, s.container, s.node, s.utilization) == ("team-c", "job-0", "main", "h100-1", 42.5)


def test_relabelled_and_uuid_only() -> None:
    text = 'gpu_gfx_activity{kubernetes_namespace="ns",kubernetes_pod_name="p",gpu_uuid="abc"} 7\n'
    (s,) = parse(text)
    assert (s.namespace, s.pod, s.gpu_id) == ("ns", "p", "abc")


def test_nan_samples_are_skipped_and_garbage_is_an_error() -> None:
    assert parse('gpu_gfx_activity{pod="p",namespace="n",gpu_id="0"} NaN\n') == []
    with pytest.raises(MetricsError):
        parse("<html>not metrics</html>\n")


def test_by_pod_groups_gpus() -> None:
    pods = by_pod(parse(AMD_PAGE + DCGM_PAGE))
    assert set(pods) == {("team-a", "train-0"), ("team-b", "cpx"), ("team-b", "llm-7d9")}
    train = pods[("team-a", "train-0")]
    assert train.vendor == "amd" and train.gpus == {"0": 3.0, "1": 5.0}
    assert train.mean == 4.0 and train.minimum == 3.0


def test_endpoints_of() -> None:
    assert endpoints_of(" http://a:1/metrics, https://b/metrics ,") == ("http://a:1/metrics", "https://b/metrics")
    with pytest.raises(ValueError, match="ftp://x"):
        endpoints_of("ftp://x")


async def test_read_merges_endpoints_and_fails_whole() -> None:
    async def amd(_: web.Request) -> web.Response:
        return web.Response(text=AMD_PAGE)

    async def dcgm(_: web.Request) -> web.Response:
        return web.Response(text=DCGM_PAGE)

    async def broken(_: web.Request) -> web.Response:
        return web.Response(status=503)

    app = web.Application()
    app.add_routes([web.get("/amd", amd), web.get("/dcgm", dcgm), web.get("/broken", broken)])
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            samples = await read(session, Source((f"{base}/amd", f"{base}/dcgm"), 15.0))
            assert {s.vendor for s in samples} == {"amd", "nvidia"} and len(samples) == 6
            with pytest.raises(MetricsError, match="HTTP 503"):
                await read(session, Source((f"{base}/amd", f"{base}/broken"), 15.0))
            with pytest.raises(MetricsError):
                await read(session, Source(("http://127.0.0.1:1/metrics",), 15.0, timeout=2))
    finally:
        await asyncio.wait_for(runner.cleanup(), 10)
