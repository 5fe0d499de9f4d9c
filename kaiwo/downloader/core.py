"""What every source shares: errors that name the item, secrets read from mounted files (and kept out of every
message), files written under a temporary name and renamed when complete, and a bounded worker pool.

Resumability: a finished file is renamed into place only when complete, so a file at its final path is whole.
Object-store files record the object's ETag in the extended attribute ``user.kaiwo.etag`` (where the filesystem
has extended attributes), so a rerun skips files whose size and ETag match and re-fetches changed objects.
Unfinished files keep their bytes in ``.<name>.<etag-hash>.partial`` next to the target; a rerun continues
them with a ranged read when the object still has that ETag.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path, PurePosixPath
from typing import TypeVar

from kaiwo.api.storage import ValueReference

log = logging.getLogger("kaiwo.downloader")
T = TypeVar("T")

ETAG_XATTR = "user.kaiwo.etag"
STATE_DIR = ".kaiwo"  # bookkeeping under the download root (git revisions); never a user's target
_secrets: set[str] = set()


class DownloadError(Exception):
    """A download that failed; ``item`` names what (source, bucket/repo, path) so the user can find it."""

    def __init__(self, item: str, message: str) -> None:
        super().__init__(f"{item}: {message}")
        self.item = item
        self.message = message


def redact(text: str) -> str:
    """``text`` with every secret value read so far replaced by ``***`` (errors of libraries may echo input)."""
    for value in sorted(_secrets, key=len, reverse=True):
        text = text.replace(value, "***")
    return re.sub(r"(://)[^/@\s]+@", r"\1***@", text)  # credentials written into a URL's user info


def add_secret(value: str | None) -> None:
    """Keep ``value`` out of every message from now on."""
    if value:
        _secrets.add(value)


def read_secret(ref: ValueReference | None, item: str, what: str) -> str | None:
    """The value of a mounted secret key; the controller sets ``file`` for every reference it mounts."""
    if ref is None:
        return None
    if not ref.file:
        raise DownloadError(item, f"{what}: no secret file (secretName/secretKey not set)")
    try:
        value = Path(ref.file).read_text().strip()
    except OSError as e:
        raise DownloadError(item, f"{what}: cannot read secret {ref.secret_name}/{ref.secret_key}: {e.strerror}") from e
    add_secret(value)
    return value


def under(root: Path, relative: str, item: str) -> Path:
    """``root / relative``, refusing paths that leave ``root`` (``..``, absolute paths)."""
    path = (root / relative.lstrip("/")).resolve()
    if path != root.resolve() and root.resolve() not in path.parents:
        raise DownloadError(item, f"target path {relative!r} leaves the download root")
    return path


def glob_regex(pattern: str) -> re.Pattern[str]:
    """A shell-style glob over ``/``-separated relative paths: ``*`` and ``?`` stay in one segment, ``**``
    spans segments (``**/`` also matches no segment), ``[...]`` is a character class."""
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1 : end].replace("\\", "\\\\")
                out.append("[^" + body[1:] + "]" if body.startswith("!") else "[" + body + "]")
                i = end
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out) + r"\Z")


def matches(relative: str, pattern: str | None) -> bool:
    return pattern is None or bool(glob_regex(pattern).match(relative))


def relative_key(key: str, prefix: str) -> str:
    return str(PurePosixPath(key).relative_to(PurePosixPath(prefix))) if prefix.strip("/") else key


def recorded_etag(path: Path) -> str | None:
    try:
        return os.getxattr(path, ETAG_XATTR).decode()
    except OSError:
        return None


def record_etag(path: Path, etag: str | None) -> None:
    if etag:
        # Without extended attributes (some NFS), reruns compare sizes only.
        with contextlib.suppress(OSError):
            os.setxattr(path, ETAG_XATTR, etag.encode())


def xattrs_supported(folder: Path) -> bool:
    probe = folder / ".kaiwo-xattr-probe"
    try:
        probe.touch()
        os.setxattr(probe, ETAG_XATTR, b"x")
        return True
    except OSError:
        return False
    finally:
        probe.unlink(missing_ok=True)


def is_complete(path: Path, size: int, etag: str | None) -> bool:
    """A file at its final path is whole (renamed into place); it is current when size and ETag match."""
    try:
        if path.stat().st_size != size:
            return False
    except FileNotFoundError:
        return False
    have = recorded_etag(path)
    return have == etag if have is not None or xattrs_supported(path.parent) else True


def glob_escape(name: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", name)


def partial_path(path: Path, etag: str | None) -> Path:
    tag = hashlib.sha256((etag or "").encode()).hexdigest()[:12]
    return path.parent / f".{path.name}.{tag}.partial"


def write_resumable(
    path: Path, size: int, etag: str | None, read_from: Callable[[int], Iterable[bytes | memoryview]]
) -> int:
    """Write an object of ``size`` bytes to ``path`` through its partial file, continuing the partial file's
    bytes with ``read_from(offset)``; returns the number of bytes fetched now."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = partial_path(path, etag)
    for stale in path.parent.glob(f".{glob_escape(path.name)}.*.partial"):  # of an older version of the object
        if stale != partial:
            stale.unlink(missing_ok=True)
    offset = partial.stat().st_size if partial.exists() else 0
    if offset > size:
        partial.unlink()
        offset = 0
    fetched = 0
    if offset < size:
        with open(partial, "ab") as f:
            for chunk in read_from(offset):
                f.write(chunk)
                fetched += len(chunk)
    else:
        partial.touch()
    got = partial.stat().st_size
    if got != size:
        raise OSError(f"got {got} bytes, expected {size}")
    record_etag(partial, etag)
    os.replace(partial, path)
    return fetched


def run_parallel(jobs: list[T], work: Callable[[T], None], workers: int) -> list[DownloadError]:
    """Run ``work`` on every job with at most ``workers`` threads; every failure comes back as a DownloadError."""
    errors: list[DownloadError] = []
    if not jobs:
        return errors
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(jobs)))) as pool:
        futures = [pool.submit(work, job) for job in jobs]
        for future in as_completed(futures):
            exc = future.exception()
            if isinstance(exc, DownloadError):
                errors.append(exc)
            elif exc is not None:
                errors.append(DownloadError("download", redact(str(exc))))
    return errors
