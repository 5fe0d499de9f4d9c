"""The download cache (docs/downloads.md): workloads that set ``storage.data.cacheDownloads`` and download the
same inputs share one download.

The key hashes everything the download job fetches - the ``s3``/``gcs``/``azureBlob``/``git`` items (endpoints,
buckets, paths, globs, git repository + branch/commit + path), the Hugging Face repos (+ revision, files,
patterns), the names of the Secrets used (other credentials may see other data) and the mount paths (the
layout on the volumes). Equal keys in one namespace share, instead of ``<name>-data``/``<name>-hf`` and
``<name>-download``:

- PVCs ``kaiwo-cache-<key>`` (data) and ``kaiwo-cache-<key>-hf`` (Hugging Face cache), mounted read-only in
  the workloads (a workload must not change what others read);
- ConfigMap and Job ``kaiwo-cache-<key>``: one download, gating every workload with that key.

These objects have no owner: they outlive the workloads (that is the point) and are removed by deleting them
(label ``kaiwo.silogen.ai/cache-key``). Their ``kaiwo.silogen.ai/run-id`` label is ``cache-<key>``, so the
controller's caches see them.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from kaiwo.api.base import wire
from kaiwo.api.storage import StorageSpec

PREFIX = "kaiwo-cache-"
KEY_LABEL = "kaiwo.silogen.ai/cache-key"


def cache_key(storage: StorageSpec | None, data_path: str, hf_path: str) -> str | None:
    """The key of a cached download, or None when the workload does not use the cache."""
    if storage is None or not storage.has_downloads() or not (storage.data and storage.data.cache_downloads):
        return None
    download: Any = wire(storage.data.download) if storage.data.download else {}
    hf = storage.hugging_face
    identity = {
        "download": download,
        "hf": [wire(r) for r in (hf.pre_cache_repos or [])] if hf else [],
        "paths": [data_path, hf_path],
    }
    return hashlib.sha256(orjson.dumps(identity, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


def name(key: str) -> str:
    return f"{PREFIX}{key}"


def claims(workload: str, storage: StorageSpec | None, data_path: str, hf_path: str) -> tuple[str, str, str | None]:
    """(data PVC, Hugging Face PVC, cache key or None) of a workload."""
    key = cache_key(storage, data_path, hf_path)
    if key is None:
        return f"{workload}-data", f"{workload}-hf", None
    return name(key), f"{name(key)}-hf", key


def shared_meta(namespace: str | None, obj_name: str, key: str, labels: dict[str, str]) -> dict[str, Any]:
    """Metadata of a shared cache object: no owner, the cache key and a run-id the controller's caches select."""
    meta: dict[str, Any] = {"name": obj_name}
    if namespace:
        meta["namespace"] = namespace
    meta["labels"] = dict(
        sorted(
            {
                **labels,
                KEY_LABEL: key,
                "kaiwo.silogen.ai/run-id": f"cache-{key}",
                "kaiwo.silogen.ai/type": "downloader",
            }.items()
        )
    )
    return meta
