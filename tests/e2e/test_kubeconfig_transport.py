"""The client honours kubeconfig transport settings against the real apiserver: proxy-url (a local CONNECT proxy
sees the tunnel), tls-server-name, exec credential plugins and rotated token files (the cluster mints the
ServiceAccount tokens through the TokenRequest API and reports who it authenticated)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from kaiwo.runtime.client import Client
from tests.connect_proxy import ConnectProxy


def admin_parts(kubeconfig: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The admin kubeconfig's cluster and user entries (of its current context)."""
    doc = yaml.safe_load(Path(kubeconfig).read_text())
    context = next(c for c in doc["contexts"] if c["name"] == doc["current-context"])["context"]
    cluster = next(c for c in doc["clusters"] if c["name"] == context["cluster"])["cluster"]
    user = next(u for u in doc["users"] if u["name"] == context["user"])["user"]
    return cluster, user


def write_kubeconfig(path: Path, cluster: dict[str, Any], user: dict[str, Any]) -> str:
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": cluster}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x",
    }
    path.write_text(yaml.safe_dump(doc))
    return str(path)


async def whoami(client: Client) -> str:
    review = await client.request(
        "POST",
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        body={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
    )
    name: str = review["status"]["userInfo"]["username"]
    return name


async def service_account_token(client: Client, namespace: str, name: str) -> str:
    await client.create(
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": namespace}}
    )
    answer = await client.request(
        "POST",
        f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
        body={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 600}},
    )
    token: str = answer["status"]["token"]
    return token


async def test_requests_go_through_the_proxy_url_and_verify_tls_server_name(
    kubeconfig: str, client: Client, tmp_path: Path
) -> None:
    cluster, user = admin_parts(kubeconfig)
    apiserver = client.host.removeprefix("https://")
    async with ConnectProxy() as proxy:
        proxy_url = await proxy.start()
        # The apiserver certificate names kubernetes.default.svc; the URL names only 127.0.0.1.
        good = {**cluster, "proxy-url": proxy_url, "tls-server-name": "kubernetes.default.svc"}
        async with await Client.from_kubeconfig(write_kubeconfig(tmp_path / "good", good, user)) as proxied:
            assert await whoami(proxied) == "kaiwo-dev-admin"
            assert (await proxied.get("v1", "Namespace", "default"))["metadata"]["name"] == "default"
        assert proxy.targets and set(proxy.targets) == {apiserver}

        wrong = {**cluster, "proxy-url": proxy_url, "tls-server-name": "not-the-apiserver.example"}
        async with await Client.from_kubeconfig(write_kubeconfig(tmp_path / "wrong", wrong, user)) as refused:
            refused.max_attempts = 1
            with pytest.raises(aiohttp.ClientConnectorCertificateError, match=r"not-the-apiserver\.example"):
                await whoami(refused)


EXEC_PLUGIN = """
import json, os, sys
info = json.loads(os.environ["KUBERNETES_EXEC_INFO"])
with open(sys.argv[1], "a") as log:
    log.write(info["spec"]["cluster"]["server"] + "\\n")
status = {"token": os.environ["SA_TOKEN"], "expirationTimestamp": "2099-01-01T00:00:00Z"}
print(json.dumps({"apiVersion": info["apiVersion"], "kind": "ExecCredential", "status": status}))
"""


async def test_exec_plugin_token_is_accepted_and_cached(
    kubeconfig: str, client: Client, namespace: str, tmp_path: Path
) -> None:
    token = await service_account_token(client, namespace, "exec-user")
    (tmp_path / "plugin.py").write_text(EXEC_PLUGIN)
    cluster, _ = admin_parts(kubeconfig)
    user = {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1",
            "command": sys.executable,
            "args": [str(tmp_path / "plugin.py"), str(tmp_path / "runs.log")],
            "env": [{"name": "SA_TOKEN", "value": token}],
            "interactiveMode": "Never",
            "provideClusterInfo": True,
        }
    }
    async with await Client.from_kubeconfig(write_kubeconfig(tmp_path / "exec", cluster, user)) as c:
        assert await whoami(c) == f"system:serviceaccount:{namespace}:exec-user"
        assert await whoami(c) == f"system:serviceaccount:{namespace}:exec-user"
    assert (tmp_path / "runs.log").read_text().splitlines() == [client.host]  # one run, cached until 2099


async def test_rotated_token_file_is_used_by_the_next_request(
    kubeconfig: str, client: Client, namespace: str, tmp_path: Path
) -> None:
    first = await service_account_token(client, namespace, "first")
    second = await service_account_token(client, namespace, "second")
    token_file = tmp_path / "token"
    token_file.write_text(first)
    cluster, _ = admin_parts(kubeconfig)
    path = write_kubeconfig(tmp_path / "tokenfile", cluster, {"tokenFile": str(token_file)})
    async with await Client.from_kubeconfig(path) as c:
        assert await whoami(c) == f"system:serviceaccount:{namespace}:first"
        rotated = tmp_path / "token.new"
        rotated.write_text(second)
        rotated.replace(token_file)  # as the kubelet rotates projected tokens: an atomic rename
        assert await whoami(c) == f"system:serviceaccount:{namespace}:second"
