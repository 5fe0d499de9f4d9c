"""``python -m kaiwo.manager``: the Kaiwo operator process.

Flags have matching environment variables (``KAIWO_<FLAG>``, e.g. ``KAIWO_LEADER_ELECT=false``). The process
logs one line with its effective configuration, serves /healthz, /readyz and /metrics, runs the controllers
while it holds the leader Lease, and shuts down gracefully on SIGTERM (releasing the Lease).

Controllers: KaiwoQueueConfig, KaiwoJob, KaiwoService, GPU node taints; with ``--resource-monitoring`` the
utilisation monitor and with ``--gpu-preemption`` the GpuWorkload controller (kaiwo.gpumetrics.config lists their
flags and upstream's environment variables: ``RESOURCE_MONITORING_*``, ``GPU_PREEMPTION_*``). At start-up the
KaiwoConfig singleton ``kaiwo`` is created (empty, so every default applies) when it is missing, as upstream does.

Upstream's feature switches (environment variables, docs/design/upstream.md#operator-process) are read too. Booleans
accept true/false (also 1/0, yes/no, on/off, any case); any other value is an error naming the variable.
- ``FORMATTED_LOGS=true``: human-readable text logs instead of JSON (``--log-format``/``KAIWO_LOG_FORMAT`` win).
- ``RESOURCE_MONITORING_ENABLED`` and ``GPU_PREEMPTION_ENABLED``: defaults of ``--resource-monitoring`` and
  ``--gpu-preemption``.
- ``DISABLE_WEBHOOKS`` (only true) and ``ENFORCE_KAIWO_ON_GPU_WORKLOADS`` (only false): switches of a feature this
  operator does not have (admission webhooks). The "off" value, which upstream's manifests set, is accepted; the
  "on" value stops the start-up with an error instead of running silently without the feature (docs/design/decisions.md
  D27).
- Not applicable, ignored as upstream ignores them when their feature is off: ``WEBHOOK_CERT_DIRECTORY`` and
  ``DEFAULT_CLUSTER_QUEUE_NAME`` (webhook path only). Upstream's ``--enable-http2`` and ``--webhook-cert-*`` flags
  do not exist here; passing them is an "unrecognized arguments" error. ``--metrics-secure`` and
  ``--metrics-cert-path/-name/-key`` are upstream's, but secure metrics are off by default (docs/design/decisions.md
  D13: plain HTTP metrics on by default).

Leader election is on by default, also out of cluster. Its Lease lives in ``--leader-election-namespace``
(default: the pod's namespace in a cluster, else ``kaiwo-system``); when that namespace does not exist the
start-up stops with an error saying to pass an existing one or ``--no-leader-elect``, instead of retrying forever.
On SIGTERM the manager hands out no more queued work, lets in-flight reconciles finish (``--drain-timeout``)
while it keeps renewing the Lease, then releases it; a lost Lease stops every reconcile at once and exits 1.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from dataclasses import asdict, dataclass, field

import aiohttp

from kaiwo import __version__
from kaiwo.controllers import (
    cached_fields,
    gpuworkload,
    metrics,
    nodetaints,
    queueconfig,
    settings,
    utilisation,
    workload,
)
from kaiwo.gpumetrics import config as gpuconfig
from kaiwo.runtime.client import ApiError, Client
from kaiwo.runtime.kubeconfig import CONNECTION_LIMIT
from kaiwo.runtime.leader import LeaderElectionConfig, identity_from_env
from kaiwo.runtime.logs import setup_logging
from kaiwo.runtime.manager import Manager, ManagerOptions, stop_on_signals
from kaiwo.runtime.tracing import setup_tracing
from kaiwo.translate.storage import DOWNLOADER_IMAGE

log = logging.getLogger("kaiwo.manager")
LEASE_NAME = "83fc2279.silogen.ai"  # upstream's Lease ID: old and new never run together (docs/design/decisions.md D28)
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("json", "text")


@dataclass(frozen=True, kw_only=True)
class Config:
    kubeconfig: str | None
    context: str | None
    leader_elect: bool
    leader_election_namespace: str
    lease_duration: float
    renew_deadline: float
    retry_period: float
    metrics_bind_address: str
    metrics_secure: bool
    metrics_cert: tuple[str, str] | None
    health_probe_bind_address: str
    workers: int
    log_level: str
    log_format: str
    gpu: gpuconfig.GpuFeatures = field(default_factory=gpuconfig.GpuFeatures)
    downloader_image: str = DOWNLOADER_IMAGE
    drain_timeout: float = 20.0
    cache_sync_timeout: float = 120.0
    watch_idle_timeout: float = 90.0


@dataclass(frozen=True)
class AbsentFeature:
    """An upstream feature switch for a feature this operator does not have: only ``off`` is accepted."""

    env: str
    off: bool
    feature: str


ABSENT_FEATURES = (
    AbsentFeature("DISABLE_WEBHOOKS", True, "admission webhooks"),
    AbsentFeature("ENFORCE_KAIWO_ON_GPU_WORKLOADS", False, "enforcing Kaiwo on GPU Jobs (a Job admission webhook)"),
)


def _env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name}={value!r}: expected true or false")


def _check_absent_features() -> None:
    for f in ABSENT_FEATURES:
        if _env_bool(f.env, f.off) != f.off:
            raise ValueError(
                f"{f.env}={os.environ[f.env]}: {f.feature} is not implemented by this operator; "
                f"unset {f.env} or set it to {str(f.off).lower()}"
            )


def _namespace_default() -> str:
    try:
        with open("/var/run/secrets/kubernetes.io/serviceaccount/namespace") as f:
            return f.read().strip()
    except OSError:
        return "kaiwo-system"


def parse(argv: list[str] | None = None) -> Config:
    env = os.environ.get
    p = argparse.ArgumentParser(
        prog="python -m kaiwo.manager", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    try:
        _check_absent_features()
        leader_elect = _env_bool("KAIWO_LEADER_ELECT", True)
        formatted_logs = _env_bool("FORMATTED_LOGS", False)
        metrics_secure = _env_bool("KAIWO_METRICS_SECURE", False)
        gpu_switches = (_env_bool("RESOURCE_MONITORING_ENABLED", False), _env_bool("GPU_PREEMPTION_ENABLED", False))
    except ValueError as e:
        p.error(str(e))
    p.add_argument("--kubeconfig", default=env("KUBECONFIG"), help="kubeconfig file (default: in-cluster)")
    p.add_argument("--context", default=env("KAIWO_CONTEXT"))
    p.add_argument("--leader-elect", action=argparse.BooleanOptionalAction, default=leader_elect)
    p.add_argument(
        "--leader-election-namespace", default=env("KAIWO_LEADER_ELECTION_NAMESPACE") or _namespace_default()
    )
    p.add_argument("--lease-duration", type=float, default=env("KAIWO_LEASE_DURATION", "15"))
    p.add_argument("--renew-deadline", type=float, default=env("KAIWO_RENEW_DEADLINE", "10"))
    p.add_argument("--retry-period", type=float, default=env("KAIWO_RETRY_PERIOD", "2"))
    p.add_argument(
        "--metrics-bind-address",
        default=env("KAIWO_METRICS_BIND_ADDRESS", ":8080"),
        help="host:port for /metrics; empty or 0 disables",
    )
    p.add_argument(
        "--metrics-secure",
        action=argparse.BooleanOptionalAction,
        default=metrics_secure,
        help="serve /metrics over HTTPS, only to tokens allowed to get /metrics (TokenReview + SubjectAccessReview)",
    )
    p.add_argument(
        "--metrics-cert-path",
        default=env("KAIWO_METRICS_CERT_PATH", ""),
        help="folder of the secure metrics' certificate (default: a self-signed one made at start)",
    )
    p.add_argument("--metrics-cert-name", default=env("KAIWO_METRICS_CERT_NAME", "tls.crt"))
    p.add_argument("--metrics-cert-key", default=env("KAIWO_METRICS_CERT_KEY", "tls.key"))
    p.add_argument("--health-probe-bind-address", default=env("KAIWO_HEALTH_PROBE_BIND_ADDRESS", ":8081"))
    p.add_argument(
        "--workers",
        type=int,
        default=env("KAIWO_WORKERS", str(workload.DEFAULT_WORKERS)),
        help="concurrent reconciles per workload controller (asyncio tasks; docs/performance.md)",
    )
    p.add_argument(
        "--drain-timeout",
        type=float,
        default=env("KAIWO_DRAIN_TIMEOUT", "20"),
        help="on SIGTERM, wait this long (s) for in-flight reconciles; keep the pod's grace period longer",
    )
    p.add_argument(
        "--cache-sync-timeout",
        type=float,
        default=env("KAIWO_CACHE_SYNC_TIMEOUT", "120"),
        help="then start the controllers whose caches synced; the others wait and /readyz names the missing caches",
    )
    p.add_argument(
        "--watch-idle-timeout",
        type=float,
        default=env("KAIWO_WATCH_IDLE_TIMEOUT", "90"),
        help="replace a watch that delivered nothing (not even a bookmark, sent about once a minute) for this long",
    )
    p.add_argument("--log-level", default=env("KAIWO_LOG_LEVEL", "info"), choices=LOG_LEVELS)
    p.add_argument(
        "--log-format", default=env("KAIWO_LOG_FORMAT", "text" if formatted_logs else "json"), choices=LOG_FORMATS
    )
    gpuconfig.add_arguments(p, *gpu_switches)
    p.add_argument(
        "--downloader-image",
        default=env("KAIWO_DOWNLOADER_IMAGE") or DOWNLOADER_IMAGE,
        help="image of the download jobs (default: this operator's image); KaiwoConfig storage.downloaderImage "
        "overrides it",
    )
    a = p.parse_args(argv)  # string defaults (from the environment) go through `type` too
    # argparse checks `choices` of flags given on the command line only, not of defaults from the environment
    for flag, value, allowed in (("--log-level", a.log_level, LOG_LEVELS), ("--log-format", a.log_format, LOG_FORMATS)):
        if value not in allowed:
            p.error(f"{flag} {value!r} (from the environment): choose from {', '.join(allowed)}")
    if not a.downloader_image.strip():
        p.error("--downloader-image must not be empty")
    if a.workers < 1:
        p.error(f"--workers must be at least 1 (got {a.workers})")
    for flag in ("drain_timeout", "cache_sync_timeout", "watch_idle_timeout"):
        if not getattr(a, flag) > 0:
            p.error(f"--{flag.replace('_', '-')} must be positive (got {getattr(a, flag)})")
    if a.leader_elect:
        try:
            LeaderElectionConfig(
                a.leader_election_namespace,
                LEASE_NAME,
                lease_duration=a.lease_duration,
                renew_deadline=a.renew_deadline,
                retry_period=a.retry_period,
            )
        except ValueError as e:
            p.error(str(e))
    for flag in ("metrics_bind_address", "health_probe_bind_address"):
        value = getattr(a, flag)
        if value not in ("", "0") and not value.rpartition(":")[2].isdigit():
            p.error(f"--{flag.replace('_', '-')} {value!r}: expected host:port, :port, or 0 to disable")
    metrics_cert = None
    if a.metrics_cert_path:
        metrics_cert = (
            os.path.join(a.metrics_cert_path, a.metrics_cert_name),
            os.path.join(a.metrics_cert_path, a.metrics_cert_key),
        )
        missing = [f for f in metrics_cert if not os.path.isfile(f)]
        if missing:
            p.error(f"--metrics-cert-path {a.metrics_cert_path!r}: {', '.join(missing)} does not exist")
    if (
        a.metrics_secure
        and a.metrics_bind_address not in ("", "0")
        and a.metrics_bind_address == a.health_probe_bind_address
    ):
        p.error(
            "--metrics-secure needs --metrics-bind-address to differ from --health-probe-bind-address "
            "(the probes speak plain HTTP)"
        )
    return Config(
        kubeconfig=a.kubeconfig,
        context=a.context,
        leader_elect=a.leader_elect,
        leader_election_namespace=a.leader_election_namespace,
        lease_duration=a.lease_duration,
        renew_deadline=a.renew_deadline,
        retry_period=a.retry_period,
        metrics_bind_address=a.metrics_bind_address,
        metrics_secure=a.metrics_secure,
        metrics_cert=metrics_cert,
        health_probe_bind_address=a.health_probe_bind_address,
        workers=a.workers,
        log_level=a.log_level,
        log_format=a.log_format,
        gpu=gpuconfig.from_args(a, a.leader_election_namespace, p.error),
        downloader_image=a.downloader_image,
        drain_timeout=a.drain_timeout,
        cache_sync_timeout=a.cache_sync_timeout,
        watch_idle_timeout=a.watch_idle_timeout,
    )


async def ensure_kaiwo_config(client: Client) -> None:
    """Create the default KaiwoConfig if there is none. A restart over an existing one sends no write (a create
    answered 409 would still count as one), so a resync of a settled cluster writes nothing."""
    if await client.get_or_none(settings.KAIWO_CONFIG_API, "KaiwoConfig", settings.SINGLETON) is not None:
        return
    try:
        await client.create(
            {
                "apiVersion": settings.KAIWO_CONFIG_API,
                "kind": "KaiwoConfig",
                "metadata": {"name": settings.SINGLETON},
                "spec": {},
            }
        )
        log.info("created the default KaiwoConfig %s", settings.SINGLETON)
    except ApiError as e:
        if not e.conflict:
            raise


class StartupError(Exception):
    """A configuration the process cannot run with; the message says what to change."""


async def wait_for_apiserver(client: Client, max_delay: float = 5.0) -> None:
    """Return once the apiserver answers: a (re)start during an outage waits instead of crash-looping."""
    delay = 0.5
    while True:
        try:
            await client.request("GET", "/version", timeout=5.0, retries=False)
            return
        except ApiError:
            return  # it answered (even a refusal means it is up; the real calls will report what is wrong)
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            log.warning("waiting for the apiserver: %r", e)
        await asyncio.sleep(delay)
        delay = min(delay * 2, max_delay)


async def check_lease_namespace(client: Client, namespace: str) -> None:
    """Fail fast when the leader-election namespace is missing (the Lease could never be written)."""
    try:
        await client.get("v1", "Namespace", namespace)
    except ApiError as e:
        if e.not_found:
            raise StartupError(
                f"leader election: namespace {namespace!r} does not exist; pass --leader-election-namespace "
                f"(KAIWO_LEADER_ELECTION_NAMESPACE) naming an existing namespace for the Lease, or --no-leader-elect "
                f"(KAIWO_LEADER_ELECT=false) to run a single replica without one"
            ) from None
        if e.status != 403:  # not allowed to read namespaces: the Lease writes will tell
            raise


def connection_limit(workers: int) -> int:
    """Connections the operator's client may open: one per worker of the two workload controllers, and room for
    the watches (one per cache), the event senders, the queue configuration's worker and the Lease; never fewer
    than the client's default. With fewer, busy workers wait for a connection inside their own timeouts, and a
    watch that reconnects waits behind them (docs/performance.md#workers)."""
    return max(CONNECTION_LIMIT, 2 * workers + 64)


async def run(cfg: Config) -> int:
    setup_tracing("kaiwo-operator")
    client = await Client.auto(cfg.kubeconfig, cfg.context)
    client.connection_limit = connection_limit(cfg.workers)
    try:
        le = None
        if cfg.leader_elect:
            le = LeaderElectionConfig(
                cfg.leader_election_namespace,
                LEASE_NAME,
                identity_from_env(),
                cfg.lease_duration,
                cfg.renew_deadline,
                cfg.retry_period,
            )
        opts = ManagerOptions(
            health_address="" if cfg.health_probe_bind_address in ("", "0") else cfg.health_probe_bind_address,
            metrics_address="" if cfg.metrics_bind_address in ("", "0") else cfg.metrics_bind_address,
            metrics_secure=cfg.metrics_secure,
            metrics_cert=cfg.metrics_cert,
            leader_election=le,
            drain_timeout=cfg.drain_timeout,
            cache_sync_timeout=cfg.cache_sync_timeout,
            watch_idle_timeout=cfg.watch_idle_timeout,
            transforms=cached_fields.TRANSFORMS,  # the caches keep only what the controllers read
        )
        await wait_for_apiserver(client)
        if le is not None:
            await check_lease_namespace(client, le.namespace)
        mgr = Manager(client, opts)
        await ensure_kaiwo_config(client)
        await queueconfig.setup(mgr, workers=1)  # a singleton: one worker is all it can use
        await workload.setup(mgr, "KaiwoJob", workers=cfg.workers, downloader_image=cfg.downloader_image)
        await workload.setup(mgr, "KaiwoService", workers=cfg.workers, downloader_image=cfg.downloader_image)
        await metrics.setup(mgr)
        await nodetaints.setup(mgr)
        if cfg.gpu.monitoring is not None:
            await utilisation.setup(mgr, cfg.gpu.monitoring)
        if cfg.gpu.preemption is not None:
            await gpuworkload.setup(mgr, cfg.gpu)
        stop = asyncio.Event()
        stop_on_signals(stop)
        return await mgr.run(stop)
    finally:
        await client.close()


def main(argv: list[str] | None = None) -> int:
    cfg = parse(argv)
    setup_logging(cfg.log_level, cfg.log_format)
    log.info("starting kaiwo operator", extra={"fields": {"version": __version__, "config": asdict(cfg)}})
    try:
        return asyncio.run(run(cfg))
    except StartupError as e:
        log.error("%s", e)
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
