"""Command lines of the control-plane components, and how to tell each one is healthy.

Every component listens on 127.0.0.1 only, on ports chosen free at start.
"""

from __future__ import annotations

import os
import socket
import ssl
import sys
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from kaiwo.devcluster import versions

CHART_VALUES = Path(__file__).resolve().parents[2] / "charts" / "kaiwo" / "values.yaml"
SERVICE_CIDR = "10.96.0.0/16"  # allocated in etcd only; nothing routes to it
POD_CIDR = "10.244.0.0/16"  # fake pod IPs handed out by kwok; nothing routes to it
# The Go components (control plane and controllers) trade memory for CPU: on a small machine their garbage
# collection is a third of the apiserver's CPU under load (docs/design/architecture.md#local-cluster).
# A value already in the environment wins, so `GOGC=100 kaiwo-dev up` gives Go's defaults.
GO_RUNTIME_DEFAULTS = {"GOGC": "400", "GOMEMLIMIT": "2GiB"}


def go_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) with the Go runtime defaults above where it has none."""
    env = dict(os.environ if base is None else base)
    for key, value in GO_RUNTIME_DEFAULTS.items():
        env.setdefault(key, value)
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Ports:
    etcd: int
    etcd_peer: int
    apiserver: int
    controller_manager: int
    scheduler: int
    kwok: int
    # The third-party controllers (addons.py): webhook servers and health probes.
    kueue_webhook: int
    kueue_health: int
    kuberay_health: int
    appwrapper_health: int
    gpu_metrics: int  # the fake GPU exporter (gpuexporter.py)
    # Jaeger (the jaeger addon): OTLP receivers and the query API/UI. Reserved even when Jaeger is not started,
    # because the apiserver's tracing configuration names the OTLP gRPC port from the start.
    jaeger_otlp_grpc: int
    jaeger_otlp_http: int
    jaeger_query: int
    jaeger_query_grpc: int

    @classmethod
    def pick(cls) -> Ports:
        socks = []
        try:
            for _ in fields(cls):  # hold all sockets open so the ports are distinct
                s = socket.socket()
                s.bind(("127.0.0.1", 0))
                socks.append(s)
            return cls(*(s.getsockname()[1] for s in socks))
        finally:
            for s in socks:
                s.close()


@dataclass(frozen=True)
class Layout:
    """Files of one cluster's state folder."""

    root: Path

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def etcd_data(self) -> Path:
        return self.root / "etcd-data"

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    @property
    def status(self) -> Path:
        return self.root / "status.json"

    @property
    def kwok_config(self) -> Path:
        return self.root / "kwok.yaml"

    @property
    def scheduler_config(self) -> Path:
        return self.root / "kube-scheduler.yaml"

    @property
    def apiserver_tracing_config(self) -> Path:
        return self.root / "kube-apiserver-tracing.yaml"

    @property
    def certs(self) -> Path:
        return self.root / "certs"

    @property
    def addons(self) -> Path:
        """Config files and serving certificates of the third-party controllers (rewritten each start)."""
        return self.root / "addons"

    def log(self, component: str) -> Path:
        return self.logs / f"{component}.log"


def etcd(binary: Path, layout: Layout, ports: Ports) -> list[str]:
    peer = f"http://127.0.0.1:{ports.etcd_peer}"
    client = f"http://127.0.0.1:{ports.etcd}"
    return [
        str(binary),
        "--name=kaiwo-dev",
        f"--data-dir={layout.etcd_data}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=kaiwo-dev={peer}",
        "--initial-cluster-state=new",
        "--unsafe-no-fsync=true",  # a throw-away dev store: durability is not worth the latency
        "--log-level=warn",
        "--quota-backend-bytes=4294967296",
    ]


def apiserver(binary: Path, layout: Layout, ports: Ports) -> list[str]:
    p = layout.pki
    return [
        str(binary),
        f"--etcd-servers=http://127.0.0.1:{ports.etcd}",
        "--bind-address=127.0.0.1",
        f"--secure-port={ports.apiserver}",
        "--advertise-address=127.0.0.1",
        # The kubernetes Service cannot have a loopback endpoint, so do not try to maintain one.
        "--endpoint-reconciler-type=none",
        f"--tls-cert-file={p / 'apiserver.crt'}",
        f"--tls-private-key-file={p / 'apiserver.key'}",
        f"--client-ca-file={p / 'ca.crt'}",
        f"--service-account-key-file={p / 'sa.pub'}",
        f"--service-account-signing-key-file={p / 'sa.key'}",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--authorization-mode=RBAC",
        "--allow-privileged=true",
        f"--kubelet-client-certificate={p / 'apiserver-kubelet-client.crt'}",
        f"--kubelet-client-key={p / 'apiserver-kubelet-client.key'}",
        "--kubelet-preferred-address-types=InternalIP",
        "--v=1",
        # PodTemplates (which nothing here uses) bypass the watch cache, so a test can provoke a real
        # 410 Gone by compacting etcd; every other type is served from the cache as on any cluster.
        "--watch-cache-sizes=podtemplates#0",
        f"--tracing-config-file={layout.apiserver_tracing_config}",
    ]


def apiserver_tracing(ports: Ports) -> dict[str, Any]:
    """The apiserver's own spans go to the jaeger addon's OTLP gRPC port. Sampling rate 0 under the apiserver's
    parent-based sampler: it traces exactly the requests whose caller sampled them (a ``traceparent`` with the
    sampled flag, as the operator sends), so a cluster without Jaeger or without tracing callers makes no spans."""
    return {
        "apiVersion": "apiserver.config.k8s.io/v1",
        "kind": "TracingConfiguration",
        "endpoint": f"127.0.0.1:{ports.jaeger_otlp_grpc}",
        "samplingRatePerMillion": 0,
    }


def controller_manager(binary: Path, layout: Layout, ports: Ports) -> list[str]:
    p = layout.pki
    return [
        str(binary),
        f"--kubeconfig={layout.kubeconfig}",
        f"--authentication-kubeconfig={layout.kubeconfig}",
        f"--authorization-kubeconfig={layout.kubeconfig}",
        "--bind-address=127.0.0.1",
        f"--secure-port={ports.controller_manager}",
        f"--cert-dir={layout.certs / 'kube-controller-manager'}",
        "--leader-elect=false",
        # Every default controller (garbage collector, Job, Deployment/ReplicaSet, namespace, service accounts
        # and their tokens, PV binding, node lifecycle, ...), as on a real cluster.
        "--controllers=*",
        f"--service-account-private-key-file={p / 'sa.key'}",
        f"--root-ca-file={p / 'ca.crt'}",
        f"--cluster-signing-cert-file={p / 'ca.crt'}",
        f"--cluster-signing-key-file={p / 'ca.key'}",
        "--use-service-account-credentials=false",
        # Dynamic hostPath volumes for the default StorageClass: claims bind like on a real cluster.
        "--enable-hostpath-provisioner=true",
        "--v=1",
    ]


def chart_scheduler_values() -> dict[str, Any]:
    """The ``scheduler`` values of the Helm chart (charts/kaiwo/values.yaml): the one definition of the
    ``kaiwo-scheduler`` profile, shared by the chart and this cluster."""
    values: dict[str, Any] = yaml.safe_load(CHART_VALUES.read_text())
    scheduler: dict[str, Any] = values["scheduler"]
    return scheduler


def scheduler_config(layout: Layout) -> dict[str, Any]:
    """Two profiles: the default scheduler, and ``kaiwo-scheduler`` as the chart installs it (a second
    kube-scheduler whose NodeResourcesFit scores by RequestedToCapacityRatio on GPUs, i.e. packs GPU pods onto
    as few nodes as possible; taken from the chart's values). Kaiwo gives the pods it generates
    ``schedulerName: kaiwo-scheduler``."""
    chart = chart_scheduler_values()
    return {
        "apiVersion": "kubescheduler.config.k8s.io/v1",
        "kind": "KubeSchedulerConfiguration",
        "clientConnection": {"kubeconfig": str(layout.kubeconfig)},
        "leaderElection": {"leaderElect": False},
        "profiles": [
            {"schedulerName": "default-scheduler"},
            {
                "schedulerName": chart["name"],
                "pluginConfig": [{"name": "NodeResourcesFit", "args": {"scoringStrategy": chart["scoringStrategy"]}}],
            },
        ],
    }


def scheduler(binary: Path, layout: Layout, ports: Ports) -> list[str]:
    return [
        str(binary),
        f"--config={layout.scheduler_config}",
        f"--authentication-kubeconfig={layout.kubeconfig}",
        f"--authorization-kubeconfig={layout.kubeconfig}",
        "--bind-address=127.0.0.1",
        f"--secure-port={ports.scheduler}",
        f"--cert-dir={layout.certs / 'kube-scheduler'}",
        "--v=1",
    ]


def kwok(binary: Path, layout: Layout, ports: Ports) -> list[str]:
    return [
        str(binary),
        f"--kubeconfig={layout.kubeconfig}",
        f"--config={layout.kwok_config}",
        "--manage-all-nodes=false",
        "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
        f"--server-address=127.0.0.1:{ports.kwok}",
        f"--cidr={POD_CIDR}",
        "--node-ip=127.0.0.1",
        # The nodes advertise kwok's kubelet-like server (HTTPS with a self-signed certificate, which the
        # apiserver accepts as it has no --kubelet-certificate-authority), so pod logs/exec/port-forward work.
        f"--node-port={ports.kwok}",
        "--node-lease-duration-seconds=40",
    ]


def health_url(component: str, ports: Ports) -> str:
    return {
        "etcd": f"http://127.0.0.1:{ports.etcd}/health",
        "kube-apiserver": f"https://127.0.0.1:{ports.apiserver}/readyz",
        "kube-controller-manager": f"https://127.0.0.1:{ports.controller_manager}/healthz",
        "kube-scheduler": f"https://127.0.0.1:{ports.scheduler}/healthz",
        "kwok": f"http://127.0.0.1:{ports.kwok}/healthz",
        "gpu-exporter": f"http://127.0.0.1:{ports.gpu_metrics}/healthz",
    }[component]


def gpu_exporter(layout: Layout, ports: Ports) -> list[str]:
    return [
        sys.executable,
        "-m",
        "kaiwo.devcluster.gpuexporter",
        f"--kubeconfig={layout.kubeconfig}",
        f"--port={ports.gpu_metrics}",
    ]


def gpu_metrics_urls(ports: Ports) -> dict[str, str]:
    """The fake exporter's pages, as recorded in status.json ``gpu_metrics``."""
    base = f"http://127.0.0.1:{ports.gpu_metrics}"
    return {"amd": f"{base}/amd/metrics", "nvidia": f"{base}/nvidia/metrics", "all": f"{base}/metrics"}


def admin_ssl(layout: Layout) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(layout.pki / "ca.crt"))
    ctx.load_cert_chain(str(layout.pki / "admin.crt"), str(layout.pki / "admin.key"))
    return ctx


def insecure_ssl() -> ssl.SSLContext:
    """For the self-signed health endpoints of the controller manager and scheduler."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


KUBELET_VERSION = versions.KUBERNETES  # what the fake nodes report
