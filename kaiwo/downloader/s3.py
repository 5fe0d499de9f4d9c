"""S3 and S3-compatible stores (AWS, MinIO, Ceph, ...): ``endpointUrl`` plus optional access key and secret key.

Path-style requests (``<endpoint>/<bucket>/<key>``) work with every S3-compatible store; the region defaults to
``us-east-1`` (override with ``AWS_REGION`` in the workload's env). Without keys, requests are unsigned (public
buckets).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from obstore.store import S3Store

from kaiwo.api.storage import S3DownloadItem
from kaiwo.downloader import buckets
from kaiwo.downloader.core import DownloadError, read_secret
from kaiwo.downloader.stores import client_options, retry_config

if TYPE_CHECKING:
    from obstore.store import S3Config


def download(item: S3DownloadItem, root: Path, workers: int) -> list[DownloadError]:
    name = f"s3 {item.endpoint_url}"
    key_id = read_secret(item.access_key_id, name, "accessKeyId")
    secret = read_secret(item.secret_key, name, "secretKey")

    def store_for(bucket: str) -> Any:
        config: S3Config = {
            "endpoint": item.endpoint_url,
            "region": os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
            "virtual_hosted_style_request": False,
        }
        if key_id and secret:
            config |= {"access_key_id": key_id, "secret_access_key": secret}
        else:
            config["skip_signature"] = True
        return S3Store(
            bucket, config=config, client_options=client_options(item.endpoint_url), retry_config=retry_config()
        )

    return buckets.download("s3", item.buckets, store_for, root, workers)
