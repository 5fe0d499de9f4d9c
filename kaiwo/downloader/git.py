"""Git repositories through the git CLI: a branch or tag (``branch``), or a commit (``commit``), optionally only
the folder ``path``, into ``targetPath``.

- A branch or tag is a shallow clone; a commit is a shallow fetch of that commit (servers that refuse to hand
  out unadvertised commits get a full fetch instead).
- Credentials (``username``, ``token``) go to git as an HTTP Authorization header through ``GIT_CONFIG_*``
  environment variables: never in the URL, the command line or the log. A token alone is sent as the user name
  (what GitHub and GitLab accept for personal access tokens).
- The clone lands in a temporary folder under the download root and is moved into place when complete. The
  resolved commit is recorded in ``<root>/.kaiwo/git/``; a rerun with the target present and the same request
  skips the clone.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from kaiwo.api.storage import GitDownloadItem
from kaiwo.downloader.core import STATE_DIR, DownloadError, log, read_secret, redact, under

TIMEOUT = float(os.environ.get("KAIWO_GIT_TIMEOUT", "1800"))


def _env(auth: str | None) -> dict[str, str]:
    env = dict(os.environ, GIT_TERMINAL_PROMPT="0", GIT_ASKPASS="true", LC_ALL="C")
    if auth:
        env |= {
            "GIT_CONFIG_COUNT": "1",
            "GIT_CONFIG_KEY_0": "http.extraHeader",
            "GIT_CONFIG_VALUE_0": f"Authorization: Basic {auth}",
        }
    return env


def _git(item: str, args: list[str], cwd: Path, env: dict[str, str]) -> str:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired as e:
        raise DownloadError(item, f"git {args[0]} timed out after {TIMEOUT:.0f}s") from e
    if done.returncode != 0:
        lines = [ln for ln in done.stderr.strip().splitlines() if ln.startswith(("fatal:", "error:", "remote:"))]
        raise DownloadError(item, redact("; ".join(lines) or done.stderr.strip()[-500:] or f"git {args[0]} failed"))
    return done.stdout


def download(item: GitDownloadItem, root: Path, workers: int) -> list[DownloadError]:
    ref = item.branch or item.commit
    name = f"git {redact(item.repository)}" + (f" {ref}" if ref else "") + (f" path {item.path!r}" if item.path else "")
    try:
        _clone(item, name, root)
    except DownloadError as e:
        return [e]
    return []


def _clone(item: GitDownloadItem, name: str, root: Path) -> None:
    user = read_secret(item.username, name, "username")
    token = read_secret(item.token, name, "token")
    auth = None
    if token or user:
        pair = f"{user}:{token or ''}" if user else f"{token}:"
        auth = base64.b64encode(pair.encode()).decode()
    env = _env(auth)
    target = under(root, item.target_path, name)
    request = f"{item.repository}\n{item.branch}\n{item.commit}\n{item.path}\n{item.target_path}"
    stamp = root / STATE_DIR / "git" / hashlib.sha256(request.encode()).hexdigest()[:16]
    if stamp.exists() and target.exists():
        log.info("%s: already at %s, skipped", name, stamp.read_text().strip())
        return
    (root / STATE_DIR).mkdir(parents=True, exist_ok=True)
    for stale in (root / STATE_DIR).glob("git-*"):  # a clone killed half-way (one download job at a time)
        shutil.rmtree(stale, ignore_errors=True)
    with tempfile.TemporaryDirectory(dir=root / STATE_DIR, prefix="git-") as tmp:
        work = Path(tmp) / "repo"
        if item.branch or not item.commit:
            branch = ["--branch", item.branch] if item.branch else []
            _git(name, ["clone", "--quiet", "--depth", "1", *branch, "--", item.repository, str(work)], Path(tmp), env)
        else:
            work.mkdir()
            _git(name, ["init", "--quiet"], work, env)
            _git(name, ["remote", "add", "origin", item.repository], work, env)
            try:
                _git(name, ["fetch", "--quiet", "--depth", "1", "origin", item.commit], work, env)
            except DownloadError:
                _git(name, ["fetch", "--quiet", "origin"], work, env)  # the server refuses fetches by commit id
            _git(name, ["checkout", "--quiet", "--detach", item.commit], work, env)
        commit = _git(name, ["rev-parse", "HEAD"], work, env).strip()
        source = work / item.path.strip("/") if item.path else work
        if item.path and not (source.exists() and source.resolve().is_relative_to(work.resolve())):
            raise DownloadError(name, f"path {item.path!r} not found in the repository at {commit[:12]}")
        if source.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
        else:
            target.mkdir(parents=True, exist_ok=True)
            shutil.copytree(source, target, dirs_exist_ok=True, symlinks=True)
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(commit + "\n")
    log.info("%s: checked out %s into %s", name, commit[:12], target)
