"""The storage servers of the downloader tests, each a real server on 127.0.0.1 behind a ThrottleProxy:
S3 (moto's server mode, with IAM authentication switched on), GCS (fake-gcs-server, built from its Go module
into the binary cache) and Azure Blob (Azurite from npm, installed once into the cache folder)."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kaiwo.devcluster.build import Builder, cache_root
from tests.downloader.helpers import ThrottleProxy, free_port, wait_port

AZURITE_VERSION = "3.37.0"
# The emulator's published development account key (public, documented by Microsoft).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


@dataclass
class ObjectServer:
    """One object store as the tests see it: ``section`` is the config key, ``item(buckets, secrets, good)`` the
    config item (writing its secret files into ``secrets``; ``good=False`` writes wrong credentials), and
    ``secret`` the value that must never appear in any output."""

    section: str
    proxy: ThrottleProxy
    create_bucket: Callable[[str], object]
    put: Callable[[str, str, bytes], object]
    item: Callable[[list[dict[str, Any]], Path, bool], dict[str, Any]]
    wrong_secret: str
    secrets: list[str] = field(default_factory=list)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(0.5)
    except subprocess.TimeoutExpired:  # Azurite waits for idle keep-alive connections
        proc.kill()
        proc.wait()


def _secret(folder: Path, name: str, key: str, value: str) -> dict[str, str]:
    path = folder / name / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(value)
    return {"secretName": name, "secretKey": key, "file": str(path)}


@contextmanager
def moto_s3() -> Iterator[ObjectServer]:
    import boto3
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    anon = {"endpoint_url": url, "region_name": "us-east-1", "aws_access_key_id": "x", "aws_secret_access_key": "x"}
    # The next three requests are unauthenticated (they create the IAM user); every later one must be signed
    # with an access key moto knows, so wrong keys fail as on AWS.
    reset = urllib.request.Request(
        f"{url}/moto-api/reset-auth", data=b"3", method="POST", headers={"Content-Type": "text/plain"}
    )
    urllib.request.urlopen(reset).close()
    iam = boto3.client("iam", **anon)
    iam.create_user(UserName="reader")
    iam.put_user_policy(
        UserName="reader",
        PolicyName="s3",
        PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
        ),
    )
    key = iam.create_access_key(UserName="reader")["AccessKey"]
    key_id, secret = key["AccessKeyId"], key["SecretAccessKey"]
    s3 = boto3.client(
        "s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id=key_id, aws_secret_access_key=secret
    )
    proxy = ThrottleProxy(port)
    wrong = "wrong-" + secret[6:]

    def item(buckets: list[dict[str, Any]], folder: Path, good: bool) -> dict[str, Any]:
        return {
            "endpointUrl": proxy.url,
            "accessKeyId": _secret(folder, "s3", "id", key_id),
            "secretKey": _secret(folder, "s3", "secret", secret if good else wrong),
            "buckets": buckets,
        }

    try:
        yield ObjectServer(
            "s3",
            proxy,
            lambda b: s3.create_bucket(Bucket=b),
            lambda b, k, data: s3.put_object(Bucket=b, Key=k, Body=data),
            item,
            wrong,
            [secret, wrong],
        )
    finally:
        proxy.close()
        server.stop()


def fake_gcs_binary() -> Path:
    return Builder().ensure(["fake-gcs-server"])["fake-gcs-server"]


@contextmanager
def fake_gcs(tmp: Path) -> Iterator[ObjectServer]:
    port = free_port()
    proxy = ThrottleProxy(port)
    proc = subprocess.Popen(
        [
            str(fake_gcs_binary()),
            "-scheme=http",
            "-host=127.0.0.1",
            f"-port={port}",
            "-backend=memory",
            f"-public-host=127.0.0.1:{proxy.port}",
            f"-external-url={proxy.url}",
            "-log-level=error",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    direct = f"http://127.0.0.1:{port}"

    def create_bucket(name: str) -> None:
        body = json.dumps({"name": name}).encode()
        req = urllib.request.Request(
            f"{direct}/storage/v1/b", data=body, method="POST", headers={"Content-Type": "application/json"}
        )
        urllib.request.urlopen(req).close()

    def put(bucket: str, key: str, data: bytes) -> None:
        q = urllib.parse.quote(key, safe="")
        req = urllib.request.Request(
            f"{direct}/upload/storage/v1/b/{bucket}/o?uploadType=media&name={q}", data=data, method="POST"
        )
        urllib.request.urlopen(req).close()

    # fake-gcs-server does not check tokens: the wrong credentials are a key whose private key is not a key, which
    # the client must refuse before any request (and without printing it).
    wrong_key = "-----BEGIN PRIVATE KEY-----\nbm90LWEta2V5LXNlY3JldC12YWx1ZQ==\n-----END PRIVATE KEY-----\n"

    def item(buckets: list[dict[str, Any]], folder: Path, good: bool) -> dict[str, Any]:
        key: dict[str, Any] = {
            "gcs_base_url": proxy.url,
            "disable_oauth": True,
            "client_email": "",
            "private_key": "",
            "private_key_id": "",
        }
        if not good:
            key = {
                "type": "service_account",
                "client_email": "reader@example.iam.gserviceaccount.com",
                "private_key_id": "k1",
                "private_key": wrong_key,
                "gcs_base_url": proxy.url,
            }
        return {"applicationCredentials": _secret(folder, "gcs", "key.json", json.dumps(key)), "buckets": buckets}

    try:
        wait_port(port)
        yield ObjectServer("gcs", proxy, create_bucket, put, item, "bm90LWEta2V5LXNlY3JldC12YWx1ZQ==")
    finally:
        proxy.close()
        _stop(proc)


def azurite_binary() -> Path:
    """``azurite-blob`` of AZURITE_VERSION, installed with npm into the cache folder on first use."""
    prefix = cache_root() / "npm" / f"azurite-{AZURITE_VERSION}"
    binary = prefix / "node_modules" / ".bin" / "azurite-blob"
    if not binary.exists():
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError("the Azure Blob tests need node and npm (Azurite is an npm package)")
        subprocess.run(
            [npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund", f"azurite@{AZURITE_VERSION}"],
            check=True,
            capture_output=True,
        )
    return binary


@contextmanager
def azurite(tmp: Path) -> Iterator[ObjectServer]:
    from azure.storage.blob import BlobServiceClient

    port = free_port()
    proc = subprocess.Popen(
        [
            str(azurite_binary()),
            "--inMemoryPersistence",
            "--blobHost=127.0.0.1",
            f"--blobPort={port}",
            "--skipApiVersionCheck",
            "--silent",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    proxy = ThrottleProxy(port)

    def conn(port: int, key: str) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={key};"
            f"BlobEndpoint=http://127.0.0.1:{port}/{AZURITE_ACCOUNT};"
        )

    wrong = "V3JvbmdLZXlXcm9uZ0tleVdyb25nS2V5V3JvbmdLZXk="
    try:
        wait_port(port)
        service = BlobServiceClient.from_connection_string(conn(port, AZURITE_KEY))

        def item(buckets: list[dict[str, Any]], folder: Path, good: bool) -> dict[str, Any]:
            value = conn(proxy.port, AZURITE_KEY if good else wrong)
            return {"connectionString": _secret(folder, "azure", "conn", value), "containers": buckets}

        yield ObjectServer(
            "azureBlob",
            proxy,
            lambda c: service.create_container(c),
            lambda c, k, data: service.get_blob_client(c, k).upload_blob(data, overwrite=True),
            item,
            wrong,
            [wrong],
        )
    finally:
        proxy.close()
        _stop(proc)
