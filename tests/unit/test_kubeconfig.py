"""Kubeconfig -> transport: parsing and precedence rules, and the transport against a real local TLS server."""

from __future__ import annotations

import base64
import os
import ssl
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import yaml
from aiohttp import web

from kaiwo import manager
from kaiwo.devcluster.pki import PKI
from kaiwo.runtime.client import Client
from kaiwo.runtime.kubeconfig import (
    CONNECTION_LIMIT,
    ExecPlugin,
    KubeconfigError,
    NoCredentials,
    StaticToken,
    TokenFile,
    Transport,
    choose_proxy,
    in_cluster,
    load_kubeconfig,
)
from tests.connect_proxy import ConnectProxy


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def kubeconfig(
    cluster: dict[str, Any], user: dict[str, Any] | None = None, *, name: str = "dev", current: str | None = "dev"
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": cluster}],
        "users": [{"name": name, "user": user or {}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
    }
    if current:
        doc["current-context"] = current
    return doc


def write(path: Path, doc: dict[str, Any]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc))
    return str(path)


HTTP = {"server": "http://127.0.0.1:1"}


# --- files, contexts, merging ---------------------------------------------------------------------------------


def test_first_file_wins_for_names_and_current_context(tmp_path: Path) -> None:
    a = write(tmp_path / "a", kubeconfig({"server": "http://127.0.0.1:1/"}, {"token": "a"}, current="dev"))
    b = write(tmp_path / "b", kubeconfig({"server": "http://127.0.0.1:2"}, {"token": "b"}, current="other"))
    t = load_kubeconfig(os.pathsep.join([a, b]))
    assert t.server == "http://127.0.0.1:1"  # trailing slash dropped, first definition of "dev" kept
    assert t.credentials == StaticToken("a")


def test_missing_files_in_the_list_are_skipped_and_no_file_is_an_error(tmp_path: Path) -> None:
    a = write(tmp_path / "a", kubeconfig(HTTP))
    assert load_kubeconfig(os.pathsep.join([str(tmp_path / "missing"), a])).server == "http://127.0.0.1:1"
    with pytest.raises(KubeconfigError, match="no kubeconfig file"):
        load_kubeconfig(str(tmp_path / "missing"))


def test_context_errors_name_the_missing_part(tmp_path: Path) -> None:
    path = write(tmp_path / "c", kubeconfig(HTTP, current=None))
    with pytest.raises(KubeconfigError, match="no current-context"):
        load_kubeconfig(path)
    with pytest.raises(KubeconfigError, match="no context 'nope'"):
        load_kubeconfig(path, "nope")
    doc = kubeconfig(HTTP)
    doc["contexts"][0]["context"]["user"] = "ghost"
    with pytest.raises(KubeconfigError, match="user 'ghost'"):
        load_kubeconfig(write(tmp_path / "d", doc))


def test_server_path_prefix_is_kept_and_other_schemes_are_rejected(tmp_path: Path) -> None:
    t = load_kubeconfig(write(tmp_path / "a", kubeconfig({"server": "http://127.0.0.1:1/k8s/clusters/c-1/"})))
    assert t.server == "http://127.0.0.1:1/k8s/clusters/c-1"
    with pytest.raises(KubeconfigError, match="must start with https:// or http://"):
        load_kubeconfig(write(tmp_path / "b", kubeconfig({"server": "ftp://x"})))


def test_auth_provider_is_rejected_not_ignored(tmp_path: Path) -> None:
    path = write(tmp_path / "a", kubeconfig(HTTP, {"auth-provider": {"name": "oidc", "config": {}}}))
    with pytest.raises(KubeconfigError, match="auth-provider 'oidc' is not supported"):
        load_kubeconfig(path)


def test_impersonation_and_disable_compression_become_fixed_headers(tmp_path: Path) -> None:
    user = {"as": "jane", "as-uid": "42", "as-groups": ["a", "b"], "as-user-extra": {"scopes": ["x", "y"]}}
    t = load_kubeconfig(write(tmp_path / "a", kubeconfig({**HTTP, "disable-compression": True}, user)))
    assert t.fixed_headers == (
        ("Impersonate-User", "jane"),
        ("Impersonate-Uid", "42"),
        ("Impersonate-Group", "a"),
        ("Impersonate-Group", "b"),
        ("Impersonate-Extra-scopes", "x"),
        ("Impersonate-Extra-scopes", "y"),
        ("Accept-Encoding", "identity"),
    )


# --- credentials ----------------------------------------------------------------------------------------------


async def test_basic_auth_and_no_credentials(tmp_path: Path) -> None:
    t = load_kubeconfig(write(tmp_path / "a", kubeconfig(HTTP, {"username": "u", "password": "p"})))
    assert await t.auth_headers() == {"Authorization": "Basic " + b64(b"u:p")}
    assert isinstance(load_kubeconfig(write(tmp_path / "b", kubeconfig(HTTP))).credentials, NoCredentials)


async def test_token_file_wins_is_relative_to_its_kubeconfig_and_is_reread_on_rotation(tmp_path: Path) -> None:
    (tmp_path / "cfg" / "secrets").mkdir(parents=True)
    token = tmp_path / "cfg" / "secrets" / "token"
    token.write_text("first\n")
    t = load_kubeconfig(
        write(tmp_path / "cfg" / "config", kubeconfig(HTTP, {"tokenFile": "secrets/token", "token": "t"}))
    )
    assert await t.auth_headers() == {"Authorization": "Bearer first"}
    token.write_text("second-longer\n")
    assert await t.auth_headers() == {"Authorization": "Bearer second-longer"}
    token.unlink()  # while the file is gone the last token read stays in use
    assert await t.auth_headers() == {"Authorization": "Bearer second-longer"}


async def test_token_file_falls_back_to_token_until_the_file_exists(tmp_path: Path) -> None:
    creds = TokenFile(tmp_path / "token", fallback="static")
    assert await creds.headers() == {"Authorization": "Bearer static"}
    (tmp_path / "token").write_text("from-file")
    assert await creds.headers() == {"Authorization": "Bearer from-file"}


@dataclass
class Clock:
    t: datetime

    def __call__(self) -> datetime:
        return self.t


PLUGIN = """
import json, os, sys
info = json.loads(os.environ["KUBERNETES_EXEC_INFO"])
with open(sys.argv[1], "a") as log:
    log.write(json.dumps({"info": info, "greeting": os.environ.get("GREETING")}) + "\\n")
runs = sum(1 for _ in open(sys.argv[1]))
status = {"token": f"token-{runs}"}
if len(sys.argv) > 2:
    status["expirationTimestamp"] = sys.argv[2]
print(json.dumps({"apiVersion": info["apiVersion"], "kind": "ExecCredential", "status": status}))
"""


def exec_user(tmp_path: Path, *args: str, api: str = "client.authentication.k8s.io/v1", **extra: Any) -> dict[str, Any]:
    script = tmp_path / "plugin.py"
    script.write_text(PLUGIN)
    spec = {
        "apiVersion": api,
        "command": sys.executable,
        "args": [str(script), str(tmp_path / "runs.log"), *args],
        "env": [{"name": "GREETING", "value": "hi"}],
        "interactiveMode": "Never",
        **extra,
    }
    return {"exec": spec}


def runs(tmp_path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in (tmp_path / "runs.log").read_text().splitlines()]


async def test_exec_plugin_is_cached_until_its_expiration(tmp_path: Path) -> None:
    expiry = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
    t = load_kubeconfig(
        write(tmp_path / "a", kubeconfig(HTTP, exec_user(tmp_path, expiry.isoformat().replace("+00:00", "Z"))))
    )
    plugin = t.credentials
    assert isinstance(plugin, ExecPlugin)
    clock = Clock(expiry - timedelta(minutes=5))
    plugin.now = clock
    assert await t.auth_headers() == {"Authorization": "Bearer token-1"}
    assert await t.auth_headers() == {"Authorization": "Bearer token-1"}
    assert plugin.runs == 1
    clock.t = expiry
    assert await t.auth_headers() == {"Authorization": "Bearer token-2"}
    assert plugin.runs == 2
    seen = runs(tmp_path)[0]
    assert seen["greeting"] == "hi"
    assert seen["info"] == {
        "apiVersion": "client.authentication.k8s.io/v1",
        "kind": "ExecCredential",
        "spec": {"interactive": False},
    }


async def test_exec_plugin_without_expiry_runs_once_and_gets_cluster_info_when_asked(tmp_path: Path) -> None:
    cluster = {
        **HTTP,
        "tls-server-name": "api.internal",
        "extensions": [{"name": "client.authentication.k8s.io/exec", "extension": {"audience": "kaiwo"}}],
    }
    user = exec_user(tmp_path, api="client.authentication.k8s.io/v1beta1", provideClusterInfo=True)
    t = load_kubeconfig(write(tmp_path / "a", kubeconfig(cluster, user)))
    for _ in range(3):
        assert await t.auth_headers() == {"Authorization": "Bearer token-1"}
    [seen] = runs(tmp_path)
    assert seen["info"]["apiVersion"] == "client.authentication.k8s.io/v1beta1"
    assert seen["info"]["spec"]["cluster"] == {
        "server": "http://127.0.0.1:1",
        "tls-server-name": "api.internal",
        "config": {"audience": "kaiwo"},
    }


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"apiVersion": "client.authentication.k8s.io/v1alpha1", "command": "x"}, "is not one of"),
        ({"apiVersion": "client.authentication.k8s.io/v1", "command": "x"}, "interactiveMode must be set"),
        (
            {"apiVersion": "client.authentication.k8s.io/v1", "command": "x", "interactiveMode": "Always"},
            "needs an interactive terminal",
        ),
        ({"apiVersion": "client.authentication.k8s.io/v1beta1"}, "has no command"),
    ],
)
def test_exec_plugin_config_errors(tmp_path: Path, spec: dict[str, Any], message: str) -> None:
    with pytest.raises(KubeconfigError, match=message):
        load_kubeconfig(write(tmp_path / "a", kubeconfig(HTTP, {"exec": spec})))


@pytest.mark.parametrize(
    ("stdout", "code", "message"),
    [
        ("not json", 0, "no ExecCredential JSON"),
        ('{"apiVersion": "client.authentication.k8s.io/v1beta1", "kind": "ExecCredential", "status": {"token": "t"}}',
         0, "answered apiVersion"),
        ('{"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential", "status": {}}', 0,
         "neither a token nor"),
        ('{"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential", '
         '"status": {"clientCertificateData": "x"}}', 0, "only one of"),
        ("", 3, "exit code 3: boom"),
    ],
)  # fmt: skip
async def test_exec_plugin_answer_errors(tmp_path: Path, stdout: str, code: int, message: str) -> None:
    script = f"import sys; sys.stdout.write({stdout!r}); sys.stderr.write('boom'); sys.exit({code})"
    spec = {
        "apiVersion": "client.authentication.k8s.io/v1",
        "command": sys.executable,
        "args": ["-c", script],
        "interactiveMode": "IfAvailable",
    }
    t = load_kubeconfig(write(tmp_path / "a", kubeconfig(HTTP, {"exec": spec})))
    with pytest.raises(KubeconfigError, match=message):
        await t.auth_headers()


async def test_exec_plugin_that_cannot_start_shows_the_install_hint(tmp_path: Path) -> None:
    spec = {
        "apiVersion": "client.authentication.k8s.io/v1beta1",
        "command": str(tmp_path / "absent-plugin"),
        "installHint": "brew install absent-plugin",
    }
    t = load_kubeconfig(write(tmp_path / "a", kubeconfig(HTTP, {"exec": spec})))
    with pytest.raises(KubeconfigError, match="brew install absent-plugin"):
        await t.auth_headers()


# --- proxy ----------------------------------------------------------------------------------------------------


def test_proxy_url_wins_and_socks_is_rejected() -> None:
    env = {"HTTPS_PROXY": "http://env:3128"}
    assert choose_proxy("https://api.example:6443", "http://cfg:8080", env) == "http://cfg:8080"
    assert choose_proxy("https://127.0.0.1:6443", "http://cfg:8080", env) == "http://cfg:8080"
    with pytest.raises(KubeconfigError, match="'socks5' is not supported"):
        choose_proxy("https://api.example:6443", "socks5://cfg:1080", env)


def test_environment_proxy_by_scheme_except_loopback_and_no_proxy() -> None:
    env = {"HTTPS_PROXY": "http://s:1", "http_proxy": "http://p:2", "NO_PROXY": ".internal,10.0.0.1"}
    assert choose_proxy("https://api.example:6443", None, env) == "http://s:1"
    assert choose_proxy("http://api.example:8080", None, env) == "http://p:2"
    assert choose_proxy("https://api.internal:6443", None, env) is None
    assert choose_proxy("https://10.0.0.1:6443", None, env) is None
    assert choose_proxy("https://127.0.0.1:6443", None, env) is None
    assert choose_proxy("https://localhost:6443", None, env) is None
    assert choose_proxy("https://[::1]:6443", None, env) is None
    assert choose_proxy("https://api.example:6443", None, {}) is None


# --- in-cluster -----------------------------------------------------------------------------------------------


async def test_in_cluster_uses_the_rotating_token_file_and_the_service_address(tmp_path: Path) -> None:
    pki = PKI(tmp_path / "pki")
    (tmp_path / "sa").mkdir()
    (tmp_path / "sa" / "ca.crt").write_bytes(pki.ca.cert.read_bytes())
    (tmp_path / "sa" / "token").write_text("sa-token")
    t = in_cluster(tmp_path / "sa", {"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "443"})
    assert t.server == "https://[fd00::1]:443"
    assert await t.auth_headers() == {"Authorization": "Bearer sa-token"}
    with pytest.raises(KubeconfigError, match="not running in a cluster"):
        in_cluster(tmp_path / "sa", {})


# --- TLS against a real server --------------------------------------------------------------------------------


@dataclass
class TlsServer:
    url: str
    pki: PKI
    seen: list[dict[str, str]]


@pytest.fixture
async def tls_server(tmp_path: Path) -> AsyncIterator[TlsServer]:
    """An HTTPS server on 127.0.0.1 whose certificate names only ``api.internal`` and that requires a client
    certificate of its CA; it answers with the request's Authorization header."""
    pki = PKI(tmp_path / "pki")
    server = pki.issue("server", "api", dns=("api.internal",), server=True)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=pki.ca.cert)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_cert_chain(server.cert, server.key)
    seen: list[dict[str, str]] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        return web.json_response({"kind": "Status", "auth": request.headers.get("Authorization", "")})

    app = web.Application()
    app.router.add_get("/version", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield TlsServer(f"https://127.0.0.1:{port}", pki, seen)
    finally:
        await runner.cleanup()


def tls_kubeconfig(tmp_path: Path, srv: TlsServer, cluster: dict[str, Any] | None = None, trust_ca: bool = True) -> str:
    client = srv.pki.issue("client", "jane", client=True)
    user = {"client-certificate": str(client.cert), "client-key-data": b64(client.key.read_bytes()), "token": "tok"}
    base = {"server": srv.url}
    if trust_ca:
        base["certificate-authority-data"] = b64(srv.pki.ca.cert.read_bytes())
    return write(tmp_path / "kubeconfig", kubeconfig({**base, **(cluster or {})}, user))


async def test_tls_server_name_client_certificate_and_token_reach_the_server(
    tmp_path: Path, tls_server: TlsServer
) -> None:
    async with await Client.from_kubeconfig(
        tls_kubeconfig(tmp_path, tls_server, {"tls-server-name": "api.internal"})
    ) as c:
        assert (await c.request("GET", "/version"))["auth"] == "Bearer tok"


async def test_without_tls_server_name_the_certificate_does_not_match(tmp_path: Path, tls_server: TlsServer) -> None:
    async with await Client.from_kubeconfig(tls_kubeconfig(tmp_path, tls_server)) as c:
        c.max_attempts = 1
        with pytest.raises(aiohttp.ClientConnectorCertificateError, match=r"api\.internal|IP address mismatch"):
            await c.request("GET", "/version")


async def test_proxy_url_tunnels_every_request(tmp_path: Path, tls_server: TlsServer) -> None:
    async with ConnectProxy() as proxy:
        url = await proxy.start()
        path = tls_kubeconfig(tmp_path, tls_server, {"tls-server-name": "api.internal", "proxy-url": url})
        async with await Client.from_kubeconfig(path) as c:
            assert (await c.request("GET", "/version"))["auth"] == "Bearer tok"
        assert proxy.targets == [tls_server.url.removeprefix("https://")]


async def test_https_proxy_keeps_its_own_name_while_the_apiserver_gets_tls_server_name(
    tmp_path: Path, tls_server: TlsServer
) -> None:
    """The proxy's certificate names only localhost: tls-server-name must not leak into the proxy's handshake."""
    pair = tls_server.pki.issue("proxy", "proxy", dns=("localhost",), server=True)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(pair.cert, pair.key)
    async with ConnectProxy(tls) as proxy:
        url = await proxy.start()
        path = tls_kubeconfig(tmp_path, tls_server, {"tls-server-name": "api.internal", "proxy-url": url})
        async with await Client.from_kubeconfig(path) as c:
            assert (await c.request("GET", "/version"))["auth"] == "Bearer tok"
        assert proxy.targets == [tls_server.url.removeprefix("https://")]


def test_insecure_skip_tls_verify_excludes_a_certificate_authority(tmp_path: Path) -> None:
    cluster = {
        "server": "https://127.0.0.1:1",
        "insecure-skip-tls-verify": True,
        "certificate-authority-data": b64(b"x"),
    }
    with pytest.raises(KubeconfigError, match="exclude each other"):
        load_kubeconfig(write(tmp_path / "a", kubeconfig(cluster)))


async def test_insecure_skip_tls_verify_accepts_any_certificate(tmp_path: Path, tls_server: TlsServer) -> None:
    path = tls_kubeconfig(tmp_path, tls_server, {"insecure-skip-tls-verify": True}, trust_ca=False)
    async with await Client.from_kubeconfig(path) as c:
        assert (await c.request("GET", "/version"))["auth"] == "Bearer tok"


def test_data_wins_over_file_and_a_lone_client_certificate_is_an_error(tmp_path: Path) -> None:
    pki = PKI(tmp_path / "pki")
    cluster = {
        "server": "https://127.0.0.1:1",
        "certificate-authority": str(tmp_path / "does-not-exist"),
        "certificate-authority-data": b64(pki.ca.cert.read_bytes()),
    }
    load_kubeconfig(write(tmp_path / "a", kubeconfig(cluster)))  # the missing file is never read
    with pytest.raises(KubeconfigError, match="cannot read certificate-authority"):
        load_kubeconfig(
            write(tmp_path / "b", kubeconfig({"server": "https://127.0.0.1:1", "certificate-authority": "nope"}))
        )
    with pytest.raises(KubeconfigError, match="needs both client-certificate and client-key"):
        load_kubeconfig(write(tmp_path / "c", kubeconfig(cluster, {"client-certificate-data": b64(b"x")})))


async def test_the_client_opens_at_most_its_connection_limit() -> None:
    client = Client(Transport("http://127.0.0.1:1", None, None, NoCredentials()))
    client.connection_limit = 250
    try:
        assert client.session.connector is not None and client.session.connector.limit == 250
    finally:
        await client.close()


def test_the_operator_has_a_connection_for_every_worker_and_its_watches() -> None:
    for workers in (1, 64, 128):
        # two workload controllers, each with `workers` concurrent reconciles, plus a dozen watches
        assert manager.connection_limit(workers) >= 2 * workers + 12 + 4
    assert manager.connection_limit(1) == CONNECTION_LIMIT
