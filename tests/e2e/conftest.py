"""E2E fixtures: one cluster per test session, one namespace per test.

By default the session starts the local control plane (kaiwo.devcluster) in a temporary state folder and
stops it at the end; the supervisor is attached to the pytest process, so even a killed test run leaves no
processes behind. ``KAIWO_E2E_KUBECONFIG=/path`` runs the same tests against an existing cluster instead
(kind, a real one, or a `kaiwo-dev up` cluster); such a cluster needs the fake GPU nodes of the default
topology for the node tests.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from kaiwo.devcluster.cluster import DevCluster
from kaiwo.runtime.client import Client
from tests.e2e.helpers import eventually

pytestmark = pytest.mark.e2e


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e" in str(item.path):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def kubeconfig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    existing = os.environ.get("KAIWO_E2E_KUBECONFIG")
    if existing:
        yield existing
        return
    state = Path(os.environ.get("KAIWO_E2E_STATE") or tmp_path_factory.mktemp("devcluster"))
    cluster = DevCluster(state)
    path = cluster.up(attach=True, complete_after_ms=2000, timeout=1800)
    try:
        yield str(path)
    finally:
        cluster.down()


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
    await client.create({"apiVersion": "v1", "kind": "Namespace",
                         "metadata": {"name": name, "labels": {"kaiwo.dev/e2e": "true"}}})
    # Pods are refused until the namespace's default ServiceAccount exists.
    await eventually(lambda: client.get_or_none("v1", "ServiceAccount", "default", name),
                     f"default ServiceAccount in {name}", timeout=30)
    yield name
    await client.delete("v1", "Namespace", name)
