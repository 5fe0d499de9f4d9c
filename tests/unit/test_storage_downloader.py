"""The controller side of downloads: the downloader image (flag, environment, KaiwoConfig), the FAILED message
taken from the downloader's termination message, and that the downloader reads every ConfigMap we render."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kaiwo import manager
from kaiwo.api.storage import StorageSpec
from kaiwo.downloader import config as dl_config
from kaiwo.translate import downloadcache, storage
from kaiwo.translate.workload import desired_children
from tests import golden


def test_downloader_image_defaults_to_the_operator_image(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KAIWO_DOWNLOADER_IMAGE", raising=False)
    assert manager.parse([]).downloader_image == storage.DOWNLOADER_IMAGE
    assert storage.DOWNLOADER_IMAGE.startswith("ghcr.io/silogen/kaiwo-operator:")
    monkeypatch.setenv("KAIWO_DOWNLOADER_IMAGE", "mirror.local/kaiwo:1")
    assert manager.parse([]).downloader_image == "mirror.local/kaiwo:1"
    assert manager.parse(["--downloader-image", "other/kaiwo:2"]).downloader_image == "other/kaiwo:2"


def test_empty_downloader_image_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        manager.parse(["--downloader-image", " "])
    assert "--downloader-image must not be empty" in capsys.readouterr().err


def _job() -> dict[str, object]:
    return {"metadata": {"name": "w-download"}}


def _pod(job: str, message: str | None) -> dict[str, object]:
    terminated = {"exitCode": 1, **({"message": message} if message else {})}
    return {
        "metadata": {"labels": {"batch.kubernetes.io/job-name": job}},
        "status": {"containerStatuses": [{"name": "downloader", "state": {"terminated": terminated}}]},
    }


def test_failure_message_comes_from_the_downloader() -> None:
    msg = "download failed: s3 bucket 'b' file 'x': not found"
    assert storage.download_failure(_job(), [_pod("other-download", "no"), _pod("w-download", msg)], "fb") == msg
    assert storage.download_failure(_job(), [_pod("w-download", None)], "BackoffLimitExceeded") == (
        "BackoffLimitExceeded"
    )


@pytest.mark.parametrize("case", golden.TRANSLATE_CASES)
def test_the_downloader_reads_every_rendered_config(case: str, tmp_path: Path) -> None:
    out = desired_children(*golden.translate_input(case))
    maps = [o for o in getattr(out, "storage", ()) if o["kind"] == "ConfigMap"]
    for cm in maps:
        path = tmp_path / "config.yaml"
        path.write_text(cm["data"][storage.CONFIG_KEY])
        rendered = yaml.safe_load(path.read_text())
        loaded = dl_config.load(path)
        for key, items in (("s3", loaded.s3), ("gcs", loaded.gcs), ("azureBlob", loaded.azure_blob)):
            assert len(items) == len(rendered.get(key) or [])
            refs = [r for i in items for r in (getattr(i, f) for f in type(i).model_fields) if hasattr(r, "file")]
            assert all(r.file and r.file.startswith(storage.SECRETS_ROOT) for r in refs if r is not None)
        assert len(loaded.git) == len(rendered.get("git") or [])
        assert len(loaded.hf) == len(rendered.get("hf") or [])


def _storage(commit: str, cache: bool = True) -> StorageSpec:
    return StorageSpec.model_validate(
        {
            "storageEnabled": True,
            "data": {
                "storageSize": "1Gi",
                "cacheDownloads": cache,
                "download": {"git": [{"repository": "https://h/r.git", "commit": commit, "targetPath": "r"}]},
            },
        }
    )


def test_cache_key_is_the_inputs_not_the_workload() -> None:
    a = downloadcache.claims("first", _storage("c1"), "/workload", "/hf_cache")
    b = downloadcache.claims("second", _storage("c1"), "/workload", "/hf_cache")
    assert a == b and a[2] is not None and a[0] == f"kaiwo-cache-{a[2]}"
    assert downloadcache.claims("first", _storage("c2"), "/workload", "/hf_cache")[2] != a[2]  # another revision
    assert downloadcache.claims("first", _storage("c1"), "/data", "/hf_cache")[2] != a[2]  # another layout
    assert downloadcache.claims("w", _storage("c1", cache=False), "/workload", "/hf_cache") == (
        "w-data",
        "w-hf",
        None,
    )
