"""kaiwo-dev's own promises: idempotent up, clean down (no orphans after a supervisor crash: test_devcluster_addons).

These start a second, private cluster, so they only run where the binaries are built here (not against an
external KAIWO_E2E_KUBECONFIG cluster).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kaiwo.devcluster.cluster import DevCluster
from kaiwo.devcluster.process import pid_alive

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("KAIWO_E2E_KUBECONFIG")), reason="needs the locally built control plane"
)


def _wait_dead(pids: list[int], timeout: float = 15) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = [p for p in pids if pid_alive(p)]
        if not alive:
            return []
        time.sleep(0.1)
    return [p for p in pids if pid_alive(p)]


def _component_pids(cluster: DevCluster) -> dict[str, int]:
    return {name: c["pid"] for name, c in cluster.status().data["components"].items()}


def test_cli_up_is_idempotent_status_shows_nodes_and_down_leaves_nothing(tmp_path: Path) -> None:
    """One cluster for the CLI's and the API's promises (each cluster start costs the suite ~15 s)."""
    env = {**os.environ, "KAIWO_DEV_STATE": str(tmp_path / "state")}
    cli = [sys.executable, "-m", "kaiwo.devcluster.cli"]
    cluster = DevCluster(tmp_path / "state")
    pids: dict[str, int] = {}
    supervisor = 0
    try:
        up = subprocess.run([*cli, "up"], env=env, capture_output=True, text=True, timeout=600)
        assert up.returncode == 0, up.stderr
        kubeconfig = tmp_path / "state" / "kubeconfig"
        assert up.stdout.strip() == f"export KUBECONFIG={kubeconfig}"
        st = subprocess.run([*cli, "status"], env=env, capture_output=True, text=True, timeout=60)
        assert st.returncode == 0, st.stderr
        assert "phase: ready" in st.stdout
        assert "amd-mi300x-3" in st.stdout and "nvidia-h100-1" in st.stdout and "8 amd.com/gpu" in st.stdout
        first = cluster.status()
        assert first.phase == "ready"
        supervisor = first.data["pid"]
        pids = _component_pids(cluster)
        assert set(pids) == {
            "etcd",
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
            "kwok",
            "kueue",
            "kuberay",
            "appwrapper",
            "gpu-exporter",  # the fake GPU metrics exporter (kaiwo/devcluster/gpuexporter.py)
        }
        assert cluster.up(progress=lambda _: None) == kubeconfig
        assert cluster.status().data["pid"] == supervisor  # reused, not restarted
        for name in pids:
            assert (cluster.layout.logs / f"{name}.log").stat().st_size > 0
    finally:
        down = subprocess.run([*cli, "down"], env=env, capture_output=True, text=True, timeout=120)
    assert "stopped" in down.stderr
    assert _wait_dead([supervisor, *pids.values()]) == []
    assert cluster.status().phase == "stopped"
    assert cluster.down() is False
