"""Hugging Face Hub repositories into the cache under ``HF_HOME`` (``preCacheRepos``), with huggingface_hub.

Whole repositories (optionally narrowed by ``allowPatterns``/``ignorePatterns``) go through
``snapshot_download``; a ``files`` list fetches exactly those files, so a missing one is an error naming it.
``revision`` picks a branch, tag or commit. The hub library resumes its own ``.incomplete`` files and skips
files already in the cache. A token, when needed, comes from ``HF_TOKEN`` in the workload's env (from a Secret).
``HF_ENDPOINT`` points at a mirror.
"""

from __future__ import annotations

from pathlib import Path

from kaiwo.api.storage import HuggingFaceDownloadItem
from kaiwo.downloader.core import DownloadError, log, redact, run_parallel


def _message(exc: Exception) -> str:
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return redact(f"{type(exc).__name__}: {first}")


def download(item: HuggingFaceDownloadItem, hf_home: Path, workers: int) -> list[DownloadError]:
    import huggingface_hub as hub  # after HF_HOME is set: the library reads it on import

    name = f"hf {item.repo_id}" + (f"@{item.revision}" if item.revision else "")
    if item.files:

        def one(file: str) -> None:
            try:
                hub.hf_hub_download(repo_id=item.repo_id, filename=file, revision=item.revision)
            except Exception as e:
                raise DownloadError(f"{name} file {file!r}", _message(e)) from e

        errors = run_parallel(list(item.files), one, workers)
    else:
        try:
            hub.snapshot_download(
                repo_id=item.repo_id,
                revision=item.revision,
                allow_patterns=item.allow_patterns,
                ignore_patterns=item.ignore_patterns,
                max_workers=workers,
            )
            errors = []
        except Exception as e:
            errors = [DownloadError(name, _message(e))]
    if not errors:
        log.info("%s: cached in %s", name, hf_home)
    return errors
