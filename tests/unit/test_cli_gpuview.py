"""``kaiwo status``: GPU utilisation lines of a workload and per node."""

from __future__ import annotations

import datetime as dt

from kaiwo.cli.gpuview import node_annotations, node_lines, node_utilisation, workload_lines
from tests.builders import KaiwoJobBuilder, NodeBuilder, PodBuilder

FIGURE = "kaiwo.silogen.ai/gpu-utilization"
NOW = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)


def test_workload_lines() -> None:
    job = (
        KaiwoJobBuilder("j")
        .uid("u1")
        .condition(
            "ResourceUnderutilization",
            True,
            message="1 of 2 GPU(s) below 5% utilisation",
            lastTransitionTime="2026-01-01T11:50:00Z",
        )
        .obj()
    )
    record = {
        "metadata": {"name": "kaiwojob-j-u1"},
        "spec": {"workloadRef": {"uid": "u1"}},
        "status": {"phase": "Idle", "aggregatedUtilization": 2.5, "idleSince": "2026-01-01T11:57:00Z"},
    }
    lines = workload_lines(job, [record], NOW)
    assert lines[0] == "GPU use:     Idle, utilisation 2.5% (GpuWorkload kaiwojob-j-u1)"
    assert lines[1] == "Idle since:  2026-01-01T11:57:00Z (3m ago)"
    assert lines[2].startswith("GPU monitor: underutilised: 1 of 2 GPU(s) below 5%") and "(10m ago)" in lines[2]
    assert workload_lines({"metadata": {"uid": "x"}}, [record], NOW) == []


def test_node_utilisation() -> None:
    pods = [PodBuilder("a", "ns").on_node("n1").obj(), PodBuilder("b", "ns").on_node("n2").obj()]
    records = [
        {
            "metadata": {"namespace": "ns"},
            "spec": {"gpuResources": {"amd.com/gpu": 3}},
            "status": {
                "trackedPods": [
                    {"podName": "a", "gpuMetrics": [{"utilization": 10.0}, {"utilization": 20.0}]},
                    {"podName": "b", "gpuMetrics": [{"utilization": 3.0}]},
                ]
            },
        },
        {"metadata": {"namespace": "ns"}, "spec": {"gpuResources": {"nvidia.com/gpu": 1}}, "status": {}},
    ]
    util = node_utilisation(records, pods, "amd.com/gpu")
    assert util == {"n1": 15.0, "n2": 3.0}
    annotated = [
        NodeBuilder("n1").gpus(8).annotation(FIGURE, "40@2026-01-01T11:58:00Z").obj(),
        NodeBuilder("c").annotation(FIGURE, "0@2026-01-01T11:58:00Z").obj(),  # no GPUs
    ]
    monitored = node_annotations(annotated, "amd.com/gpu", NOW)
    assert monitored == {"n1": (40.0, "2m")}
    text = node_lines(monitored, util)
    assert "40%" in text and "2m ago (utilisation monitor)" in text and "3%" in text and "tracked pods" in text
    assert "15%" not in text  # the monitor's figure for n1 wins
    assert "unknown" in node_lines({}, {})
    assert node_utilisation(records, pods, "nvidia.com/gpu") == {}
