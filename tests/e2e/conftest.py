"""E2E fixtures: one cluster per test session, one namespace per test.

By default the session starts the local control plane (kaiwo.devcluster) in a temporary state folder and
stops it at the end; the supervisor is attached to the pytest process, so even a killed test run leaves no
processes behind. ``KAIWO_E2E_KUBECONFIG=/path`` runs the same tests against an existing cluster instead
(kind, a real one, or a `kaiwo-dev up` cluster); such a cluster needs the fake GPU nodes of the default
topology for the node tests, and Kueue (managing namespaces labelled kueue-managed=true), KubeRay and
AppWrapper for the workload-stack tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kaiwo.api import crds
from kaiwo.controllers import queueconfig, workload
from kaiwo.devcluster.build import ensure_binaries
from kaiwo.devcluster.cluster import DevCluster
from kaiwo.runtime.client import Client
from kaiwo.runtime.manager import Manager, ManagerOptions
from kaiwo.runtime.objects import has_condition
from tests.e2e.helpers import eventually

pytestmark = pytest.mark.e2e


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e" in str(item.path):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def dev_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevCluster | None]:
    """The local cluster this session started, or None when testing an existing cluster."""
    if os.environ.get("KAIWO_E2E_KUBECONFIG"):
        yield None
        return
    state = Path(os.environ.get("KAIWO_E2E_STATE") or tmp_path_factory.mktemp("devcluster"))
    cluster = DevCluster(state)
    reused = cluster.status().phase == "ready"  # a cluster already running in KAIWO_E2E_STATE is kept running
    cluster.up(attach=True, complete_after_ms=2000, timeout=1800)
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


# --- the Helm chart ---------------------------------------------------------------------------------------------

CHART = Path(__file__).resolve().parents[2] / "charts" / "kaiwo"
RELEASE = "kaiwo"
RELEASE_NAMESPACE = "kaiwo-system"
RBAC_KINDS = ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")


def helm(*args: str) -> str:
    """Run the helm built from its Go module (cached like the cluster binaries); stdout, or fail with stderr."""
    binary = ensure_binaries(["helm"])["helm"]
    out = subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, f"helm {' '.join(args)} failed:\n{out.stderr}"
    return out.stdout


def render_chart(*args: str) -> list[dict[str, Any]]:
    """`helm template` of the chart as release `kaiwo` in `kaiwo-system`, as objects."""
    text = helm("template", RELEASE, str(CHART), "--namespace", RELEASE_NAMESPACE, *args)
    return [d for d in yaml.safe_load_all(text) if d]


async def service_account_kubeconfig(
    client: Client, admin_kubeconfig: str, namespace: str, name: str, path: Path
) -> str:
    """A kubeconfig that authenticates as ServiceAccount ``namespace/name`` with a token from the TokenRequest API
    (server and CA copied from the admin kubeconfig), as the in-cluster operator would."""
    token = await client.request(
        "POST",
        f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
        body={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 7200}},
    )
    _write_token_kubeconfig(
        admin_kubeconfig, f"system:serviceaccount:{namespace}:{name}", token["status"]["token"], path
    )
    return str(path)


def _write_token_kubeconfig(admin_kubeconfig: str, user: str, token: str, path: Path) -> None:
    admin = yaml.safe_load(Path(admin_kubeconfig).read_text())
    context = next(c for c in admin["contexts"] if c["name"] == admin["current-context"])["context"]
    cluster = next(c for c in admin["clusters"] if c["name"] == context["cluster"])
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [cluster],
                "users": [{"name": user, "user": {"token": token}}],
                "contexts": [{"name": user, "context": {"cluster": cluster["name"], "user": user}}],
                "current-context": user,
            }
        )
    )


@pytest.fixture(scope="session")
async def release_namespace(client: Client) -> str:
    """The chart's release namespace, enforcing the restricted Pod Security Standard the chart's pods meet."""
    await client.apply(
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": RELEASE_NAMESPACE, "labels": {"pod-security.kubernetes.io/enforce": "restricted"}},
        },
        "kaiwo-e2e",
    )
    return RELEASE_NAMESPACE


@pytest.fixture(scope="session")
async def operator_kubeconfig(
    client: Client, kubeconfig: str, release_namespace: str, tmp_path_factory: pytest.TempPathFactory
) -> str:
    """A kubeconfig of the chart's operator ServiceAccount, with exactly the chart's rendered RBAC applied: the
    controllers run with it, so a permission missing from the chart fails their tests with Forbidden."""
    objs = render_chart()
    for obj in objs:
        if obj["kind"] in RBAC_KINDS:
            await client.apply(obj, "kaiwo-e2e")
    manager = next(o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"].endswith("-manager"))
    sa = manager["spec"]["template"]["spec"]["serviceAccountName"]
    await eventually(
        lambda: client.get_or_none("v1", "ServiceAccount", sa, release_namespace), "the operator ServiceAccount"
    )
    return await service_account_kubeconfig(
        client, kubeconfig, release_namespace, sa, tmp_path_factory.mktemp("operator") / "kubeconfig"
    )


@contextlib.asynccontextmanager
async def running_operator(kubeconfig: str, *workload_kinds: str) -> AsyncIterator[Manager]:
    """The queue-config controller and the given workload controllers in a Manager running in this process."""
    async with await Client.from_kubeconfig(kubeconfig) as mgr_client:
        mgr = Manager(mgr_client, ManagerOptions(health_address="", metrics_address=""))
        await queueconfig.setup(mgr)
        for kind in workload_kinds:
            await workload.setup(mgr, kind)
        stop = asyncio.Event()
        task = asyncio.create_task(mgr.run(stop))
        try:
            yield mgr
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)


@pytest.fixture(scope="module")
async def operator(client: Client, operator_kubeconfig: str, kaiwo_crds: None) -> AsyncIterator[Manager]:
    """Kaiwo's controllers for one test module, as the chart's ServiceAccount (so missing RBAC fails tests); ready
    once the default ClusterQueue `kaiwo` exists."""
    async with running_operator(operator_kubeconfig, "KaiwoJob", "KaiwoService") as mgr:
        await eventually(
            lambda: client.get_or_none("kueue.x-k8s.io/v1beta1", "ClusterQueue", "kaiwo"),
            "the default ClusterQueue",
            timeout=60,
        )
        yield mgr
