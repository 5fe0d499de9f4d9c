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
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner, Result

from kaiwo.cli.main import app
from kaiwo.controllers import queueconfig, workload
from kaiwo.devcluster.build import ensure_binaries
from kaiwo.runtime.client import Client
from kaiwo.runtime.manager import Manager, ManagerOptions
from tests.e2e.helpers import Cli, eventually

pytestmark = pytest.mark.e2e


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e" in str(item.path):
            item.add_marker(pytest.mark.e2e)


# The session's cluster and the per-test namespace (dev_cluster, kubeconfig, etcd_url, client, namespace,
# kaiwo_crds) live in tests/conftest.py, shared with tests/chaos.


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


# --- the kaiwo CLI ------------------------------------------------------------------------------------------------


@pytest.fixture
def user_config(tmp_path: Path) -> Path:
    """The CLI config file of the test user (KAIWOCONFIG)."""
    path = tmp_path / "kaiwoconfig.yaml"
    path.write_text("user: scientist@example.com\nclusterQueue: kaiwo\n")
    return path


@pytest.fixture
def cli(kubeconfig: str, user_config: Path, tmp_path: Path) -> Cli:
    """Runs one ``kaiwo`` command through typer's CliRunner in a worker thread (its own event loop), as the test
    user against the session's cluster."""
    env = {
        "KUBECONFIG": kubeconfig,
        "KAIWOCONFIG": str(user_config),
        "XDG_CONFIG_HOME": str(tmp_path / "xdg"),
        "NO_COLOR": "1",
    }

    async def invoke(*args: str, input: str | None = None, **extra_env: str) -> Result:
        runner = CliRunner()
        return await asyncio.to_thread(runner.invoke, app, list(args), input=input, env={**env, **extra_env})

    return invoke
