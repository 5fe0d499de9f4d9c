"""The operator's GPU feature switches: flags, with upstream's environment variable names as defaults.

| flag                                     | environment                            | default           |
| ---------------------------------------- | -------------------------------------- | ----------------- |
| ``--resource-monitoring``                | ``RESOURCE_MONITORING_ENABLED``        | off               |
| ``--resource-monitoring-metrics-endpoint`` | ``RESOURCE_MONITORING_METRICS_ENDPOINT`` | (required when on) |
| ``--resource-monitoring-polling-interval`` | ``RESOURCE_MONITORING_POLLING_INTERVAL`` | ``30s``           |
| ``--gpu-preemption``                     | ``GPU_PREEMPTION_ENABLED``             | off               |
| ``--gpu-preemption-metrics-endpoint``    | ``GPU_PREEMPTION_METRICS_ENDPOINT``    | the monitoring one |
| ``--gpu-preemption-polling-interval``    | ``GPU_PREEMPTION_POLLING_INTERVAL``    | ``15s``           |
| ``--gpu-preemption-namespace``           | ``GPU_PREEMPTION_OPERATOR_NAMESPACE``  | the leader-election namespace |

An endpoint is one URL or a comma-separated list (an AMD exporter and a DCGM exporter, say); intervals are Go
durations. ``GPU_PREEMPTION_DEFAULT_{THRESHOLD,GRACE_PERIOD,POLICY,AGGREGATION,TTL}`` are read too: the
environment layer of the GpuWorkload settings (kaiwo.controllers.gpuworkload).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from kaiwo.gpumetrics.reader import Source, endpoints_of
from kaiwo.translate.preemption import go_duration


@dataclass(frozen=True)
class EnvDefaults:
    """``GPU_PREEMPTION_DEFAULT_*`` as given (None when unset); checked at start."""

    threshold: float | None = None
    grace_period: str | None = None
    policy: str | None = None
    aggregation: str | None = None
    ttl: str | None = None


@dataclass(frozen=True)
class GpuFeatures:
    monitoring: Source | None = None  # None: utilisation monitoring is off
    preemption: Source | None = None  # None: the GpuWorkload controller is off
    preemption_namespace: str = "kaiwo-system"  # where the evaluation Lease lives
    defaults: EnvDefaults = field(default_factory=EnvDefaults)


def add_arguments(p: argparse.ArgumentParser, monitoring_on: bool, preemption_on: bool) -> None:
    env = os.environ.get
    g = p.add_argument_group("GPU utilisation (docs/design/gpu-utilisation.md)")
    g.add_argument("--resource-monitoring", action=argparse.BooleanOptionalAction, default=monitoring_on)
    g.add_argument("--resource-monitoring-metrics-endpoint", default=env("RESOURCE_MONITORING_METRICS_ENDPOINT", ""))
    g.add_argument("--resource-monitoring-polling-interval", default=env("RESOURCE_MONITORING_POLLING_INTERVAL", "30s"))
    g.add_argument("--gpu-preemption", action=argparse.BooleanOptionalAction, default=preemption_on)
    g.add_argument("--gpu-preemption-metrics-endpoint", default=env("GPU_PREEMPTION_METRICS_ENDPOINT", ""))
    g.add_argument("--gpu-preemption-polling-interval", default=env("GPU_PREEMPTION_POLLING_INTERVAL", "15s"))
    g.add_argument("--gpu-preemption-namespace", default=env("GPU_PREEMPTION_OPERATOR_NAMESPACE", ""))


def _source(flag: str, endpoint: str, interval: str) -> Source:
    try:
        urls = endpoints_of(endpoint)
    except ValueError as e:
        raise ValueError(f"--{flag}-metrics-endpoint: {e}") from e
    if not urls:
        raise ValueError(f"--{flag} is on but --{flag}-metrics-endpoint is empty")
    try:
        seconds = go_duration(interval)
    except ValueError as e:
        raise ValueError(f"--{flag}-polling-interval {interval!r}: {e}") from e
    if seconds < 1:
        raise ValueError(f"--{flag}-polling-interval {interval!r}: must be at least 1s")
    return Source(urls, seconds)


def env_defaults(environ: Mapping[str, str] = os.environ) -> EnvDefaults:
    prefix = "GPU_PREEMPTION_DEFAULT_"
    threshold = environ.get(prefix + "THRESHOLD")
    value = None
    if threshold:
        try:
            value = float(threshold)
        except ValueError:
            value = -1.0
        if not 0 <= value <= 100:
            raise ValueError(f"{prefix}THRESHOLD={threshold!r}: expected a percentage 0..100")
    for name in ("GRACE_PERIOD", "TTL"):
        text = environ.get(prefix + name)
        if text:
            try:
                go_duration(text)
            except ValueError as e:
                raise ValueError(f"{prefix}{name}={text!r}: {e}") from e
    policy, aggregation = environ.get(prefix + "POLICY"), environ.get(prefix + "AGGREGATION")
    if policy and policy not in ("OnPressure", "Always"):
        raise ValueError(f"{prefix}POLICY={policy!r}: expected OnPressure or Always")
    if aggregation and aggregation not in ("Min", "Max", "Avg"):
        raise ValueError(f"{prefix}AGGREGATION={aggregation!r}: expected Min, Max or Avg")
    return EnvDefaults(
        value,
        environ.get(prefix + "GRACE_PERIOD") or None,
        policy or None,
        aggregation or None,
        environ.get(prefix + "TTL") or None,
    )


def from_args(a: argparse.Namespace, fallback_namespace: str, error: Callable[[str], object]) -> GpuFeatures:
    """The switches from parsed flags; ``error`` (argparse's) is called with a message naming the bad flag."""
    try:
        monitoring = (
            _source(
                "resource-monitoring", a.resource_monitoring_metrics_endpoint, a.resource_monitoring_polling_interval
            )
            if a.resource_monitoring
            else None
        )
        preemption = (
            _source(
                "gpu-preemption",
                a.gpu_preemption_metrics_endpoint or a.resource_monitoring_metrics_endpoint,
                a.gpu_preemption_polling_interval,
            )
            if a.gpu_preemption
            else None
        )
        defaults = env_defaults() if preemption is not None else EnvDefaults()
    except ValueError as e:
        error(str(e))
        raise SystemExit(2) from e  # argparse's error exits; this is for other callables
    namespace = a.gpu_preemption_namespace or fallback_namespace
    return GpuFeatures(monitoring, preemption, namespace, defaults)
