"""Storage for KaiwoJob and KaiwoService (`spec.storage`): PVCs and the download job that fills them.

Shapes, names and defaults are upstream Kaiwo's (docs/design/upstream.md#storage-spec). What is required here and was
optional upstream is what the download job cannot work without (an S3 download without an endpoint, a git
download without a repository, ...). Two deliberate differences (docs/design/decisions.md D10): `data.mountPath` and
`huggingFace.mountPath` have no CRD default, so that KaiwoConfig `spec.storage.defaultDataMountPath` /
`defaultHfMountPath` (`/workload`, `/hf_cache`) apply when they are not set; use ``data_mount_path()`` /
``hf_mount_path()`` to resolve them.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from kaiwo.api.base import KaiwoModel
from kaiwo.api.types import DnsSubdomain, QuantityString

DEFAULT_DATA_MOUNT_PATH = "/workload"
DEFAULT_HF_MOUNT_PATH = "/hf_cache"


class AccessMode(StrEnum):
    """PersistentVolumeClaim access modes."""

    READ_WRITE_ONCE = "ReadWriteOnce"
    READ_ONLY_MANY = "ReadOnlyMany"
    READ_WRITE_MANY = "ReadWriteMany"
    READ_WRITE_ONCE_POD = "ReadWriteOncePod"


class ValueReference(KaiwoModel):
    """A secret value used by a download (credentials): a key of a Secret in the workload's namespace."""

    secret_name: DnsSubdomain | None = Field(default=None, description="Name of the Secret that holds the value.")
    secret_key: str | None = Field(default=None, description="Key of the value inside the Secret.")
    file: str | None = Field(
        default=None,
        description="Set by Kaiwo: where the download job finds the value (`/app/secrets/<secretName>/<secretKey>`).",
    )


class CloudDownloadFile(KaiwoModel):
    """One file to download from a bucket or container."""

    path: str = Field(min_length=1, description='Path of the file in the bucket, e.g. "models/model.bin".')
    target_path: str = Field(
        min_length=1,
        description="Where to save it, relative to the data volume's mount path (including the file name).",
    )


class CloudDownloadFolder(KaiwoModel):
    """A folder (prefix) to download from a bucket or container."""

    path: str = Field(min_length=1, description='The folder (prefix) in the bucket, e.g. "data/images/".')
    target_path: str = Field(
        min_length=1,
        description="Where to put its contents, relative to the data volume's mount path.",
    )
    glob: str | None = Field(default=None, description='Only download files matching this pattern, e.g. "*.jpg".')


class CloudDownloadBucket(KaiwoModel):
    """A bucket (S3, GCS) or container (Azure) and what to download from it."""

    name: str = Field(min_length=1, description="Name of the bucket or container.")
    files: list[CloudDownloadFile] | None = Field(default=None, description="Single files to download.")
    folders: list[CloudDownloadFolder] | None = Field(default=None, description="Folders to download.")


class S3DownloadItem(KaiwoModel):
    """Downloads from an S3-compatible object store (AWS S3, MinIO, ...)."""

    endpoint_url: str = Field(
        min_length=1, description='The S3 endpoint, e.g. "https://s3.us-east-1.amazonaws.com" or a MinIO URL.'
    )
    access_key_id: ValueReference | None = Field(default=None, description="Secret holding the access key ID.")
    secret_key: ValueReference | None = Field(default=None, description="Secret holding the secret access key.")
    buckets: list[CloudDownloadBucket] = Field(description="Buckets and the files and folders to take from them.")


class GCSDownloadItem(KaiwoModel):
    """Downloads from Google Cloud Storage."""

    application_credentials: ValueReference = Field(
        description="Secret holding the service-account key (JSON) used to read the buckets."
    )
    buckets: list[CloudDownloadBucket] = Field(description="Buckets and the files and folders to take from them.")


class AzureBlobStorageDownloadItem(KaiwoModel):
    """Downloads from Azure Blob Storage."""

    connection_string: ValueReference = Field(description="Secret holding the storage account connection string.")
    containers: list[CloudDownloadBucket] = Field(description="Containers and the files and folders to take from them.")


class GitDownloadItem(KaiwoModel):
    """A git repository (or a folder of it) to clone into the data volume."""

    repository: str = Field(min_length=1, description='Repository URL, e.g. "https://github.com/org/repo.git".')
    branch: str | None = Field(default=None, description="Branch to check out (takes precedence over `commit`).")
    commit: str | None = Field(default=None, description="Commit to check out when no branch is given.")
    username: ValueReference | None = Field(
        default=None,
        description="Secret holding the user name, for private repositories.",
    )
    token: ValueReference | None = Field(
        default=None,
        description="Secret holding a token or password, for private repositories.",
    )
    path: str | None = Field(default=None, description="Only copy this folder of the repository (default: all of it).")
    target_path: str = Field(min_length=1, description="Where to put it, relative to the data volume's mount path.")


class ObjectStorageDownloadSpec(KaiwoModel):
    """What to download into the data volume before the workload starts."""

    s3: list[S3DownloadItem] | None = Field(default=None, description="Downloads from S3-compatible stores.")
    gcs: list[GCSDownloadItem] | None = Field(default=None, description="Downloads from Google Cloud Storage.")
    azure_blob: list[AzureBlobStorageDownloadItem] | None = Field(
        default=None,
        description="Downloads from Azure Blob Storage.",
    )
    git: list[GitDownloadItem] | None = Field(default=None, description="Git repositories to clone.")

    def has_items(self) -> bool:
        return bool(self.s3 or self.gcs or self.azure_blob or self.git)


class DataStorageSpec(KaiwoModel):
    """The data volume: a PVC named `<workload name>-data`, mounted in every container."""

    mount_path: str | None = Field(
        default=None,
        description="Where the data volume is mounted in the containers (default: KaiwoConfig "
        "`spec.storage.defaultDataMountPath`, which is `/workload`).",
    )
    storage_size: QuantityString | None = Field(
        default=None,
        description='Size of the data PVC, e.g. "100Gi". Without it no data volume is created and '
        "`download` is ignored.",
    )
    download: ObjectStorageDownloadSpec | None = Field(
        default=None,
        description="Data to download into the volume before the workload starts (by a separate download job).",
    )
    cache_downloads: bool | None = Field(
        default=None,
        description="Share the downloads with other workloads of the namespace that download the same inputs: "
        "the first one downloads into a shared volume, later ones start without downloading. The data and "
        "Hugging Face volumes are then shared and mounted read-only, and outlive the workload (see the "
        "download cache in docs/downloads.md).",
    )


class HuggingFaceDownloadItem(KaiwoModel):
    """A Hugging Face Hub repository to pre-download into the cache."""

    repo_id: str = Field(min_length=1, description='Repository ID, e.g. "meta-llama/Llama-3.1-8B-Instruct".')
    files: list[str] | None = Field(default=None, description="Only these files (default: the whole repository).")
    revision: str | None = Field(
        default=None, description="Branch, tag or commit to download (default: the repository's main branch)."
    )
    allow_patterns: list[str] | None = Field(
        default=None, description='Only files matching one of these glob patterns, e.g. "*.safetensors".'
    )
    ignore_patterns: list[str] | None = Field(
        default=None, description='Skip files matching one of these glob patterns, e.g. "*.bin".'
    )


class HfStorageSpec(KaiwoModel):
    """The Hugging Face cache volume: a PVC named `<workload name>-hf`; `HF_HOME` points at it."""

    mount_path: str | None = Field(
        default=None,
        description="Where the cache is mounted; also exported as `HF_HOME` (default: KaiwoConfig "
        "`spec.storage.defaultHfMountPath`, which is `/hf_cache`).",
    )
    storage_size: QuantityString | None = Field(
        default=None, description='Size of the cache PVC, e.g. "200Gi". Without it no cache volume is created.'
    )
    pre_cache_repos: list[HuggingFaceDownloadItem] | None = Field(
        default=None, description="Models and datasets to download into the cache before the workload starts."
    )


class StorageSpec(KaiwoModel):
    """Persistent storage for the workload (PVCs) and data to download into it before it starts."""

    storage_enabled: bool | None = Field(
        default=None, description="Must be `true` for anything in `storage` to take effect."
    )
    storage_class_name: str | None = Field(
        default=None,
        description="StorageClass of the PVCs (default: KaiwoConfig `spec.storage.defaultStorageClass`, "
        "then the cluster's default class).",
    )
    access_mode: AccessMode = Field(
        default=AccessMode.READ_WRITE_MANY,
        description="Access mode of the PVCs. Use ReadWriteMany when more than one "
        "pod uses the volume, including the download job, which may run on another node.",
    )
    data: DataStorageSpec | None = Field(default=None, description="The data volume and what to download into it.")
    hugging_face: HfStorageSpec | None = Field(
        default=None,
        description="The Hugging Face cache volume and what to pre-download.",
    )

    def has_data(self) -> bool:
        return bool(self.storage_enabled and self.data and self.data.storage_size)

    def has_object_downloads(self) -> bool:
        return bool(self.has_data() and self.data and self.data.download and self.data.download.has_items())

    def has_hf_downloads(self) -> bool:
        return bool(self.storage_enabled and self.hugging_face and self.hugging_face.pre_cache_repos)

    def has_downloads(self) -> bool:
        return self.has_object_downloads() or self.has_hf_downloads()


def data_mount_path(storage: StorageSpec, config_default: str | None = None) -> str:
    """The data volume's mount path: the workload's, else KaiwoConfig's, else `/workload`."""
    return (storage.data and storage.data.mount_path) or config_default or DEFAULT_DATA_MOUNT_PATH


def hf_mount_path(storage: StorageSpec, config_default: str | None = None) -> str:
    """The Hugging Face cache mount path: the workload's, else KaiwoConfig's, else `/hf_cache`."""
    return (storage.hugging_face and storage.hugging_face.mount_path) or config_default or DEFAULT_HF_MOUNT_PATH
