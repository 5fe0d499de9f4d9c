"""Git downloads from a local smart-HTTP server (git http-backend) that requires credentials: branch, tag and
commit checkouts with a sub-path, missing refs and paths, wrong credentials, and a rerun after a crash."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.downloader.gitserver import TOKEN, USER, GitServer
from tests.downloader.helpers import kill_when, run


@pytest.fixture(scope="module")
def git(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitServer]:
    server = GitServer(tmp_path_factory.mktemp("git"))
    yield server
    server.close()


def _secret(tmp: Path, key: str, value: str) -> dict[str, str]:
    path = tmp / "secrets" / "git" / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(value)
    return {"secretName": "git", "secretKey": key, "file": str(path)}


def _item(git: GitServer, tmp: Path, target: str, token: str = TOKEN, **ref: str) -> dict[str, Any]:
    return {
        "repository": git.url,
        "username": _secret(tmp, "user", USER),
        "token": _secret(tmp, f"token-{target}", token),
        "targetPath": target,
        **ref,
    }


def _config(tmp: Path, *items: dict[str, Any]) -> dict[str, Any]:
    return {"downloadRoot": str(tmp / "workload"), "git": list(items)}


def test_branch_tag_and_commit_with_sub_path(git: GitServer, tmp_path: Path) -> None:
    root = tmp_path / "workload"
    config = _config(
        tmp_path,
        _item(git, tmp_path, "main", branch="main"),
        _item(git, tmp_path, "tag", branch="v1", path="src/model"),
        _item(git, tmp_path, "commit", commit=git.first, path="src/model/config.json"),
        _item(git, tmp_path, "dev-branch", branch="dev", path="src"),
    )
    result = run(tmp_path, config)
    assert result.code == 0, result.output
    assert (root / "main" / "src" / "model" / "config.json").read_text() == '{"v": 2}\n'
    assert (root / "main" / "README.md").exists()
    assert (root / "tag" / "config.json").read_text() == '{"v": 1}\n'
    assert not (root / "tag" / "README.md").exists()
    assert (root / "commit").read_text() == '{"v": 1}\n'
    assert (root / "dev-branch" / "model" / "config.json").read_text() == '{"v": 1}\n'
    assert TOKEN not in result.output
    # A rerun finds every checkout in place and asks the server nothing.
    asked = git.requests
    again = run(tmp_path, config)
    assert again.code == 0, again.output
    assert git.requests == asked


def test_missing_ref_and_path_are_named(git: GitServer, tmp_path: Path) -> None:
    config = _config(
        tmp_path,
        _item(git, tmp_path, "a", branch="no-such-branch"),
        _item(git, tmp_path, "b", branch="main", path="no/such/folder"),
    )
    result = run(tmp_path, config)
    assert result.code == 1
    assert f"git {git.url} no-such-branch: " in result.message and "no-such-branch" in result.message
    assert f"git {git.url} main path 'no/such/folder': path 'no/such/folder' not found" in result.message
    assert result.last_line == result.message


def test_wrong_credentials_fail_without_showing_them(git: GitServer, tmp_path: Path) -> None:
    wrong = "glpat-wrongTokenNeverPrinted"
    result = run(tmp_path, _config(tmp_path, _item(git, tmp_path, "x", token=wrong, branch="main")))
    assert result.code == 1
    assert f"git {git.url} main: " in result.message
    assert "Authentication failed" in result.message or "401" in result.message, result.message
    assert wrong not in result.output and wrong not in result.message
    assert not (tmp_path / "workload" / "x").exists()


def test_rerun_after_a_crash_converges(git: GitServer, tmp_path: Path) -> None:
    """A clone killed while the server hangs leaves a temporary folder under .kaiwo/; the rerun clears it and
    clones."""
    root = tmp_path / "workload"
    config = _config(tmp_path, _item(git, tmp_path, "main", branch="main"))
    git.stall.set()
    try:
        kill_when(tmp_path, config, lambda: git.stalled > 0 and any((root / ".kaiwo").glob("git-*")), {})
    finally:
        git.stall.clear()
    assert list((root / ".kaiwo").glob("git-*")) and not (root / "main").exists()
    result = run(tmp_path, config)
    assert result.code == 0, result.output
    assert (root / "main" / "src" / "model" / "config.json").read_text() == '{"v": 2}\n'
    assert not list((root / ".kaiwo").glob("git-*"))
