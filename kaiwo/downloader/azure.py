"""Azure Blob Storage with a connection string (``connectionString``), the form the Azure portal hands out:
``AccountName``/``AccountKey`` or ``SharedAccessSignature``, and ``BlobEndpoint`` or ``EndpointSuffix``
(``UseDevelopmentStorage=true`` means the local emulator's well-known account)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from obstore.store import AzureStore

from kaiwo.api.storage import AzureBlobStorageDownloadItem
from kaiwo.downloader import buckets
from kaiwo.downloader.core import DownloadError, read_secret
from kaiwo.downloader.stores import client_options, retry_config

if TYPE_CHECKING:
    from obstore.store import AzureConfig

# The emulator's published development account (not a secret).
_DEV_ACCOUNT = "devstoreaccount1"
_DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def parse_connection_string(text: str) -> dict[str, str]:
    """``Key=Value;...`` pairs; a value may itself contain ``=`` (base64 keys, SAS tokens)."""
    out: dict[str, str] = {}
    for part in text.strip().split(";"):
        if "=" in part:
            k, v = part.split("=", 1)
            out[k.strip()] = v.strip()
    return out


def store_config(conn: dict[str, str]) -> AzureConfig:
    if conn.get("UseDevelopmentStorage", "").lower() == "true":
        conn = {
            "AccountName": _DEV_ACCOUNT,
            "AccountKey": _DEV_KEY,
            "BlobEndpoint": f"http://127.0.0.1:10000/{_DEV_ACCOUNT}",
        } | conn
    account = conn.get("AccountName")
    endpoint = conn.get("BlobEndpoint")
    if not account and endpoint:
        account = endpoint.rstrip("/").rsplit("/", 1)[-1]
    if not account:
        raise ValueError("connectionString: no AccountName or BlobEndpoint")
    config: AzureConfig = {"account_name": account}
    if endpoint:
        config["endpoint"] = endpoint.rstrip("/")
    elif conn.get("EndpointSuffix"):
        config["endpoint"] = (
            f"{conn.get('DefaultEndpointsProtocol', 'https')}://{account}.blob.{conn['EndpointSuffix']}"
        )
    if conn.get("AccountKey"):
        config["account_key"] = conn["AccountKey"]
    elif conn.get("SharedAccessSignature"):
        config["sas_key"] = conn["SharedAccessSignature"]
    else:
        config["skip_signature"] = True
    return config


def download(item: AzureBlobStorageDownloadItem, root: Path, workers: int) -> list[DownloadError]:
    name = "azureBlob"
    secret = read_secret(item.connection_string, name, "connectionString") or ""
    try:
        config = store_config(parse_connection_string(secret))
    except ValueError as e:
        return [DownloadError(name, str(e))]

    def store_for(container: str) -> Any:
        return AzureStore(
            container,
            config=config,
            client_options=client_options(config.get("endpoint")),
            retry_config=retry_config(),
        )

    return buckets.download("azureBlob", item.containers, store_for, root, workers)
