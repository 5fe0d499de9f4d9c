"""Hugging Face pre-caching against a local hub (HF_ENDPOINT): whole repositories with patterns and revisions,
single files, missing items, a wrong token, and a download killed half-way and resumed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.downloader.helpers import ThrottleProxy, grown, kill_when, run
from tests.downloader.hfhub import REPO, TOKEN, TinyHub

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TinyHub, ThrottleProxy]]:
    server = TinyHub(tmp_path_factory.mktemp("hub"))
    proxy = ThrottleProxy(server.port)
    yield server, proxy
    proxy.close()
    server.close()


def _env(proxy: ThrottleProxy, token: str = TOKEN) -> dict[str, str]:
    return {"HF_ENDPOINT": proxy.url, "HF_TOKEN": token, "HF_HUB_ETAG_TIMEOUT": "5", "HF_HUB_DISABLE_XET": "1"}


def _config(tmp: Path, *repos: dict[str, Any]) -> dict[str, Any]:
    return {"downloadRoot": str(tmp / "workload"), "hfHome": str(tmp / "hf"), "hf": list(repos)}


def _snapshot(tmp: Path, revision: str) -> dict[str, bytes]:
    folder = tmp / "hf" / "hub" / f"models--{REPO.replace('/', '--')}" / "snapshots" / revision
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_repository_with_patterns_and_revisions(hub: tuple[TinyHub, ThrottleProxy], tmp_path: Path) -> None:
    server, proxy = hub
    config = _config(
        tmp_path,
        {"repoId": REPO, "allowPatterns": ["*.json", "tokenizer/*"], "ignorePatterns": ["config.json"]},
        {"repoId": REPO, "revision": "v1"},
        {"repoId": REPO, "files": ["README.md"]},
    )
    result = run(tmp_path, config, env=_env(proxy))
    assert result.code == 0, result.output
    assert _snapshot(tmp_path, server.refs["main"]) == {"tokenizer/vocab.txt": b"a\nb\n", "README.md": b"# tiny v2"}
    assert _snapshot(tmp_path, server.refs["v1"]) == {"config.json": b'{"v": 1}', "README.md": b"# tiny v1"}


def test_missing_items_are_named(hub: tuple[TinyHub, ThrottleProxy], tmp_path: Path) -> None:
    _, proxy = hub
    config = _config(
        tmp_path,
        {"repoId": "kaiwo-tests/no-such-model"},
        {"repoId": REPO, "revision": "no-such-branch"},
        {"repoId": REPO, "files": ["weights/missing.bin"]},
    )
    result = run(tmp_path, config, env=_env(proxy))
    assert result.code == 1
    assert "hf kaiwo-tests/no-such-model: repository not found" in result.message, result.output
    assert f"hf {REPO}@no-such-branch: revision not found" in result.message
    assert f"hf {REPO} file 'weights/missing.bin': file not found" in result.message
    assert result.last_line == result.message


def test_wrong_token_fails_without_showing_it(hub: tuple[TinyHub, ThrottleProxy], tmp_path: Path) -> None:
    _, proxy = hub
    wrong = "hf_wrongTokenValueAlsoNeverPrinted"
    result = run(tmp_path, _config(tmp_path, {"repoId": REPO}), env=_env(proxy, wrong))
    assert result.code == 1
    assert f"hf {REPO}: " in result.message
    assert wrong not in result.output and TOKEN not in result.output and wrong not in result.message


def test_interrupted_download_keeps_finished_files(hub: tuple[TinyHub, ThrottleProxy], tmp_path: Path) -> None:
    """The hub library restarts an unfinished file from its first byte (its partial files are per process), so
    what survives a crash is every finished file: the rerun fetches only what was missing."""
    server, proxy = hub
    shards = ["model-00001.safetensors", "model-00002.safetensors"]
    config = _config(tmp_path, {"repoId": REPO, "files": shards})
    repo = tmp_path / "hf" / "hub" / f"models--{REPO.replace('/', '--')}"
    blobs, snapshots = repo / "blobs", repo / "snapshots"

    def first_done_second_half_way() -> bool:
        # A file is finished once the hub library links it into a snapshot; a bare name in blobs/ is not enough
        # (the library also keeps temporary files there, which made this test flaky under load).
        done = [p for p in snapshots.rglob("*") if p.is_file()] if snapshots.exists() else []
        return bool(done) and grown(blobs, "*.incomplete", 10 * MiB)()

    proxy.rate = 8 * MiB
    try:
        kill_when(tmp_path, config, first_done_second_half_way, _env(proxy), workers=1)
    finally:
        proxy.rate = None
    # What the crash left, for the message below.
    left = sorted((b.name, b.stat().st_size) for b in blobs.iterdir() if b.is_file())
    rerun = ThrottleProxy(server.port)  # its own byte count, untouched by the killed run's last packets
    try:
        result = run(tmp_path, config, env=_env(rerun))
    finally:
        rerun.close()
    assert result.code == 0, result.output
    files = server.revisions[server.refs["main"]]
    assert _snapshot(tmp_path, server.refs["main"]) == {s: files[s] for s in shards}
    assert rerun.received < 13 * MiB, (left, result.output[-2000:])  # one 12 MiB shard again, not both
