"""Pure parts of the downloader: glob matching, secret redaction, target paths, Azure connection strings, and
that the operator never imports the downloader's dependencies."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kaiwo.api.storage import ValueReference
from kaiwo.downloader import core
from kaiwo.downloader.azure import parse_connection_string, store_config


@pytest.mark.parametrize(
    ("path", "pattern", "want"),
    [
        ("a.jpg", "*.jpg", True),
        ("deep/a.jpg", "*.jpg", False),
        ("deep/a.jpg", "**/*.jpg", True),
        ("a.jpg", "**/*.jpg", True),
        ("x/y/z.txt", "x/**", True),
        ("a1.bin", "a?.bin", True),
        ("ab.bin", "a[!b].bin", False),
        ("anything/at/all", None, True),
    ],
)
def test_glob(path: str, pattern: str | None, want: bool) -> None:
    assert core.matches(path, pattern) is want


def test_secrets_read_from_files_are_redacted(tmp_path: Path) -> None:
    f = tmp_path / "key"
    f.write_text("s3cr3t-value\n")
    assert core.read_secret(ValueReference(secret_name="s", secret_key="k", file=str(f)), "item", "key") == (
        "s3cr3t-value"
    )
    assert core.redact("denied for s3cr3t-value at https://user:pw@host/x") == "denied for *** at https://***@host/x"
    with pytest.raises(core.DownloadError, match="cannot read secret s/missing"):
        core.read_secret(ValueReference(secret_name="s", secret_key="missing", file=str(tmp_path / "no")), "i", "k")


def test_targets_stay_under_the_root(tmp_path: Path) -> None:
    assert core.under(tmp_path, "a/b", "i") == (tmp_path / "a" / "b").resolve()
    with pytest.raises(core.DownloadError, match="leaves the download root"):
        core.under(tmp_path, "../escape", "i")


def test_azure_connection_strings() -> None:
    conn = parse_connection_string(
        "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=a2V5==;EndpointSuffix=core.windows.net"
    )
    assert store_config(conn) == {
        "account_name": "acct",
        "account_key": "a2V5==",
        "endpoint": "https://acct.blob.core.windows.net",
    }
    sas = store_config(parse_connection_string("BlobEndpoint=https://h.example/acct;SharedAccessSignature=sv=1&sig=x"))
    assert sas == {"account_name": "acct", "endpoint": "https://h.example/acct", "sas_key": "sv=1&sig=x"}


def test_the_operator_does_not_import_the_downloader_dependencies() -> None:
    code = (
        "import sys, kaiwo.manager, kaiwo.cli.main; "
        "print(sorted(m for m in ('obstore', 'huggingface_hub') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_resumable_write_continues_its_partial_file_and_drops_older_versions(tmp_path: Path) -> None:
    target = tmp_path / "w.bin"
    core.partial_path(target, "v1").write_bytes(b"old version")
    core.partial_path(target, "v2").write_bytes(b"0123")
    asked: list[int] = []

    def read_from(offset: int) -> list[bytes]:
        asked.append(offset)
        return [b"456789"[offset - 4 :]]

    assert core.write_resumable(target, 10, "v2", read_from) == 6
    assert asked == [4] and target.read_bytes() == b"0123456789"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.bin"]
    assert core.is_complete(target, 10, "v2") and not core.is_complete(target, 11, "v2")
    # A changed object (another ETag) is fetched again where the filesystem keeps the ETag.
    assert core.is_complete(target, 10, "v3") is not core.xattrs_supported(tmp_path)
