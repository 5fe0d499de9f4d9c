"""Hugging Face Hub repositories into the cache under ``HF_HOME`` (``preCacheRepos``), with huggingface_hub.

Whole repositories (optionally narrowed by ``allowPatterns``/``ignorePatterns``) go through
``snapshot_download``; a ``files`` list fetches exactly those files, so a missing one is an error naming it.
``revision`` picks a branch, tag or commit. The hub library resumes its own ``.incomplete`` files and skips
files already in the cache. A token, when needed, comes from ``HF_TOKEN`` in the workload's env (from a Secret).
``HF_ENDPOINT`` points at a mirror.
"""

from __future__ import annotations

import os
from pathlib import Path

from kaiwo.api.storage import HuggingFaceDownloadItem
from kaiwo.downloader.core import DownloadError, add_secret, log, redact, run_parallel

# The hub library's errors by class name: what the user should read instead of its multi-line text.
_KNOWN = {
    "RepositoryNotFoundError": "repository not found (or private: is HF_TOKEN set and valid?)",
    "RevisionNotFoundError": "revision not found",
    "EntryNotFoundError": "file not found",
    "RemoteEntryNotFoundError": "file not found",
    "GatedRepoError": "gated repository: accept its conditions on the Hub and set HF_TOKEN",
}


def _message(exc: BaseException) -> str:
    """The most specific hub error in ``exc``'s chain (snapshot_download wraps them in a cache-lookup error)."""
    chain: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in chain:
        chain.append(cur)
        cur = cur.__cause__ or cur.__context__
    for e in chain:
        for cls in type(e).__mro__:
            if cls.__name__ in _KNOWN:
                return _KNOWN[cls.__name__]
    for e in chain:
        status = getattr(getattr(e, "response", None), "status_code", None)
        if status in (401, 403):
            return f"access denied ({status}): check HF_TOKEN"
    lines = [ln.strip() for ln in str(chain[-1]).splitlines() if ln.strip()]
    return redact(f"{type(chain[-1]).__name__}: {' '.join(lines[:2]) or 'failed'}")


def download(item: HuggingFaceDownloadItem, hf_home: Path, workers: int) -> list[DownloadError]:
    import huggingface_hub as hub  # after HF_HOME is set: the library reads it on import

    add_secret(os.environ.get("HF_TOKEN"))

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
