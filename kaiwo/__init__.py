"""Kaiwo: run GPU jobs and services on a shared Kubernetes cluster, queued fairly through Kueue."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("kaiwo")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"
