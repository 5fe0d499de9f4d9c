"""How the client reaches the apiserver: kubeconfig or in-cluster credentials -> one ``Transport``.

Every transport setting kubectl honours is honoured here, with kubectl's precedence rules (docs/design/decisions.md
D32; the table in docs/design/runtime.md#client):

- ``server`` (a path prefix is kept), ``proxy-url`` (HTTP CONNECT over ``http://`` or ``https://``, the latter
  verified under its own name with the cluster's trust roots; without it the HTTPS_PROXY / HTTP_PROXY / NO_PROXY
  environment, except for loopback servers, as Go's net/http does),
  ``tls-server-name`` (SNI and certificate verification name), ``certificate-authority(-data)``,
  ``insecure-skip-tls-verify``, ``disable-compression``;
- user ``client-certificate(-data)`` / ``client-key(-data)``, ``token`` / ``tokenFile`` (the file wins and is
  re-read whenever it changes: projected service-account tokens rotate), ``username`` / ``password``,
  impersonation (``as``, ``as-uid``, ``as-groups``, ``as-user-extra``), and ``exec`` credential plugins
  (client.authentication.k8s.io v1 and v1beta1), whose answer is cached until its ``expirationTimestamp``.

``*-data`` wins over the file form; relative file paths are relative to the kubeconfig file that names them;
with several kubeconfig files (``KUBECONFIG=a:b``) the first definition of a name and the first
``current-context`` win. Settings kubectl no longer supports (``auth-provider``) are rejected with a clear error
instead of being ignored. The module does file and process I/O only while loading or refreshing credentials;
the request path costs one ``stat`` (token files) or one clock read (exec plugins).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import os
import ssl
import tempfile
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiohttp
import orjson
import yaml

from kaiwo.runtime import timestamps

DEFAULT_KUBECONFIG = "~/.kube/config"
SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
EXEC_API_VERSIONS = ("client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1")
EXEC_TIMEOUT = 60.0  # an exec plugin that hangs must not hang every request behind it
CONNECTION_LIMIT = 100  # simultaneous connections per client by default; every open watch holds one


class KubeconfigError(Exception):
    """The kubeconfig (or in-cluster environment) cannot produce a working transport; the message names why."""


class Credentials(Protocol):
    """Supplies the Authorization header of each request (empty when the transport authenticates by TLS)."""

    async def headers(self) -> dict[str, str]: ...


@dataclass(frozen=True)
class Transport:
    """Everything needed to open a session to one apiserver."""

    server: str
    ssl_context: ssl.SSLContext | None  # None: plain http
    proxy: str | None
    credentials: Credentials
    fixed_headers: tuple[tuple[str, str], ...] = ()  # impersonation, Accept-Encoding; names may repeat

    def open_session(self, limit: int = CONNECTION_LIMIT) -> aiohttp.ClientSession:
        """A session honouring this transport, with at most ``limit`` connections (a request waiting for one spends
        its own timeout waiting). Call inside the event loop; the caller closes it.

        ``trust_env`` stays off: aiohttp would read ~/.netrc and the proxy environment in a thread on every
        request; the environment's proxy was already resolved once, when the transport was built."""
        connector = aiohttp.TCPConnector(limit=limit, ssl=self.ssl_context if self.ssl_context is not None else True)
        return aiohttp.ClientSession(
            connector=connector, proxy=self.proxy, headers=list(self.fixed_headers), trust_env=False
        )

    async def auth_headers(self) -> dict[str, str]:
        return await self.credentials.headers()


# --- credentials -------------------------------------------------------------------------------------------


class NoCredentials:
    async def headers(self) -> dict[str, str]:
        return {}


@dataclass
class StaticToken:
    token: str

    async def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class BasicCredentials:
    username: str
    password: str

    async def headers(self) -> dict[str, str]:
        raw = f"{self.username}:{self.password}".encode()
        return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


@dataclass
class TokenFile:
    """A bearer token read from a file, re-read whenever the file changes (size, mtime or inode).

    ``fallback`` (the kubeconfig's ``token``) is used while the file cannot be read, as client-go does."""

    path: Path
    fallback: str = ""
    _stamp: tuple[int, int, int] | None = field(default=None, init=False, repr=False)
    _token: str = field(default="", init=False, repr=False)

    async def headers(self) -> dict[str, str]:
        token = self.current()
        return {"Authorization": f"Bearer {token}"} if token else {}

    def current(self) -> str:
        try:
            st = self.path.stat()
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
            if stamp != self._stamp:
                self._token = self.path.read_text().strip()
                self._stamp = stamp
        except OSError:
            return self._token or self.fallback
        return self._token or self.fallback


@dataclass
class ExecPlugin:
    """Credentials from an exec plugin (``users[].user.exec``), cached until their expirationTimestamp.

    One run at a time: concurrent requests that find the cache stale wait for the same run. A client
    certificate in the answer is loaded into ``ssl_context`` (new connections present it)."""

    api_version: str
    command: str
    args: Sequence[str] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    cluster_info: Mapping[str, Any] | None = None  # spec.cluster when provideClusterInfo is set
    install_hint: str = ""
    ssl_context: ssl.SSLContext | None = None
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    runs: int = field(default=0, init=False)  # how many times the plugin ran (observable in tests)
    _token: str = field(default="", init=False, repr=False)
    _expires: datetime | None = field(default=None, init=False, repr=False)
    _fresh: bool = field(default=False, init=False, repr=False)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False, repr=False)

    async def headers(self) -> dict[str, str]:
        if not self._valid():
            async with self._lock:
                if not self._valid():
                    await self._refresh()
        return {"Authorization": f"Bearer {self._token}"} if self._token else {}

    def _valid(self) -> bool:
        return self._fresh and (self._expires is None or self.now() < self._expires)

    def exec_info(self) -> dict[str, Any]:
        """The ExecCredential handed to the plugin in KUBERNETES_EXEC_INFO."""
        spec: dict[str, Any] = {"interactive": False}
        if self.cluster_info is not None:
            spec["cluster"] = dict(self.cluster_info)
        return {"apiVersion": self.api_version, "kind": "ExecCredential", "spec": spec}

    async def _refresh(self) -> None:
        env = {**os.environ, **self.env, "KUBERNETES_EXEC_INFO": orjson.dumps(self.exec_info()).decode()}
        try:
            proc = await asyncio.create_subprocess_exec(
                self.command,
                *self.args,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as e:
            hint = f" ({self.install_hint.strip()})" if self.install_hint.strip() else ""
            raise KubeconfigError(f"exec plugin {self.command!r} cannot run: {e}{hint}") from e
        try:
            out, err = await asyncio.wait_for(proc.communicate(), EXEC_TIMEOUT)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise KubeconfigError(f"exec plugin {self.command!r} gave no answer within {EXEC_TIMEOUT:.0f}s") from None
        self.runs += 1
        if proc.returncode != 0:
            detail = err.decode(errors="replace").strip()[-500:]
            raise KubeconfigError(f"exec plugin {self.command!r} failed with exit code {proc.returncode}: {detail}")
        self._accept(parse_exec_credential(out, self.api_version))

    def _accept(self, status: Mapping[str, Any]) -> None:
        cert, key = status.get("clientCertificateData"), status.get("clientKeyData")
        if cert and key:
            if self.ssl_context is None:
                raise KubeconfigError("exec plugin returned a client certificate for a plain-http server")
            load_client_pair(self.ssl_context, cert.encode(), key.encode())
        self._token = status.get("token") or ""
        expiry = status.get("expirationTimestamp")
        self._expires = _parse_time(expiry) if expiry else None
        self._fresh = True


def parse_exec_credential(raw: bytes, api_version: str) -> Mapping[str, Any]:
    """The ``status`` of a plugin's ExecCredential answer, validated as client-go validates it."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise KubeconfigError(f"exec plugin printed no ExecCredential JSON: {e}") from e
    if not isinstance(doc, dict) or doc.get("kind") != "ExecCredential":
        raise KubeconfigError("exec plugin output is not an ExecCredential")
    if doc.get("apiVersion") != api_version:
        raise KubeconfigError(
            f"exec plugin answered apiVersion {doc.get('apiVersion')!r}, the kubeconfig asked for {api_version!r}"
        )
    status = doc.get("status")
    if not isinstance(status, dict):
        raise KubeconfigError("exec plugin returned an ExecCredential without status")
    has_cert, has_key = bool(status.get("clientCertificateData")), bool(status.get("clientKeyData"))
    if has_cert != has_key:
        raise KubeconfigError("exec plugin returned only one of clientCertificateData and clientKeyData")
    if not status.get("token") and not has_cert:
        raise KubeconfigError("exec plugin returned neither a token nor a client certificate and key")
    if status.get("expirationTimestamp"):
        _parse_time(status["expirationTimestamp"])
    return status


def _parse_time(value: str) -> datetime:
    try:
        return timestamps.parse(value)
    except (TypeError, ValueError) as e:
        raise KubeconfigError(f"exec plugin returned an invalid expirationTimestamp {value!r}") from e


# --- TLS ---------------------------------------------------------------------------------------------------


class ServerNameContext(ssl.SSLContext):
    """An SSLContext that presents and verifies ``server_name`` instead of the apiserver's URL host
    (tls-server-name).

    asyncio creates every TLS connection (direct, or inside a CONNECT tunnel) through ``wrap_bio``, so one
    override covers both; the apiserver's certificate must then name ``server_name``. Connections to other
    hosts (an https:// proxy) keep their own name."""

    server_name: str | None = None
    api_host: str | None = None

    def wrap_bio(self, *args: Any, **kwargs: Any) -> ssl.SSLObject:
        if self.server_name:
            asked = args[3] if len(args) >= 4 else kwargs.get("server_hostname")
            if asked is None or asked.strip("[]") == self.api_host:
                if len(args) >= 4:
                    args = (*args[:3], self.server_name, *args[4:])
                else:
                    kwargs["server_hostname"] = self.server_name
        return super().wrap_bio(*args, **kwargs)


def load_client_pair(ctx: ssl.SSLContext, cert_pem: bytes, key_pem: bytes) -> None:
    """Load a PEM client certificate and key given as bytes (ssl only reads them from files)."""
    with tempfile.TemporaryDirectory(prefix="kaiwo-tls-") as tmp:
        cert, key = Path(tmp, "tls.crt"), Path(tmp, "tls.key")
        for path, data in ((cert, cert_pem), (key, key_pem)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        try:
            ctx.load_cert_chain(cert, key)
        except ssl.SSLError as e:
            raise KubeconfigError(f"the client certificate and key do not load: {e}") from e


def _data_or_file(entry: Mapping[str, Any], name: str, base: Path) -> bytes | None:
    """``<name>-data`` (base64) if set, else the file ``<name>`` (relative to the kubeconfig's folder)."""
    data = entry.get(f"{name}-data")
    if data:
        try:
            return base64.b64decode(data)
        except ValueError as e:
            raise KubeconfigError(f"{name}-data is not valid base64") from e
    path = entry.get(name)
    if path:
        try:
            return (base / Path(path).expanduser()).read_bytes()
        except OSError as e:
            raise KubeconfigError(f"cannot read {name} {path}: {e.strerror}") from e
    return None


def tls_context(
    cluster: Mapping[str, Any], user: Mapping[str, Any], cluster_dir: Path, user_dir: Path
) -> ssl.SSLContext:
    ctx = ServerNameContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.server_name = cluster.get("tls-server-name") or None
    ctx.api_host = urlsplit(str(cluster.get("server") or "")).hostname
    ca = _data_or_file(cluster, "certificate-authority", cluster_dir)
    if cluster.get("insecure-skip-tls-verify"):
        if ca is not None:
            raise KubeconfigError("insecure-skip-tls-verify and a certificate-authority exclude each other")
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    elif ca is not None:
        try:
            ctx.load_verify_locations(cadata=ca.decode())
        except (ssl.SSLError, UnicodeDecodeError) as e:
            raise KubeconfigError(f"the certificate-authority is not a PEM certificate: {e}") from e
    else:
        ctx.load_default_certs()
    cert = _data_or_file(user, "client-certificate", user_dir)
    key = _data_or_file(user, "client-key", user_dir)
    if (cert is None) != (key is None):
        raise KubeconfigError("a client certificate needs both client-certificate and client-key")
    if cert is not None and key is not None:
        load_client_pair(ctx, cert, key)
    return ctx


# --- proxy -------------------------------------------------------------------------------------------------


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def choose_proxy(server: str, proxy_url: str | None, environ: Mapping[str, str] | None = None) -> str | None:
    """The proxy for ``server``: the kubeconfig's proxy-url, else the environment's (never for loopback)."""
    if proxy_url:
        scheme = urlsplit(proxy_url).scheme
        if scheme not in ("http", "https"):
            raise KubeconfigError(
                f"proxy-url scheme {scheme!r} is not supported: use an http:// or https:// (CONNECT) proxy"
            )
        return proxy_url
    url = urlsplit(server)
    host = url.hostname or ""
    if _is_loopback(host):
        return None
    env = dict(os.environ if environ is None else environ)
    proxies = {k.lower().removesuffix("_proxy"): v for k, v in env.items() if k.lower().endswith("_proxy") and v}
    chosen = proxies.get(url.scheme)
    if not chosen:
        return None
    netloc = host if url.port is None else f"{host}:{url.port}"
    if "no" in proxies and urllib.request.proxy_bypass_environment(netloc, proxies):  # type: ignore[attr-defined]
        return None
    return chosen


# --- loading -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Named:
    """One entry of a kubeconfig list, with the folder its relative paths are relative to."""

    body: Mapping[str, Any]
    folder: Path


@dataclass
class KubeConfig:
    """Several kubeconfig files merged the way kubectl merges them."""

    clusters: dict[str, _Named] = field(default_factory=dict)
    users: dict[str, _Named] = field(default_factory=dict)
    contexts: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    current_context: str = ""

    def add(self, doc: Mapping[str, Any], folder: Path) -> None:
        for key, target, inner in (("clusters", self.clusters, "cluster"), ("users", self.users, "user")):
            for item in doc.get(key) or []:
                if item.get("name") and item["name"] not in target:
                    target[item["name"]] = _Named(item.get(inner) or {}, folder)
        for item in doc.get("contexts") or []:
            if item.get("name") and item["name"] not in self.contexts:
                self.contexts[item["name"]] = item.get("context") or {}
        if not self.current_context:
            self.current_context = doc.get("current-context") or ""

    @classmethod
    def read(cls, paths: Sequence[Path]) -> KubeConfig:
        merged = cls()
        for path in paths:
            try:
                doc = yaml.safe_load(path.read_text()) or {}
            except OSError as e:
                raise KubeconfigError(f"cannot read kubeconfig {path}: {e.strerror}") from e
            except yaml.YAMLError as e:
                raise KubeconfigError(f"kubeconfig {path} is not valid YAML: {e}") from e
            if not isinstance(doc, dict):
                raise KubeconfigError(f"kubeconfig {path} is not a mapping")
            merged.add(doc, path.resolve().parent)
        return merged

    def transport(self, context: str | None = None) -> Transport:
        name = context or self.current_context
        if not name:
            raise KubeconfigError("the kubeconfig has no current-context; pass a context")
        if name not in self.contexts:
            raise KubeconfigError(f"no context {name!r} in the kubeconfig")
        ctx = self.contexts[name]
        cluster = self.clusters.get(ctx.get("cluster") or "")
        if cluster is None:
            raise KubeconfigError(f"context {name!r} names cluster {ctx.get('cluster')!r}, which is not defined")
        user = self.users.get(ctx.get("user") or "") or _Named({}, cluster.folder)
        if ctx.get("user") and ctx["user"] not in self.users:
            raise KubeconfigError(f"context {name!r} names user {ctx['user']!r}, which is not defined")
        return build_transport(cluster, user)


def build_transport(cluster: _Named, user: _Named) -> Transport:
    c, u = cluster.body, user.body
    server = str(c.get("server") or "").rstrip("/")
    if not server:
        raise KubeconfigError("the cluster has no server")
    scheme = urlsplit(server).scheme
    if scheme not in ("http", "https"):
        raise KubeconfigError(f"server {server!r} must start with https:// or http://")
    ctx = tls_context(c, u, cluster.folder, user.folder) if scheme == "https" else None
    if u.get("auth-provider"):
        provider = (u["auth-provider"] or {}).get("name", "")
        raise KubeconfigError(
            f"auth-provider {provider!r} is not supported (kubectl dropped it too): use an exec credential plugin"
        )
    fixed: list[tuple[str, str]] = []
    if u.get("as"):
        fixed.append(("Impersonate-User", u["as"]))
    if u.get("as-uid"):
        fixed.append(("Impersonate-Uid", u["as-uid"]))
    fixed += [("Impersonate-Group", g) for g in u.get("as-groups") or []]
    for key, values in (u.get("as-user-extra") or {}).items():
        fixed += [(f"Impersonate-Extra-{key}", v) for v in values or []]
    if c.get("disable-compression"):
        fixed.append(("Accept-Encoding", "identity"))
    return Transport(
        server=server,
        ssl_context=ctx,
        proxy=choose_proxy(server, c.get("proxy-url")),
        credentials=_credentials(c, u, user.folder, ctx, server),
        fixed_headers=tuple(fixed),
    )


def _credentials(
    cluster: Mapping[str, Any], user: Mapping[str, Any], folder: Path, ctx: ssl.SSLContext | None, server: str
) -> Credentials:
    if user.get("exec"):
        return _exec_plugin(user["exec"], cluster, folder, ctx, server)
    if user.get("tokenFile"):
        return TokenFile(folder / Path(user["tokenFile"]).expanduser(), fallback=user.get("token") or "")
    if user.get("token"):
        return StaticToken(user["token"])
    if user.get("username") or user.get("password"):
        return BasicCredentials(user.get("username") or "", user.get("password") or "")
    return NoCredentials()


def _exec_plugin(
    spec: Mapping[str, Any],
    cluster: Mapping[str, Any],
    folder: Path,
    ctx: ssl.SSLContext | None,
    server: str,
) -> ExecPlugin:
    api_version = spec.get("apiVersion") or ""
    if api_version not in EXEC_API_VERSIONS:
        raise KubeconfigError(f"exec plugin apiVersion {api_version!r} is not one of {', '.join(EXEC_API_VERSIONS)}")
    command = spec.get("command") or ""
    if not command:
        raise KubeconfigError("exec plugin has no command")
    mode = spec.get("interactiveMode") or ""
    if api_version.endswith("/v1") and not mode:
        raise KubeconfigError("exec plugin: interactiveMode must be set for client.authentication.k8s.io/v1")
    if mode == "Always":
        raise KubeconfigError("exec plugin needs an interactive terminal (interactiveMode: Always); Kaiwo has none")
    if os.sep in command and not Path(command).is_absolute():
        command = str(folder / command)  # as kubectl: a relative path is relative to the kubeconfig
    cluster_info = None
    if spec.get("provideClusterInfo"):
        cluster_info = {
            k: v
            for k, v in {
                "server": server,
                "tls-server-name": cluster.get("tls-server-name"),
                "insecure-skip-tls-verify": cluster.get("insecure-skip-tls-verify"),
                "certificate-authority-data": cluster.get("certificate-authority-data"),
                "proxy-url": cluster.get("proxy-url"),
                "disable-compression": cluster.get("disable-compression"),
                "config": _plugin_extension(cluster),
            }.items()
            if v
        }
    return ExecPlugin(
        api_version=api_version,
        command=command,
        args=list(spec.get("args") or []),
        env={e["name"]: str(e.get("value", "")) for e in spec.get("env") or [] if e.get("name")},
        cluster_info=cluster_info,
        install_hint=spec.get("installHint") or "",
        ssl_context=ctx,
    )


def _plugin_extension(cluster: Mapping[str, Any]) -> Any:
    for ext in cluster.get("extensions") or []:
        if ext.get("name") == "client.authentication.k8s.io/exec":
            return ext.get("extension")
    return None


def kubeconfig_paths(path: str | None = None) -> list[Path]:
    """The files of ``path`` or $KUBECONFIG (os.pathsep-separated lists), else ~/.kube/config; missing ones skipped."""
    spec = path or os.environ.get("KUBECONFIG") or DEFAULT_KUBECONFIG
    paths = [Path(p).expanduser() for p in spec.split(os.pathsep) if p]
    existing = [p for p in paths if p.is_file()]
    if not existing:
        raise KubeconfigError(f"no kubeconfig file at {spec}")
    return existing


def load_kubeconfig(path: str | None = None, context: str | None = None) -> Transport:
    return KubeConfig.read(kubeconfig_paths(path)).transport(context)


def in_cluster(root: Path = SERVICE_ACCOUNT_DIR, environ: Mapping[str, str] | None = None) -> Transport:
    """The pod's service account: the rotated token file, the cluster CA, the kubernetes Service address."""
    env = os.environ if environ is None else environ
    host, port = env.get("KUBERNETES_SERVICE_HOST"), env.get("KUBERNETES_SERVICE_PORT")
    if not host or not port:
        raise KubeconfigError("not running in a cluster: KUBERNETES_SERVICE_HOST/PORT are not set")
    with contextlib.suppress(ValueError):
        if ipaddress.ip_address(host).version == 6:
            host = f"[{host}]"
    token = root / "token"
    if not token.is_file():
        raise KubeconfigError(f"not running in a cluster: no service account token at {token}")
    cluster = _Named({"server": f"https://{host}:{port}", "certificate-authority": str(root / "ca.crt")}, root)
    return build_transport(cluster, _Named({"tokenFile": str(token)}, root))
