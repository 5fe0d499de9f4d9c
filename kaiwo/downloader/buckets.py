"""Files and globbed folders of an object store (S3, GCS, Azure Blob: one code path through obstore).

A bucket's ``files`` are fetched by name (a missing one is an error naming it); a folder lists its prefix and keeps
the keys whose path relative to the folder matches ``glob`` (default: everything below it). A folder with no
matching object is an error too: a workload would otherwise start on missing data. Every object is one job of
the worker pool; reads are streamed in ranged chunks into the partial file (kaiwo.downloader.core).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import obstore
from obstore.exceptions import NotFoundError

from kaiwo.api.storage import CloudDownloadBucket
from kaiwo.downloader.core import (
    DownloadError,
    is_complete,
    matches,
    redact,
    relative_key,
    run_parallel,
    under,
    write_resumable,
)

log = logging.getLogger("kaiwo.downloader")
CHUNK = 1024 * 1024  # bytes per write: what a crash can lose at most

StoreFactory = Callable[[str], Any]  # bucket name -> obstore store


@dataclass(frozen=True)
class ObjectJob:
    item: str  # how errors name it, e.g. "s3 bucket 'data' file 'a/b.bin'"
    store: Any
    key: str
    size: int
    etag: str | None
    dest: Path


def _error(item: str, exc: Exception) -> DownloadError:
    if isinstance(exc, NotFoundError | FileNotFoundError):
        return DownloadError(item, "not found")
    text = redact(str(exc)).strip().splitlines()
    return DownloadError(item, f"{type(exc).__name__}: {text[0] if text else 'failed'}")


def plan(kind: str, bucket: CloudDownloadBucket, store: Any, root: Path) -> tuple[list[ObjectJob], list[DownloadError]]:
    """The objects to fetch from one bucket, and an error for each file or folder that cannot be had."""
    jobs: list[ObjectJob] = []
    errors: list[DownloadError] = []
    for f in bucket.files or []:
        item = f"{kind} bucket {bucket.name!r} file {f.path!r}"
        try:
            dest = under(root, f.target_path, item)
            meta = obstore.head(store, f.path.lstrip("/"))
        except DownloadError as e:
            errors.append(e)
            continue
        except Exception as e:
            errors.append(_error(item, e))
            continue
        jobs.append(ObjectJob(item, store, meta["path"], meta["size"], meta.get("e_tag"), dest))
    for folder in bucket.folders or []:
        item = f"{kind} bucket {bucket.name!r} folder {folder.path!r}" + (
            f" glob {folder.glob!r}" if folder.glob else ""
        )
        prefix = folder.path.strip("/")
        target = under(root, folder.target_path, item)
        found = 0
        try:
            for batch in obstore.list(store, prefix=prefix or None, chunk_size=1000):
                for meta in batch:
                    key = meta["path"]
                    rel = relative_key(key, prefix)
                    if key.endswith("/") or not matches(rel, folder.glob):
                        continue
                    found += 1
                    jobs.append(
                        ObjectJob(
                            f"{kind} bucket {bucket.name!r} object {key!r}",
                            store,
                            key,
                            meta["size"],
                            meta.get("e_tag"),
                            under(target, rel, item),
                        )
                    )
        except DownloadError as e:
            errors.append(e)
        except Exception as e:
            errors.append(_error(item, e))
        else:
            if not found:
                errors.append(DownloadError(item, "no objects found"))
    return jobs, errors


def fetch(job: ObjectJob) -> None:
    if is_complete(job.dest, job.size, job.etag):
        log.info("%s: up to date, skipped", job.item)
        return

    def read_from(offset: int) -> Iterable[bytes | memoryview]:
        options: dict[str, Any] = {"range": {"offset": offset}} if offset else {}
        result = obstore.get(job.store, job.key, options=options)  # type: ignore[arg-type]
        for chunk in result.stream(min_chunk_size=CHUNK):
            yield memoryview(chunk)

    try:
        fetched = write_resumable(job.dest, job.size, job.etag, read_from)
    except Exception as e:
        raise _error(job.item, e) from e
    resumed = job.size - fetched
    log.info("%s: %d bytes%s", job.item, job.size, f" (resumed after {resumed})" if resumed else "")


def download(
    kind: str, buckets: list[CloudDownloadBucket], store_for: StoreFactory, root: Path, workers: int
) -> list[DownloadError]:
    """Download every file and folder of ``buckets``; returns the failures (each names its item)."""
    jobs: list[ObjectJob] = []
    errors: list[DownloadError] = []
    for bucket in buckets:
        try:
            store = store_for(bucket.name)
        except Exception as e:
            errors.append(_error(f"{kind} bucket {bucket.name!r}", e))
            continue
        found, failed = plan(kind, bucket, store, root)
        jobs += found
        errors += failed
    return errors + run_parallel(jobs, fetch, workers)
