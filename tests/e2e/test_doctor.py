"""``kaiwo doctor`` on the local cluster: healthy first, then one thing broken at a time (and repaired).

The operator (queue-config controller with leader election, as the chart's ServiceAccount) runs in this
process and holds the real leader Lease in the release namespace; the local Kueue publishes its configuration
in kueue-system/kueue-manager-config as Kueue's own install does.
"""

from __future__ import annotations

import asyncio
import copy
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass

import orjson
import pytest
from typer.testing import CliRunner

from kaiwo.api import crds
from kaiwo.cli import kueueinfo
from kaiwo.cli.doctor import LEASE_NAME
from kaiwo.cli.main import app
from kaiwo.controllers import queueconfig
from kaiwo.runtime.client import Client
from kaiwo.runtime.leader import LeaderElectionConfig
from kaiwo.runtime.manager import Manager, ManagerOptions
from kaiwo.runtime.objects import Obj
from tests.e2e.helpers import API, eventually, replace_spec


@dataclass
class Operator:
    manager: Manager
    stop: asyncio.Event
    task: asyncio.Task[int]

    async def halt(self) -> None:
        if not self.stop.is_set():
            self.stop.set()
            await asyncio.wait_for(self.task, 30)


@pytest.fixture(scope="module")
async def leader(
    client: Client, operator_kubeconfig: str, release_namespace: str, kaiwo_crds: None
) -> AsyncIterator[Operator]:
    async with await Client.from_kubeconfig(operator_kubeconfig) as mgr_client:
        election = LeaderElectionConfig(release_namespace, LEASE_NAME, "doctor-e2e", 6.0, 4.0, 1.0)
        mgr = Manager(mgr_client, ManagerOptions(health_address="", metrics_address="", leader_election=election))
        await queueconfig.setup(mgr)
        stop = asyncio.Event()
        op = Operator(mgr, stop, asyncio.create_task(mgr.run(stop)))

        async def leading() -> bool:  # an earlier test's operator may have left the config READY and no leader
            return mgr.elector is not None and mgr.elector.is_leader and mgr.ready

        await eventually(leading, "the doctor's operator leading, its controllers started", timeout=60)
        await eventually(lambda: ready_config(client), "KaiwoQueueConfig READY", timeout=60)
        try:
            yield op
        finally:
            await op.halt()


async def ready_config(client: Client) -> Obj | None:
    cfg = await client.get_or_none(API, "KaiwoQueueConfig", "kaiwo")
    return cfg if cfg and (cfg.get("status") or {}).get("status") == "READY" else None


async def doctor(kubeconfig: str, release_namespace: str) -> tuple[int, list[Obj]]:
    args = ["doctor", "--operator-namespace", release_namespace, "-o", "json"]
    result = await asyncio.to_thread(CliRunner().invoke, app, args, env={"KUBECONFIG": kubeconfig, "NO_COLOR": "1"})
    assert result.exit_code in (0, 1), result.stdout + result.stderr
    return result.exit_code, orjson.loads(result.stdout)


def failures(checks: list[Obj]) -> dict[str, Obj]:
    return {c["area"]: c for c in checks if c["status"] == "fail"}


async def test_doctor_finds_one_broken_thing_at_a_time(
    client: Client, kubeconfig: str, release_namespace: str, leader: Operator
) -> None:
    code, checks = await doctor(kubeconfig, release_namespace)
    assert code == 0 and not failures(checks), checks
    ok = {c["area"] for c in checks if c["status"] == "ok"}
    assert {"crds", "dependencies", "kueue-config", "namespaces", "operator", "queues", "nodes"} <= ok, checks
    lease = next(c for c in checks if c["area"] == "operator" and c["status"] == "ok")
    assert lease["message"].startswith("leader doctor-e2e")
    assert any(c["message"].startswith("Kueue installed: APIs ") and "v1beta" in c["message"] for c in checks), checks

    # 1. A namespace Kueue does not manage holds a KaiwoJob.
    ns = f"e2e-doctor-{secrets.token_hex(3)}"
    await client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    job = {
        "apiVersion": API,
        "kind": "KaiwoJob",
        "metadata": {"name": "j", "namespace": ns},
        "spec": {"image": "busybox"},
    }
    await client.create(job)
    code, checks = await doctor(kubeconfig, release_namespace)
    assert code == 1 and set(failures(checks)) == {"namespaces"}, checks
    assert ns in failures(checks)["namespaces"]["message"]
    assert f"kubectl label namespace {ns} kueue-managed=true" in failures(checks)["namespaces"]["fix"]
    await client.delete("v1", "Namespace", ns)

    # 2. An outdated CRD (its schema differs from this Kaiwo's).
    crd = next(c for c in crds.installable() if c["metadata"]["name"].startswith("kaiwoqueueconfigs."))
    old = copy.deepcopy(crd)
    old["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["description"] = "an older Kaiwo"
    await client.apply(old, "kaiwo-e2e", force=True)
    try:
        code, checks = await doctor(kubeconfig, release_namespace)
        assert set(failures(checks)) == {"crds", "namespaces"} or set(failures(checks)) == {"crds"}, checks
        assert "kaiwoqueueconfigs.kaiwo.silogen.ai differs" in failures(checks)["crds"]["message"]
        assert "kubectl apply --server-side -f charts/kaiwo/crds/" in failures(checks)["crds"]["fix"]
    finally:
        await client.apply(crd, "kaiwo-e2e", force=True)

    # 3. Kueue's pod integration switched off (Deployments' pods would never be queued).
    cm = await client.get("v1", "ConfigMap", kueueinfo.CONFIG_MAP, kueueinfo.NAMESPACE)
    text = cm["data"][kueueinfo.CONFIG_KEY]
    await client.patch(
        "v1",
        "ConfigMap",
        kueueinfo.CONFIG_MAP,
        {"data": {kueueinfo.CONFIG_KEY: "\n".join(x for x in text.splitlines() if x.strip() != "- pod")}},
        kueueinfo.NAMESPACE,
    )
    try:
        code, checks = await doctor(kubeconfig, release_namespace)
        kueue = failures(checks)["kueue-config"]
        assert "lack pod" in kueue["message"] and "integrations.frameworks" in kueue["fix"], checks
    finally:
        await client.patch(
            "v1", "ConfigMap", kueueinfo.CONFIG_MAP, {"data": {kueueinfo.CONFIG_KEY: text}}, kueueinfo.NAMESPACE
        )

    # 4. The default queue config FAILED (a ClusterQueue names a namespace that does not exist).
    cfg = copy.deepcopy(await eventually(lambda: ready_config(client), "READY"))
    cfg["spec"]["clusterQueues"].append({"name": "doctor-team", "namespaces": ["no-such-namespace"], "spec": {}})
    await replace_spec(client, API, "KaiwoQueueConfig", "kaiwo", cfg["spec"])

    async def queues_failing() -> Obj | None:
        _, checks = await doctor(kubeconfig, release_namespace)
        return failures(checks).get("queues")

    q = await eventually(queues_failing, "doctor sees the FAILED queue config", timeout=30)
    assert "no-such-namespace" in q["message"] and "kaiwo status queues" in q["fix"]
    latest = await client.get(API, "KaiwoQueueConfig", "kaiwo")
    latest["spec"]["clusterQueues"] = [c for c in latest["spec"]["clusterQueues"] if c["name"] != "doctor-team"]
    await replace_spec(client, API, "KaiwoQueueConfig", "kaiwo", latest["spec"])
    await eventually(lambda: ready_config(client), "READY again", timeout=30)


async def test_doctor_sees_the_operator_gone(kubeconfig: str, release_namespace: str, leader: Operator) -> None:
    """Last in this module: stops the operator, which releases the Lease."""
    await leader.halt()
    code, checks = await doctor(kubeconfig, release_namespace)
    op = failures(checks)["operator"]
    assert code == 1 and "no live holder" in op["message"] and "logs" in op["fix"], checks
