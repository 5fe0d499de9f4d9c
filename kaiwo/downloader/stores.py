"""Client settings shared by the object stores: bounded retries, so a wrong endpoint or a dead server fails the
job in seconds with its error instead of retrying for minutes; plain HTTP only for ``http://`` endpoints."""

from __future__ import annotations

import os
from datetime import timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from obstore.store import ClientConfig, RetryConfig


def retry_config() -> RetryConfig:
    return {
        "max_retries": int(os.environ.get("KAIWO_DOWNLOAD_MAX_RETRIES", "3")),
        "retry_timeout": timedelta(seconds=float(os.environ.get("KAIWO_DOWNLOAD_RETRY_TIMEOUT", "30"))),
        "backoff": {"init_backoff": timedelta(milliseconds=200), "max_backoff": timedelta(seconds=5), "base": 2},
    }


def client_options(endpoint: str | None) -> ClientConfig:
    options: ClientConfig = {"connect_timeout": timedelta(seconds=10), "timeout": timedelta(minutes=30)}
    if endpoint and endpoint.startswith("http://"):
        options["allow_http"] = True
    return options
