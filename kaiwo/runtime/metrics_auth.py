"""Secure metrics (``--metrics-secure``): /metrics over HTTPS, answered only for callers the cluster allows.

As controller-runtime's ``filters.WithAuthenticationAndAuthorization``: the bearer token is checked with a
TokenReview, then a SubjectAccessReview asks whether that user may ``get`` the non-resource URL (``/metrics``).
Invariants: no token -> 401; a token the API server does not accept -> 401; an accepted token whose user may not
get the path -> 403; a review that fails (API down) -> 500 and is not cached. Decisions are cached per token and
path for ``ttl`` seconds, so a Prometheus scraping every 30 s costs one pair of reviews a minute.

The serving certificate comes from files (``--metrics-cert-path``/``-name``/``-key``, e.g. a cert-manager Secret
mounted there), or, without them, is a self-signed certificate made at start (as controller-runtime does);
scrapers then skip verification.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import os
import socket
import ssl
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kaiwo.runtime.client import ApiError, Client


class MetricsAuthorizer:
    def __init__(self, client: Client, ttl: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self.ttl = ttl
        self.clock = clock
        self._cache: dict[str, tuple[float, int, str]] = {}  # sha256(token, path) -> (expiry, code, message)

    async def check(self, authorization: str | None, path: str) -> tuple[int, str]:
        """(HTTP status, message) for a request with this Authorization header: 200 when allowed."""
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return 401, "Unauthorized: send a bearer token (e.g. the scraper's ServiceAccount token)"
        key = hashlib.sha256(f"{path}\0{token}".encode()).hexdigest()
        now = self.clock()
        hit = self._cache.get(key)
        if hit and hit[0] > now:
            return hit[1], hit[2]
        try:
            code, message = await self._review(token, path)
        except ApiError as e:
            return 500, f"could not review the token: {e.message or e}"
        self._cache = {k: v for k, v in self._cache.items() if v[0] > now}  # drop expired entries
        self._cache[key] = (now + self.ttl, code, message)
        return code, message

    async def _review(self, token: str, path: str) -> tuple[int, str]:
        review = await self.client.create(
            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}}
        )
        status = review.get("status") or {}
        if not status.get("authenticated"):
            return 401, f"Unauthorized: the token was not accepted ({status.get('error') or 'unknown token'})"
        user = status.get("user") or {}
        name = user.get("username", "")
        spec = {
            "user": name,
            "groups": user.get("groups") or [],
            "uid": user.get("uid", ""),
            "extra": user.get("extra") or {},
            "nonResourceAttributes": {"path": path, "verb": "get"},
        }
        access = await self.client.create(
            {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec}
        )
        if (access.get("status") or {}).get("allowed"):
            return 200, "ok"
        return 403, f"Forbidden: user {name!r} may not get {path} (bind it to a ClusterRole allowing that)"


def server_tls(cert: tuple[str, str] | None = None) -> ssl.SSLContext:
    """TLS context of the metrics server: the (certificate, key) files, else a fresh self-signed pair."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert is not None:
        for path in cert:
            if not Path(path).is_file():
                raise ValueError(f"metrics certificate file {path} does not exist")
        ctx.load_cert_chain(*cert)
        return ctx
    pem, key = self_signed_pair()
    with tempfile.TemporaryDirectory(prefix="kaiwo-metrics-") as tmp:  # ssl loads from files only; 0700 folder
        crt_path, key_path = Path(tmp) / "tls.crt", Path(tmp) / "tls.key"
        crt_path.write_bytes(pem)
        key_path.write_bytes(key)
        ctx.load_cert_chain(crt_path, key_path)
    return ctx


def self_signed_pair(valid: dt.timedelta = dt.timedelta(days=365)) -> tuple[bytes, bytes]:
    """A self-signed EC P-256 certificate for this host (PEM cert, PEM key)."""
    key = ec.generate_private_key(ec.SECP256R1())
    host = socket.gethostname()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"kaiwo-metrics@{host}")])
    now = dt.datetime.now(dt.UTC)
    sans: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.DNSName(host),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ]
    pod_ip = os.environ.get("POD_IP")
    if pod_ip:
        sans.append(x509.IPAddress(ipaddress.ip_address(pod_ip)))
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + valid)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .sign(key, hashes.SHA256())
    )
    return (
        cert.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )
