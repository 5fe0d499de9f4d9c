"""How the local cluster runs Kueue, KubeRay and AppWrapper: out of cluster, as local processes on 127.0.0.1.

Every controller talks to the apiserver through the admin kubeconfig, runs without leader election and with
its metrics server off, and binds its health probes to a 127.0.0.1 port from ``Ports``. Only Kueue serves
webhooks in this setup: its server listens on 127.0.0.1 with a certificate of the harness CA (its internal
cert management is off), and its Mutating/ValidatingWebhookConfigurations and CRD conversion webhooks are
its own kustomize manifests rewritten to ``url: https://127.0.0.1:<port><path>`` (addons.py).

Kueue is configured like upstream Kaiwo's install: integrations batch/job, pod, deployment, statefulset,
ray.io/rayjob, ray.io/raycluster and workload.codeflare.dev/appwrapper; topology-aware scheduling on; and it
manages only namespaces labelled ``kueue-managed=true`` (``managedJobsNamespaceSelector``).
"""

from __future__ import annotations

import base64
import os
import shutil
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from kaiwo.devcluster import addons
from kaiwo.devcluster.build import KUEUE_METRICS_CERT_DIR_ENV
from kaiwo.devcluster.components import Layout, Ports
from kaiwo.devcluster.pki import PKI
from kaiwo.runtime.client import ApiError, Client
from kaiwo.runtime.objects import Obj

KUEUE_NAMESPACE = "kueue-system"
KUEUE_CONFIG_MAP, KUEUE_CONFIG_KEY = "kueue-manager-config", "controller_manager_config.yaml"  # as Kueue installs it
# Upstream Kaiwo labels the namespaces whose workloads Kueue manages (its `kaiwo` namespace has this label).
KUEUE_MANAGED_LABEL = ("kueue-managed", "true")
KUEUE_FRAMEWORKS = (
    "batch/job",
    "pod",
    "deployment",
    "statefulset",
    "ray.io/rayjob",
    "ray.io/raycluster",
    "workload.codeflare.dev/appwrapper",
)
# KubeRay calls the Ray dashboard of a head pod at <head-svc>.<ns>.svc.<CLUSTER_DOMAIN> (job status, serve status,
# stopping jobs). Fake pods have no dashboard and the name would go to the host's DNS server, off 127.0.0.1. A
# first label over 63 characters is not a valid DNS name, so Go's resolver fails at once without a query.
KUBERAY_CLUSTER_DOMAIN = "no-ray-dashboards-on-fake-pods-so-kaiwo-dev-sends-no-dns-queries-for-them.invalid"
APPWRAPPER_NAMESPACE = "appwrapper-system"
APPWRAPPER_CONFIG_MAP = "appwrapper-operator-config"


@dataclass(frozen=True)
class Context:
    layout: Layout
    ports: Ports
    binaries: Mapping[str, Path]
    pki: PKI

    def folder(self, addon: str) -> Path:
        path = self.layout.addons / addon
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def ca_bundle(self) -> str:
        return base64.b64encode(self.pki.ca.cert.read_bytes()).decode()

    def serving_certs(self, addon: str) -> Path:
        """A folder with ``tls.crt``/``tls.key`` for 127.0.0.1, signed by the harness CA."""
        pair = self.pki.issue(f"{addon}-serving", f"{addon}.kaiwo-dev.local", server=True, ips=("127.0.0.1",))
        folder = self.folder(addon) / "certs"
        folder.mkdir(exist_ok=True)
        shutil.copyfile(pair.cert, folder / "tls.crt")
        shutil.copyfile(pair.key, folder / "tls.key")
        (folder / "tls.key").chmod(0o600)
        return folder


@dataclass
class Launch:
    """One controller process and the cluster objects it needs."""

    name: str
    argv: list[str]
    health_url: str
    env: dict[str, str] = field(default_factory=dict)
    objects: list[Obj] = field(default_factory=list)  # applied before the process starts
    webhooks: list[Obj] = field(default_factory=list)  # applied once the process is healthy
    crd_conversions: dict[str, Obj] = field(default_factory=dict)  # CRD name -> spec.conversion
    webhooks_answer: Callable[[Client], Awaitable[bool]] | None = None  # true once admission reaches it

    def process_env(self, kubeconfig: Path) -> dict[str, str]:
        return {**os.environ, "KUBECONFIG": str(kubeconfig), **self.env}


def namespace(name: str) -> Obj:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


# --- Kueue --------------------------------------------------------------------------------------------------


def kueue_config(ctx: Context, cert_dir: Path) -> Obj:
    """Kueue's Configuration (config.kueue.x-k8s.io/v1beta2, see apis/config/v1beta2/configuration_types.go)."""
    key, value = KUEUE_MANAGED_LABEL
    return {
        "apiVersion": "config.kueue.x-k8s.io/v1beta2",
        "kind": "Configuration",
        "namespace": KUEUE_NAMESPACE,
        "health": {"healthProbeBindAddress": f"127.0.0.1:{ctx.ports.kueue_health}"},
        "metrics": {"bindAddress": "0"},  # off
        "webhook": {"host": "127.0.0.1", "port": ctx.ports.kueue_webhook, "certDir": str(cert_dir)},
        "leaderElection": {"leaderElect": False},
        "internalCertManagement": {"enable": False},
        "managedJobsNamespaceSelector": {"matchLabels": {key: value}},
        "integrations": {"frameworks": list(KUEUE_FRAMEWORKS)},
        "featureGates": {
            "TopologyAwareScheduling": True,  # beta and on by default since v0.14; stated so it stays on
            # The on-demand visibility API is an aggregated apiserver reached through an APIService, which can
            # only name a Service (no url), so it cannot be wired to a local process.
            "VisibilityOnDemand": False,
        },
        # As in kueue's config/components/manager/controller_manager_config.yaml.
        "controller": {
            "groupKindConcurrency": {
                "Job.batch": 5,
                "Pod": 5,
                "Workload.kueue.x-k8s.io": 5,
                "LocalQueue.kueue.x-k8s.io": 1,
                "Cohort.kueue.x-k8s.io": 1,
                "ClusterQueue.kueue.x-k8s.io": 1,
                "ResourceFlavor.kueue.x-k8s.io": 1,
            }
        },
        "clientConnection": {"qps": 50, "burst": 100},
    }


async def kueue_webhooks_answer(client: Client) -> bool:
    """A dry-run v1beta1 ClusterQueue passes the conversion webhook and gets the mutating webhook's finalizer."""
    probe = {
        "apiVersion": "kueue.x-k8s.io/v1beta1",
        "kind": "ClusterQueue",
        "metadata": {"name": "kaiwo-dev-webhook-probe"},
        "spec": {},
    }
    try:
        out = await client.create(probe, dryRun="All")
    except ApiError:
        return False
    return "kueue.x-k8s.io/resource-in-use" in out["metadata"].get("finalizers", [])


def kueue(ctx: Context) -> Launch:
    root = addons.source(addons.ADDONS["kueue"])
    certs = ctx.serving_certs("kueue")
    config = ctx.folder("kueue") / "config.yaml"
    config.write_text(yaml.safe_dump(kueue_config(ctx, certs), sort_keys=False))
    # The process reads the file; the ConfigMap is where Kueue's own install keeps the same configuration, so
    # `kaiwo doctor` and `kaiwo status` read the local cluster's Kueue settings as they read a real one's.
    published = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": KUEUE_CONFIG_MAP, "namespace": KUEUE_NAMESPACE},
        "data": {KUEUE_CONFIG_KEY: config.read_text()},
    }
    webhook_dir = root / "config" / "components" / "webhook"
    port, ca = ctx.ports.kueue_webhook, ctx.ca_bundle
    return Launch(
        name="kueue",
        argv=[str(ctx.binaries["kueue"]), f"--config={config}", "--zap-encoder=console"],
        health_url=f"http://127.0.0.1:{ctx.ports.kueue_health}/readyz",  # ready once the webhook server runs
        env={KUEUE_METRICS_CERT_DIR_ENV: str(certs)},
        objects=[namespace(KUEUE_NAMESPACE), published],
        webhooks=addons.local_webhooks(
            addons.load_yaml(webhook_dir / "manifests.yaml"),
            addons.kustomize_patches(webhook_dir / "kustomization.yaml"),
            name_prefix="kueue-",
            port=port,
            ca_bundle=ca,  # the prefix of kueue's config/default
        ),
        crd_conversions=addons.conversion_webhooks(
            addons.kustomize_patches(root / "config" / "components" / "crd" / "kustomization.yaml"),
            port=port,
            ca_bundle=ca,
        ),
        webhooks_answer=kueue_webhooks_answer,
    )


# --- KubeRay ------------------------------------------------------------------------------------------------


def kuberay(ctx: Context) -> Launch:
    """The KubeRay operator (flags of ray-operator/main.go). Its only webhook (RayCluster validation) is off
    unless ENABLE_WEBHOOKS=true, as in its default install. Kueue suspends RayJobs and RayClusters through
    their ``spec.suspend``, which the operator honours without further flags (``--batch-scheduler`` is for
    Volcano/YuniKorn/KAI, not Kueue). CLUSTER_DOMAIN: see KUBERAY_CLUSTER_DOMAIN."""
    return Launch(
        name="kuberay",
        argv=[
            str(ctx.binaries["kuberay-operator"]),
            "--enable-leader-election=false",
            f"--health-probe-bind-address=127.0.0.1:{ctx.ports.kuberay_health}",
            "--metrics-addr=0",
            "--log-stdout-encoder=console",
        ],
        health_url=f"http://127.0.0.1:{ctx.ports.kuberay_health}/readyz",
        env={"CLUSTER_DOMAIN": KUBERAY_CLUSTER_DOMAIN},
    )


# --- AppWrapper ---------------------------------------------------------------------------------------------


def appwrapper_config(ctx: Context) -> Obj:
    """pkg/config OperatorConfig, read from a ConfigMap; unset fields keep the built-in defaults."""
    return {
        "controllerManager": {
            "health": {"bindAddress": f"127.0.0.1:{ctx.ports.appwrapper_health}"},
            "metrics": {"bindAddress": "0"},
            "leaderElection": False,
        },
        # As upstream's config/dev (`make run`): its webhooks need its own cert rotator and a fixed :9443 on
        # all interfaces. Kueue's AppWrapper webhook still suspends queued AppWrappers.
        "webhooksEnabled": False,
    }


def appwrapper(ctx: Context) -> Launch:
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": APPWRAPPER_CONFIG_MAP, "namespace": APPWRAPPER_NAMESPACE},
        "data": {"config.yaml": yaml.safe_dump(appwrapper_config(ctx), sort_keys=False)},
    }
    return Launch(
        name="appwrapper",
        argv=[str(ctx.binaries["appwrapper"]), f"--config={APPWRAPPER_CONFIG_MAP}"],
        # Not /readyz: with webhooks off its readiness check would start the webhook server (no certs) and exit.
        health_url=f"http://127.0.0.1:{ctx.ports.appwrapper_health}/healthz",
        env={"NAMESPACE": APPWRAPPER_NAMESPACE},
        objects=[namespace(APPWRAPPER_NAMESPACE), config_map],
    )


# --- Jaeger -------------------------------------------------------------------------------------------------


def jaeger_config(ports: Ports) -> Obj:
    """Jaeger v2's configuration (an OpenTelemetry collector's): OTLP gRPC and HTTP receivers, in-memory storage,
    the query API and UI, all on 127.0.0.1 ports from ``Ports``; a short batch timeout so traces are queryable
    within a second; its own metrics off (no fixed port 8888)."""
    return {
        "service": {
            "extensions": ["jaeger_storage", "jaeger_query"],
            "pipelines": {
                "traces": {"receivers": ["otlp"], "processors": ["batch"], "exporters": ["jaeger_storage_exporter"]}
            },
            "telemetry": {"metrics": {"level": "none"}, "logs": {"level": "info"}},
        },
        "extensions": {
            "jaeger_storage": {"backends": {"memstore": {"memory": {"max_traces": 100000}}}},
            "jaeger_query": {
                "storage": {"traces": "memstore"},
                "http": {"endpoint": f"127.0.0.1:{ports.jaeger_query}"},
                "grpc": {"endpoint": f"127.0.0.1:{ports.jaeger_query_grpc}"},
            },
        },
        "receivers": {
            "otlp": {
                "protocols": {
                    "grpc": {"endpoint": f"127.0.0.1:{ports.jaeger_otlp_grpc}"},
                    "http": {"endpoint": f"127.0.0.1:{ports.jaeger_otlp_http}"},
                }
            }
        },
        "processors": {"batch": {"timeout": "200ms"}},
        "exporters": {"jaeger_storage_exporter": {"trace_storage": "memstore"}},
    }


def jaeger(ctx: Context) -> Launch:
    config = ctx.folder("jaeger") / "config.yaml"
    config.write_text(yaml.safe_dump(jaeger_config(ctx.ports), sort_keys=False))
    return Launch(
        name="jaeger",
        argv=[str(ctx.binaries["jaeger"]), f"--config={config}"],
        health_url=f"http://127.0.0.1:{ctx.ports.jaeger_query}/api/services",
    )


def jaeger_endpoints(ports: Mapping[str, int]) -> dict[str, str]:
    """Where the local Jaeger listens (from a cluster's status ``ports``): OTLP gRPC/HTTP and the UI/query API."""
    return {
        "otlp_grpc": f"http://127.0.0.1:{ports['jaeger_otlp_grpc']}",
        "otlp_http": f"http://127.0.0.1:{ports['jaeger_otlp_http']}",
        "ui": f"http://127.0.0.1:{ports['jaeger_query']}",
    }


LAUNCHERS: dict[str, Callable[[Context], Launch]] = {
    "kueue": kueue,
    "kuberay": kuberay,
    "appwrapper": appwrapper,
    "jaeger": jaeger,
}
