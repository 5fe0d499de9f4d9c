"""Expected failures of the CLI and how they read: one line saying what went wrong, one saying what to do.

``explain`` turns the exceptions the cluster client raises (API errors, unreachable servers, bad kubeconfigs)
into a ``CliError``; anything it does not know is a bug and keeps its traceback (shown with ``-v``).
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass

import aiohttp

from kaiwo.runtime.client import ApiError
from kaiwo.runtime.kubeconfig import KubeconfigError

USAGE = 2  # exit code of a command line that cannot work (as click's own usage errors)


@dataclass
class CliError(Exception):
    message: str
    hint: str = ""
    code: int = 1

    def __str__(self) -> str:
        return self.message


def explain(exc: BaseException, server: str = "") -> CliError | None:
    """A ``CliError`` for a failure the user can fix, or None for an unexpected one."""
    where = f" at {server}" if server else ""
    if isinstance(exc, CliError):
        return exc
    if isinstance(exc, KubeconfigError):
        return CliError(
            f"cannot use the kubeconfig: {exc}",
            "set KUBECONFIG or pass --kubeconfig (and --context) for the cluster you want",
        )
    if isinstance(exc, ssl.SSLError | aiohttp.ClientSSLError):
        return CliError(
            f"TLS failure talking to the Kubernetes API{where}: {exc}",
            "check the cluster's certificate-authority in your kubeconfig",
        )
    if isinstance(exc, aiohttp.ClientConnectionError | asyncio.TimeoutError | ConnectionError):
        detail = str(exc) or type(exc).__name__
        return CliError(
            f"cannot reach the Kubernetes API{where}: {detail}",
            "check the cluster is up, your network/VPN, and the kubeconfig context (--context)",
        )
    if isinstance(exc, ApiError):
        return explain_api(exc)
    return None


def explain_api(exc: ApiError) -> CliError:
    message = exc.message or exc.reason or f"HTTP {exc.status}"
    if exc.status == 401:
        return CliError(
            f"the cluster did not accept your credentials: {message}",
            "log in again (refresh your token or auth plugin) or check the kubeconfig user",
        )
    if exc.status == 403:
        return CliError(f"not allowed: {message}", "ask your cluster admin for access, or use another namespace (-n)")
    if exc.status == 404 and message.startswith("the server has no resource for kind"):
        return CliError(
            f"{message}", "check apiVersion and kind in the manifest; Kaiwo kinds need the Kaiwo CRDs installed"
        )
    if exc.status == 409:
        return CliError(
            f"conflict: {message}",
            "another field manager owns these fields; re-run with --force-conflicts to take them over",
        )
    if exc.status in (400, 422):
        return CliError(f"the cluster rejected the request: {message}", "fix the field named above and retry")
    return CliError(f"the Kubernetes API answered {exc.status} {exc.reason}: {message}".rstrip(": "))
