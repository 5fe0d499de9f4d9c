"""Google Cloud Storage with a service-account key (``applicationCredentials``, the JSON key file).

The key file's ``gcs_base_url`` (when present) points the client at another endpoint, as Google's own tools do,
e.g. a GCS emulator; ``disable_oauth: true`` there skips the token exchange.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from obstore.store import GCSStore

from kaiwo.api.storage import GCSDownloadItem
from kaiwo.downloader import buckets
from kaiwo.downloader.core import DownloadError, read_secret
from kaiwo.downloader.stores import client_options, retry_config


def download(item: GCSDownloadItem, root: Path, workers: int) -> list[DownloadError]:
    name = "gcs"
    key = read_secret(item.application_credentials, name, "applicationCredentials")
    try:
        parsed = orjson.loads(key or "")
    except orjson.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, dict):
        return [DownloadError(name, "applicationCredentials: not a service-account key (JSON object)")]
    base_url = parsed.get("gcs_base_url")

    def store_for(bucket: str) -> Any:
        return GCSStore(
            bucket,
            config={"service_account_key": key or ""},
            client_options=client_options(base_url),
            retry_config=retry_config(),
        )

    return buckets.download("gcs", item.buckets, store_for, root, workers)
