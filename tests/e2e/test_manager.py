"""``python -m kaiwo.manager`` as a process: config line, health, the default KaiwoConfig, graceful stop."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from typing import Any

import aiohttp
import orjson

from kaiwo.devcluster.components import free_port
from kaiwo.runtime.client import Client
from tests.e2e.helpers import eventually, http_ok


def start_manager(kubeconfig: str, namespace: str, health: int, metrics: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kaiwo.manager",
            f"--kubeconfig={kubeconfig}",
            "--leader-election-namespace",
            namespace,
            f"--health-probe-bind-address=127.0.0.1:{health}",
            f"--metrics-bind-address=127.0.0.1:{metrics}",
            "--log-format=json",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


async def test_manager_runs_reports_and_stops_gracefully(
    client: Client, kubeconfig: str, kaiwo_crds: None, namespace: str
) -> None:
    health, metrics = free_port(), free_port()
    proc = start_manager(kubeconfig, namespace, health, metrics)
    try:
        assert proc.stderr is not None
        first: dict[str, Any] = orjson.loads(proc.stderr.readline())
        assert first["msg"] == "starting kaiwo operator"
        assert first["config"]["leader_election_namespace"] == namespace and first["config"]["leader_elect"]

        await eventually(lambda: http_ok(f"http://127.0.0.1:{health}/readyz"), "/readyz 200", timeout=60)
        assert await client.get_or_none("config.kaiwo.silogen.ai/v1alpha1", "KaiwoConfig", "kaiwo") is not None
        lease = await eventually(
            lambda: client.get_or_none("coordination.k8s.io/v1", "Lease", "83fc2279.silogen.ai", namespace),
            "the leader Lease",
        )
        assert lease["spec"]["holderIdentity"]

        async def leader_metric() -> bool:  # set once acquiring returns, a moment after the Lease is written
            async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{metrics}/metrics") as r:
                return 'leader_election_master_status{name="83fc2279.silogen.ai"} 1.0' in await r.text()

        await eventually(leader_metric, "leader_election_master_status 1", timeout=30)

        # kaiwo_* metrics come from the controllers' caches: a new KaiwoJob with 3 GPUs shows up in them
        await client.create(
            {
                "apiVersion": "kaiwo.silogen.ai/v1alpha1",
                "kind": "KaiwoJob",
                "metadata": {"name": "counted", "namespace": namespace},
                "spec": {"image": "busybox:1.36", "entrypoint": "sleep 1", "gpus": 3},
            }
        )

        async def counted() -> bool:
            async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{metrics}/metrics") as r:
                series = [line.split() for line in (await r.text()).splitlines() if line.startswith("kaiwo_")]
            values = {name: float(v) for name, v in series}
            jobs = sum(v for k, v in values.items() if k.startswith('kaiwo_workloads{kind="KaiwoJob"'))
            gpus = sum(v for k, v in values.items() if k.startswith('kaiwo_workload_gpus{kind="KaiwoJob"'))
            return jobs >= 1 and gpus >= 3 and "kaiwo_queueconfig_ready" in values

        await eventually(counted, "the KaiwoJob in the kaiwo_* metrics", timeout=30)
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.get_running_loop().run_in_executor(None, proc.wait, 30)
        assert code == 0
        released = await client.get("coordination.k8s.io/v1", "Lease", "83fc2279.silogen.ai", namespace)
        assert not released["spec"].get("holderIdentity"), "the Lease is released on SIGTERM"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_bad_flags_exit_with_a_clear_message() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "kaiwo.manager", "--renew-deadline", "20"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 2
    assert "lease duration must be greater than the renew deadline" in out.stderr


def test_a_missing_leader_election_namespace_stops_the_start_up_saying_what_to_pass(kubeconfig: str) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "kaiwo.manager",
            "--kubeconfig",
            kubeconfig,
            "--leader-election-namespace",
            "no-such-namespace-for-the-lease",
            "--health-probe-bind-address",
            "0",
            "--metrics-bind-address",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2, out.stderr[-2000:]
    assert "'no-such-namespace-for-the-lease' does not exist" in out.stderr
    assert "--leader-election-namespace" in out.stderr and "--no-leader-elect" in out.stderr
