"""The downloader against real object-store servers (S3: moto, GCS: fake-gcs-server, Azure Blob: Azurite), run as
the download Job runs it: ``python -m kaiwo.downloader`` on a config file in the ConfigMap's format."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest

from tests.downloader.helpers import grown, kill_when, run
from tests.downloader.servers import ObjectServer, azurite, fake_gcs, moto_s3

MiB = 1024 * 1024


@pytest.fixture(scope="module", params=["s3", "gcs", "azureBlob"])
def store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ObjectServer]:
    tmp = tmp_path_factory.mktemp(request.param)
    server: AbstractContextManager[ObjectServer] = {
        "s3": lambda: moto_s3(),
        "gcs": lambda: fake_gcs(tmp),
        "azureBlob": lambda: azurite(tmp),
    }[request.param]()
    with server as s:
        yield s


def _bucket(store: ObjectServer) -> str:
    name = f"b-{uuid.uuid4().hex[:10]}"
    store.create_bucket(name)
    return name


def _config(store: ObjectServer, tmp: Path, buckets: list[dict[str, Any]], good: bool = True) -> dict[str, Any]:
    return {"downloadRoot": str(tmp / "workload"), store.section: [store.item(buckets, tmp / "secrets", good)]}


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and ".kaiwo" not in p.relative_to(root).parts
    }


def test_file_and_globbed_folder(store: ObjectServer, tmp_path: Path) -> None:
    b = _bucket(store)
    objects = {
        "models/config.json": b'{"layers": 2}',
        "data/train/1.jpg": b"one",
        "data/train/deep/2.jpg": b"two",
        "data/train/notes.txt": b"not an image",
        "data/other/3.jpg": b"another folder",
    }
    for key, data in objects.items():
        store.put(b, key, data)
    bucket = {
        "name": b,
        "files": [{"path": "models/config.json", "targetPath": "model/config.json"}],
        "folders": [{"path": "data/train", "targetPath": "train", "glob": "**/*.jpg"}],
    }
    config = _config(store, tmp_path, [bucket])
    first = run(tmp_path, config)
    assert first.code == 0, first.output
    assert _files(tmp_path / "workload") == {
        "model/config.json": b'{"layers": 2}',
        "train/1.jpg": b"one",
        "train/deep/2.jpg": b"two",
    }
    # A rerun (the Job's pod restarted) finds every file complete and fetches none again.
    again = run(tmp_path, config)
    assert again.code == 0, again.output
    assert again.output.count("up to date, skipped") == 3, again.output


def test_missing_objects_are_named(store: ObjectServer, tmp_path: Path) -> None:
    b = _bucket(store)
    store.put(b, "present.txt", b"here")
    bucket = {
        "name": b,
        "files": [{"path": "weights/missing.bin", "targetPath": "w.bin"}],
        "folders": [{"path": "no-such-folder", "targetPath": "x"}],
    }
    result = run(tmp_path, _config(store, tmp_path, [bucket]))
    assert result.code == 1
    assert f"bucket '{b}' file 'weights/missing.bin': not found" in result.message
    assert f"bucket '{b}' folder 'no-such-folder': no objects found" in result.message
    assert result.last_line == result.message  # the same summary in the log's last line and for the controller


def test_wrong_credentials_fail_without_showing_them(store: ObjectServer, tmp_path: Path) -> None:
    b = _bucket(store)
    store.put(b, "a.txt", b"a")
    bucket = {"name": b, "files": [{"path": "a.txt", "targetPath": "a.txt"}]}
    result = run(tmp_path, _config(store, tmp_path, [bucket], good=False), env={"KAIWO_DOWNLOAD_MAX_RETRIES": "0"})
    assert result.code == 1
    assert f"bucket '{b}'" in result.message, result.output
    for secret in [store.wrong_secret, *store.secrets]:
        assert secret not in result.output
        assert secret not in result.message
    assert not (tmp_path / "workload" / "a.txt").exists()


def test_interrupted_download_resumes(store: ObjectServer, tmp_path: Path) -> None:
    b = _bucket(store)
    data = os.urandom(6 * MiB)
    store.put(b, "big/model.bin", data)
    bucket = {"name": b, "folders": [{"path": "big", "targetPath": "big"}]}
    config = _config(store, tmp_path, [bucket])
    root = tmp_path / "workload"
    store.proxy.rate = 2 * MiB
    try:
        kill_when(tmp_path, config, grown(root, "*.partial", 2 * MiB), {})
    finally:
        store.proxy.rate = None
    assert not (root / "big" / "model.bin").exists()  # never a truncated file at the final path
    time.sleep(0.5)  # the killed run's connection is closed by now: count only the rerun's bytes
    before = store.proxy.received
    result = run(tmp_path, config)
    assert result.code == 0, result.output
    assert (root / "big" / "model.bin").read_bytes() == data
    assert "resumed after" in result.output
    assert store.proxy.received - before < len(data) - 1.5 * MiB  # the rerun fetched only the rest
    assert not list(root.rglob("*.partial"))
