"""Fixtures shared by the e2e and chaos tests: one cluster per test session, one namespace per test.

By default the session starts the local control plane (kaiwo.devcluster) in a temporary state folder and
stops it at the end; the supervisor is attached to the pytest process, so even a killed test run leaves no
processes behind. ``KAIWO_E2E_STATE=/folder`` keeps (and reuses) a cluster in that folder.
``KAIWO_E2E_KUBECONFIG=/path`` runs the same tests against an existing cluster instead (see tests/e2e/conftest.py).
Only tests that ask for these fixtures start the cluster; unit tests never do.

Under pytest-xdist (scripts/test.sh runs two workers, each taking whole test files) every worker is a session of
its own with a cluster of its own: tests that change shared cluster state (the ClusterQueue `kaiwo`, the
KaiwoConfig, the GPU nodes) never meet a test of the other worker. With ``KAIWO_E2E_STATE`` each worker keeps its
cluster in a subfolder named after it (``gw0``, ``gw1``). An existing cluster (``KAIWO_E2E_KUBECONFIG``) is one
cluster, so such a run must be serial (``-n 0``).
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from kaiwo.api import crds
from kaiwo.devcluster.addons import DEFAULT_ADDONS
from kaiwo.devcluster.cluster import DevCluster
from kaiwo.runtime.client import Client
from kaiwo.runtime.objects import has_condition
from tests.e2e.helpers import eventually


@pytest.fixture(scope="session")
def dev_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevCluster | None]:
    """The local cluster this session started, or None when testing an existing cluster."""
    if os.environ.get("KAIWO_E2E_KUBECONFIG"):
        if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 1) > 1:
            pytest.fail("KAIWO_E2E_KUBECONFIG is one shared cluster: run its tests serially (-n 0)")
        yield None
        return
    given = os.environ.get("KAIWO_E2E_STATE")
    worker = os.environ.get("PYTEST_XDIST_WORKER")  # gw0, gw1, ... under pytest-xdist
    state = Path(given) / worker if given and worker else Path(given or tmp_path_factory.mktemp("devcluster"))
    cluster = DevCluster(state)
    st = cluster.status()
    reused = st.phase == "ready"  # a cluster already running in KAIWO_E2E_STATE is kept running, with its addons
    # Jaeger runs from the start, so the apiserver's trace exporter connects at once instead of redialling with
    # gRPC backoff when the tracing tests start it (the apiserver samples only traced requests: no cost otherwise).
    addons = st.data.get("addons") if reused else (*DEFAULT_ADDONS, "jaeger")
    cluster.up(attach=True, complete_after_ms=2000, timeout=1800, addons=addons)
    try:
        yield cluster
    finally:
        if not reused:
            cluster.down()


@pytest.fixture(scope="session")
def kubeconfig(dev_cluster: DevCluster | None) -> str:
    return str(dev_cluster.kubeconfig) if dev_cluster else os.environ["KAIWO_E2E_KUBECONFIG"]


@pytest.fixture(scope="session")
def etcd_url(dev_cluster: DevCluster | None) -> str:
    """The local cluster's etcd (tests that compact it need direct access)."""
    if dev_cluster is None:
        pytest.skip("needs direct etcd access: only the local control plane offers it")
    return f"http://127.0.0.1:{dev_cluster.status().data['ports']['etcd']}"


@pytest.fixture(scope="session")
async def client(kubeconfig: str) -> AsyncIterator[Client]:
    c = await Client.from_kubeconfig(kubeconfig)
    try:
        yield c
    finally:
        await c.close()


@pytest.fixture
async def namespace(client: Client, request: pytest.FixtureRequest) -> AsyncIterator[str]:
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].rstrip("-")
    name = f"e2e-{slug}-{secrets.token_hex(3)}"
    # kueue-managed=true: the local cluster's Kueue (like upstream Kaiwo's) manages only namespaces with this label.
    labels = {"kaiwo.dev/e2e": "true", "kueue-managed": "true"}
    await client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}})
    # Pods are refused until the namespace's default ServiceAccount exists.
    await eventually(
        lambda: client.get_or_none("v1", "ServiceAccount", "default", name),
        f"default ServiceAccount in {name}",
        timeout=30,
    )
    yield name
    await client.delete("v1", "Namespace", name)


@pytest.fixture(scope="session")
async def kaiwo_crds(client: Client) -> None:
    """Kaiwo's CRDs (generated from kaiwo.api), installed by server-side apply and Established."""
    for crd in crds.installable():
        await client.apply(crd, "kaiwo-e2e")

    async def established() -> bool:
        for info in crds.ALL:
            live = await client.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", info.name)
            if not has_condition(live, "Established"):
                return False
        return True

    await eventually(established, "Kaiwo CRDs Established", timeout=60)
    client.forget_discovery()
