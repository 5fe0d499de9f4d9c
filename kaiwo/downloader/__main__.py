"""``python -m kaiwo.downloader [--log-level LEVEL] [--max-workers N] CONFIG``: run every download of CONFIG.

Exit 0 when everything is in place. Otherwise exit 1 after trying every item, with one ``error:`` line per
failed item on stderr, and a summary as the last line and in the container's termination message
(``--termination-log``, default ``/dev/termination-log``), which the controller shows as the workload's
FAILED message. Secret values never appear in either.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from kaiwo.downloader.core import DownloadError, log, redact

TERMINATION_LOG = "/dev/termination-log"
MESSAGE_LIMIT = 4096  # what the kubelet keeps of a termination message


def run(config_path: Path, workers: int) -> list[DownloadError]:
    from kaiwo.downloader import azure, config, gcs, git, s3

    cfg = config.load(config_path)
    root = Path(cfg.download_root)
    errors: list[DownloadError] = []
    for s3_item in cfg.s3:
        errors += s3.download(s3_item, root, workers)
    for gcs_item in cfg.gcs:
        errors += gcs.download(gcs_item, root, workers)
    for az_item in cfg.azure_blob:
        errors += azure.download(az_item, root, workers)
    for git_item in cfg.git:
        errors += git.download(git_item, root, workers)
    if cfg.hf:
        hf_home = Path(cfg.hf_home or os.environ.get("HF_HOME") or Path.home() / ".cache" / "huggingface")
        os.environ["HF_HOME"] = str(hf_home)
        os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        from kaiwo.downloader import huggingface

        for hf_item in cfg.hf:
            errors += huggingface.download(hf_item, hf_home, workers)
    return errors


def summary(errors: list[DownloadError]) -> str:
    if len(errors) == 1:
        return f"download failed: {errors[0]}"
    return f"{len(errors)} downloads failed: " + "; ".join(str(e) for e in errors)


def write_termination_message(path: str, message: str) -> None:
    try:
        with open(path, "w") as f:
            f.write(message.encode()[:MESSAGE_LIMIT].decode(errors="ignore"))
    except OSError:
        pass  # not in a container (or no termination log): stderr has it


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kaiwo.downloader", description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path, help="the download configuration (config.yaml of the ConfigMap)")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    parser.add_argument("--max-workers", type=int, default=8, help="files downloaded in parallel (default 8)")
    parser.add_argument("--termination-log", default=TERMINATION_LOG, help="where the failure message goes")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("httpx", "httpx2", "httpcore", "urllib3", "huggingface_hub", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if args.max_workers < 1:
        parser.error("--max-workers must be at least 1")
    try:
        errors = run(args.config, args.max_workers)
    except DownloadError as failed:
        errors = [failed]
    except Exception as exc:  # a bug or an unexpected library error: still one readable line, never a traceback
        errors = [DownloadError("downloader", redact(f"{type(exc).__name__}: {exc}"))]
    if not errors:
        log.info("all downloads complete")
        return 0
    for e in errors:
        log.error("%s", redact(str(e)))
    message = redact(summary(errors))
    write_termination_message(args.termination_log, message)
    print(message, file=sys.stderr, flush=True)
    return 1


if __name__ == "__main__":
    sys.exit(main())
