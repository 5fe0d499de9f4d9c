"""The download job's configuration: the ``config.yaml`` key of the ``<name>-download`` ConfigMap.

``{downloadRoot, hfHome, s3, gcs, azureBlob, git, hf}`` with the workload API's own models (kaiwo.api.storage)
for the items, so the controller and the job read one schema; every secret reference carries ``file``, the path
of the mounted Secret key.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import Field, ValidationError

from kaiwo.api.base import KaiwoModel
from kaiwo.api.storage import (
    DEFAULT_DATA_MOUNT_PATH,
    AzureBlobStorageDownloadItem,
    GCSDownloadItem,
    GitDownloadItem,
    HuggingFaceDownloadItem,
    S3DownloadItem,
)
from kaiwo.downloader.core import DownloadError


class DownloadConfig(KaiwoModel):
    download_root: str = Field(default=DEFAULT_DATA_MOUNT_PATH)
    hf_home: str | None = None
    s3: list[S3DownloadItem] = Field(default_factory=list)
    gcs: list[GCSDownloadItem] = Field(default_factory=list)
    azure_blob: list[AzureBlobStorageDownloadItem] = Field(default_factory=list)
    git: list[GitDownloadItem] = Field(default_factory=list)
    hf: list[HuggingFaceDownloadItem] = Field(default_factory=list)


def load(path: Path) -> DownloadConfig:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise DownloadError(f"config {path}", f"cannot read: {e}") from e
    try:
        return DownloadConfig.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise DownloadError(f"config {path}", f"{loc}: {first['msg']}") from e
