"""The Helm chart (charts/kaiwo) on the local cluster: lint, render, apply, its RBAC and its kaiwo-scheduler.

helm is built from its Go module like the cluster binaries. The operator's permissions are proven elsewhere too:
the controller tests run as the chart's ServiceAccount (fixture ``operator_kubeconfig``).
"""

from __future__ import annotations

import asyncio
import copy
import secrets
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from kaiwo.api.config import KaiwoConfigSpec
from kaiwo.devcluster.build import ensure_binaries
from kaiwo.devcluster.components import free_port
from kaiwo.runtime.client import ApiError, Client
from kaiwo.runtime.objects import Obj
from tests.e2e.conftest import CHART, helm, render_chart, service_account_kubeconfig
from tests.e2e.helpers import API, eventually, http_ok

ALL_OPTIONS = str(CHART / "ci" / "all-options-values.yaml")
LEASE = "83fc2279.silogen.ai"


def by_kind(objs: list[Obj], kind: str) -> list[Obj]:
    return [o for o in objs if o["kind"] == kind]


def deployment(objs: list[Obj], suffix: str) -> Obj:
    return next(o for o in by_kind(objs, "Deployment") if o["metadata"]["name"].endswith(suffix))


def kubectl(kubeconfig: str, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    binary = ensure_binaries(["kubectl"])["kubectl"]
    return subprocess.run(
        [str(binary), f"--kubeconfig={kubeconfig}", *args], input=stdin, capture_output=True, text=True, timeout=120
    )


def start(cmd: list[str], **kw: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(cmd, text=True, **kw)


def token_of(kubeconfig: str) -> str:
    token: str = yaml.safe_load(Path(kubeconfig).read_text())["users"][0]["user"]["token"]
    return token


def to_yaml(objs: list[Obj]) -> str:
    return yaml.safe_dump_all(objs, sort_keys=False)


@pytest.mark.parametrize("values", [[], ["-f", ALL_OPTIONS]], ids=["defaults", "all-options"])
def test_helm_lint_passes(values: list[str]) -> None:
    out = helm("lint", "--strict", str(CHART), *values)
    assert "0 chart(s) failed" in out


def test_template_defaults_and_all_options() -> None:
    default = render_chart()
    kinds = sorted({o["kind"] for o in default})
    assert kinds == [
        "ClusterRole",
        "ClusterRoleBinding",
        "ConfigMap",
        "Deployment",
        "Role",
        "RoleBinding",
        "Service",
        "ServiceAccount",
    ]
    manager = deployment(default, "-manager")["spec"]["template"]["spec"]
    container = manager["containers"][0]
    assert container["command"] == ["python", "-m", "kaiwo.manager"]
    assert "--leader-election-namespace=kaiwo-system" in container["args"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    # Download jobs run the operator's own image unless manager.downloaderImage names another (a mirror).
    assert f"--downloader-image={container['image']}" in container["args"]
    mirrored = deployment(render_chart("--set", "manager.downloaderImage=mirror.local/kaiwo:1"), "-manager")
    assert "--downloader-image=mirror.local/kaiwo:1" in mirrored["spec"]["template"]["spec"]["containers"][0]["args"]
    for pod in (manager, deployment(default, "-scheduler")["spec"]["template"]["spec"]):
        assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["seccompProfile"]
        ctx = pod["containers"][0]["securityContext"]
        assert ctx["readOnlyRootFilesystem"] and not ctx["allowPrivilegeEscalation"]
        assert ctx["capabilities"] == {"drop": ["ALL"]}

    full = render_chart("-f", ALL_OPTIONS)
    assert {"ServiceMonitor", "KaiwoConfig", "KaiwoQueueConfig"} <= {o["kind"] for o in full}
    monitor = by_kind(full, "ServiceMonitor")[0]
    service = by_kind(full, "Service")[0]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
    values = yaml.safe_load(Path(ALL_OPTIONS).read_text())
    config = by_kind(full, "KaiwoConfig")[0]
    assert config["metadata"]["name"] == "kaiwo" and config["spec"] == values["kaiwoConfig"]["spec"]
    KaiwoConfigSpec.model_validate(config["spec"])
    image = deployment(full, "-manager")["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == f"ghcr.io/silogen/kaiwo-operator@{values['image']['digest']}"


async def test_rendered_manifests_apply_dry_run_then_for_real(
    client: Client,
    kubeconfig: str,
    kaiwo_crds: None,
    release_namespace: str,
) -> None:
    """Server-side dry run of every option (strict field validation catches keys the CRDs do not have), then a
    real install of the defaults. The ServiceMonitor is left out: this cluster has no Prometheus Operator."""
    full = [o for o in render_chart("-f", ALL_OPTIONS) if o["kind"] != "ServiceMonitor"]
    # --force-conflicts: other tests' controllers may own fields of the singletons; a dry run changes nothing anyway
    dry = kubectl(
        kubeconfig,
        "apply",
        "--server-side",
        "--field-manager=helm-e2e",
        "--dry-run=server",
        "--force-conflicts",
        "--validate=strict",
        "-f",
        "-",
        stdin=to_yaml(full),
    )
    assert dry.returncode == 0, dry.stderr
    bad = copy.deepcopy(by_kind(full, "KaiwoConfig")[0])
    bad["spec"]["scheduling"]["enablePreemption"] = True  # upstream's chart emitted this key; the CRD has none
    rejected = kubectl(
        kubeconfig,
        "apply",
        "--server-side",
        "--dry-run=server",
        "--force-conflicts",
        "--validate=strict",
        "-f",
        "-",
        stdin=to_yaml([bad]),
    )
    assert rejected.returncode != 0 and "enablePreemption" in rejected.stderr

    default = render_chart()
    real = kubectl(kubeconfig, "apply", "--server-side", "--field-manager=helm-e2e", "-f", "-", stdin=to_yaml(default))
    assert real.returncode == 0, real.stderr
    for d in by_kind(default, "Deployment"):
        assert await client.get("apps/v1", "Deployment", d["metadata"]["name"], release_namespace)


async def test_chart_pods_meet_the_restricted_pod_security_standard(client: Client, release_namespace: str) -> None:
    """The release namespace enforces `restricted`; the chart's pod templates are admitted, a weakened one is not."""
    for d in by_kind(render_chart(), "Deployment"):
        template = d["spec"]["template"]
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "generateName": "pss-",
                "namespace": release_namespace,
                "labels": template["metadata"]["labels"],
            },
            "spec": template["spec"],
        }
        await client.create(pod, dryRun="All")
        weak = copy.deepcopy(pod)
        del weak["spec"]["containers"][0]["securityContext"]["capabilities"]
        with pytest.raises(ApiError) as e:
            await client.create(weak, dryRun="All")
        assert e.value.status == 403 and "capabilities" in e.value.message


async def test_operator_token_is_not_admin(operator_kubeconfig: str, namespace: str) -> None:
    async with await Client.from_kubeconfig(operator_kubeconfig) as op:
        assert isinstance(await op.list(API, "KaiwoJob", namespace), list)  # granted: the controllers watch it
        refused = [
            op.list("v1", "Secret", "kube-system"),
            op.create(
                {
                    "apiVersion": API,
                    "kind": "KaiwoJob",
                    "metadata": {"name": "x", "namespace": namespace},
                    "spec": {"image": "busybox", "entrypoint": "true"},
                }
            ),  # the spec is the user's
            op.create(
                {
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "ClusterRole",
                    "metadata": {"name": f"escalate-{secrets.token_hex(3)}"},
                    "rules": [],
                }
            ),
            op.get_or_none("coordination.k8s.io/v1", "Lease", "kube-scheduler", "kube-system"),
            op.delete("v1", "Namespace", namespace),
        ]
        for call in refused:
            with pytest.raises(ApiError) as e:
                await call
            assert e.value.status == 403, e.value


async def test_manager_process_runs_as_the_chart_service_account(
    client: Client,
    operator_kubeconfig: str,
    kaiwo_crds: None,
    release_namespace: str,
    tmp_path: Path,
) -> None:
    """`python -m kaiwo.manager` with the chart's ServiceAccount: caches sync (every watch allowed), it leads
    through the chart's leader-election Role, a standby watches the Lease (the Role allows it) and takes over when
    the leader stops, and both stop cleanly."""
    logs: dict[subprocess.Popen[str], Path] = {}

    def manager(health: int) -> subprocess.Popen[str]:
        log = tmp_path / f"manager-{len(logs)}.log"  # a file, not a pipe: a full pipe would block the manager
        args = [sys.executable, "-m", "kaiwo.manager", f"--kubeconfig={operator_kubeconfig}"]
        args += [f"--leader-election-namespace={release_namespace}", "--metrics-bind-address=0"]
        with log.open("w") as err:  # the child keeps its own copy of the descriptor
            proc = start(
                [*args, f"--health-probe-bind-address=127.0.0.1:{health}"], stdout=subprocess.DEVNULL, stderr=err
            )
        logs[proc] = log
        return proc

    async def ready(health: int, what: str) -> None:
        await eventually(lambda: http_ok(f"http://127.0.0.1:{health}/readyz"), f"/readyz 200 ({what})", timeout=60)

    async def holder() -> str | None:
        lease = await client.get_or_none("coordination.k8s.io/v1", "Lease", LEASE, release_namespace)
        return ((lease or {}).get("spec") or {}).get("holderIdentity") or None

    async def stop(proc: subprocess.Popen[str]) -> None:
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.get_running_loop().run_in_executor(None, proc.wait, 30)
        assert code == 0, logs[proc].read_text()

    try:
        leader = manager(health := free_port())
        await ready(health, "leader")
        first = await eventually(holder, "the manager holding its Lease (the chart's leader-election Role)", timeout=60)
        # A standby is ready once its caches are synced and it waits for the Lease, its release watch open.
        standby = manager(health := free_port())
        await ready(health, "standby")
        await asyncio.sleep(1)  # time for the standby's watch request to be answered (or refused: logged)
        assert await holder() == first
        await stop(leader)

        async def taken_over() -> str | None:
            now = await holder()
            return now if now and now != first else None

        await eventually(taken_over, "the standby holding the Lease", timeout=30)
        await stop(standby)
    finally:
        for proc in logs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    errors = "".join(log.read_text() for log in logs.values())
    # An RBAC denial reads 'is forbidden: User "system:serviceaccount:..." cannot ...' (other 403s, such as an
    # event refused by a namespace being deleted by an earlier test, are not about the chart's permissions)
    assert "is forbidden: User" not in errors
    assert "cannot watch the lease" not in errors


async def test_chart_scheduler_packs_gpu_pods_onto_the_fewest_nodes(
    client: Client,
    kubeconfig: str,
    operator_kubeconfig: str,
    release_namespace: str,
    namespace: str,
    tmp_path: Path,
) -> None:
    """kube-scheduler run with the KubeSchedulerConfiguration from `helm template`, as the chart's scheduler
    ServiceAccount (its RBAC applied by ``operator_kubeconfig``). Its profile is renamed, so it never competes
    with the local cluster's own `kaiwo-scheduler` profile for the same pods."""
    objs = render_chart()
    config_map = next(o for o in by_kind(objs, "ConfigMap") if o["metadata"]["name"].endswith("-scheduler"))
    config = yaml.safe_load(config_map["data"]["config.yaml"])
    name = f"kaiwo-scheduler-chart-{secrets.token_hex(3)}"
    [profile] = config["profiles"]
    assert profile["schedulerName"] == "kaiwo-scheduler"
    profile["schedulerName"] = name
    sa = deployment(objs, "-scheduler")["spec"]["template"]["spec"]["serviceAccountName"]
    sa_kubeconfig = await service_account_kubeconfig(
        client, kubeconfig, release_namespace, sa, tmp_path / "scheduler-kubeconfig"
    )
    config["clientConnection"] = {"kubeconfig": sa_kubeconfig}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    binary = ensure_binaries(["kube-scheduler"])["kube-scheduler"]
    log = (tmp_path / "scheduler.log").open("w")
    proc = start(
        [
            str(binary),
            f"--config={tmp_path / 'config.yaml'}",
            f"--authentication-kubeconfig={sa_kubeconfig}",
            f"--authorization-kubeconfig={sa_kubeconfig}",
            "--bind-address=127.0.0.1",
            f"--secure-port={free_port()}",
            f"--cert-dir={tmp_path / 'certs'}",
            "--v=1",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:

        async def holder() -> str | None:
            lease = await client.get_or_none("coordination.k8s.io/v1", "Lease", "kaiwo-scheduler", release_namespace)
            return ((lease or {}).get("spec") or {}).get("holderIdentity") or None

        await eventually(holder, "the scheduler holding its Lease (its leader-election Role)", timeout=60)
        nodes = set()
        for i in range(3):
            pod = f"gpu-{i}"
            gpu = {"cpu": "1", "nvidia.com/gpu": "1"}
            await client.create(
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {"name": pod, "namespace": namespace},
                    "spec": {
                        "schedulerName": name,
                        "containers": [
                            {
                                "name": "main",
                                "image": "busybox:1.36",
                                "command": ["sleep", "3600"],
                                "resources": {"requests": gpu, "limits": gpu},
                            }
                        ],
                    },
                }
            )

            async def node(pod: str = pod) -> str | None:
                p = await client.get("v1", "Pod", pod, namespace)
                node_name: str | None = p["spec"].get("nodeName")
                return node_name

            nodes.add(await eventually(node, f"pod {pod} scheduled by {name}", timeout=60))
        assert len(nodes) == 1 and next(iter(nodes)).startswith("nvidia-"), nodes
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
    assert "forbidden" not in (tmp_path / "scheduler.log").read_text().lower()


async def test_secure_metrics_answer_only_tokens_allowed_to_read_them(
    client: Client,
    kubeconfig: str,
    operator_kubeconfig: str,
    release_namespace: str,
    tmp_path: Path,
) -> None:
    """`--metrics-secure` as the chart renders it: HTTPS; no token 401, the operator's own token (no /metrics
    grant) 403, a scraper bound to the chart's metrics-reader ClusterRole 200 with the metrics."""
    reader = next(
        o
        for o in render_chart("--set", "metrics.secure=true")
        if o["kind"] == "ClusterRole" and o["metadata"]["name"].endswith("-metrics-reader")
    )
    await client.apply(reader, "kaiwo-e2e")
    scraper = f"scraper-{secrets.token_hex(3)}"
    await client.create(
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": scraper, "namespace": release_namespace}}
    )
    await client.apply(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": scraper},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": reader["metadata"]["name"],
            },
            "subjects": [{"kind": "ServiceAccount", "name": scraper, "namespace": release_namespace}],
        },
        "kaiwo-e2e",
    )
    scraper_token = token_of(
        await service_account_kubeconfig(client, kubeconfig, release_namespace, scraper, tmp_path / "scraper")
    )
    operator_token = token_of(operator_kubeconfig)

    port, health = free_port(), free_port()
    proc = start(
        [
            sys.executable,
            "-m",
            "kaiwo.manager",
            f"--kubeconfig={operator_kubeconfig}",
            "--no-leader-elect",
            f"--health-probe-bind-address=127.0.0.1:{health}",
            f"--metrics-bind-address=127.0.0.1:{port}",
            "--metrics-secure",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"https://127.0.0.1:{port}/metrics"

    async def scrape(token: str | None) -> tuple[int, str] | None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            async with aiohttp.ClientSession() as http, http.get(url, headers=headers, ssl=False) as r:
                return r.status, await r.text()
        except aiohttp.ClientError:
            return None

    try:
        status, text = await eventually(lambda: scrape(None), "the secure metrics server", timeout=60)
        assert status == 401, text
        status, text = await scrape(operator_token) or (0, "")
        assert status == 403 and "may not get /metrics" in text, text
        status, text = await scrape(scraper_token) or (0, "")
        assert status == 200 and "controller_runtime_reconcile_total" in text, text
        with pytest.raises(aiohttp.ClientError):  # plain HTTP is not served
            async with aiohttp.ClientSession() as http, http.get(url.replace("https", "http")) as r:
                await r.read()
    finally:
        proc.terminate()
        await asyncio.get_running_loop().run_in_executor(None, proc.wait, 30)
        await client.delete("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", scraper)
        await client.delete("v1", "ServiceAccount", scraper, release_namespace)
