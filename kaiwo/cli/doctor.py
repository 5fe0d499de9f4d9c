"""``kaiwo doctor``: an administrator's check of everything Kaiwo depends on, each finding with what to do.

Checks, in the order a broken install usually shows them:
- Kaiwo's CRDs are installed and current (their schemas equal the ones this CLI generates, which are the chart's
  charts/kaiwo/crds);
- Kueue, KubeRay and AppWrapper: their CRDs are served (with the API versions), their controllers' versions from
  their Deployments' images when installed as Deployments, and Kueue's integrations include every framework
  Kaiwo's children need;
- Kueue's managedJobsNamespaceSelector selects every namespace that holds KaiwoJobs or KaiwoServices;
- the operator's leader Lease has a live holder, and its Deployment is ready;
- the KaiwoQueueConfig ``kaiwo`` is READY;
- GPU nodes exist and carry the labels Kaiwo's node pools are made from.
Exit code 1 when any check fails (warnings do not fail). ``-o json`` prints the findings as data.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from typing import Annotated, Any

import orjson
import typer
import yaml

from kaiwo.api import crds
from kaiwo.api import labels as L
from kaiwo.api.groups import KAIWO_API as API
from kaiwo.api.queueconfig import QueueConfigStatus
from kaiwo.cli import explain, kueueinfo
from kaiwo.cli.inspect import DocFormat, optional_list, readable
from kaiwo.cli.render import quantity, table
from kaiwo.cli.session import ContextOpt, KubeconfigOpt, Target, output, run
from kaiwo.runtime import timestamps
from kaiwo.runtime.client import Client
from kaiwo.runtime.objects import Obj, status_condition

CRD_API = "apiextensions.k8s.io/v1"
LEASE_NAME = "83fc2279.silogen.ai"  # kaiwo.manager.LEASE_NAME (not imported: it pulls in the whole operator)
# Kueue's integrations Kaiwo's children need: Jobs, the pods of Deployments, RayJobs, RayClusters (RayServices),
# AppWrappers.
KUEUE_FRAMEWORKS = (
    "batch/job",
    "pod",
    "deployment",
    "ray.io/rayjob",
    "ray.io/raycluster",
    "workload.codeflare.dev/appwrapper",
)
DEPENDENCIES = (
    # name, a CRD that proves it, namespaces where its Deployment usually runs, whether Kaiwo cannot work without it
    ("Kueue", "clusterqueues.kueue.x-k8s.io", ("kueue-system",), True),
    ("KubeRay", "rayclusters.ray.io", ("ray-system", "kuberay-operator", "kuberay"), False),
    ("AppWrapper", "appwrappers.workload.codeflare.dev", ("appwrapper-system",), False),
)
GPU_RESOURCES = ("amd.com/gpu", "nvidia.com/gpu")


@dataclass(frozen=True)
class Check:
    area: str
    status: str  # "ok", "warn" or "fail"
    message: str
    fix: str = ""


def _schema_view(crd: Obj) -> list[tuple[str, Any]]:
    return [
        (v.get("name"), ((v.get("schema") or {}).get("openAPIV3Schema")))
        for v in sorted((crd.get("spec") or {}).get("versions") or [], key=lambda v: str(v.get("name")))
    ]


async def check_crds(client: Client) -> list[Check]:
    found = []
    apply = "kubectl apply --server-side -f charts/kaiwo/crds/ (Helm installs CRDs only on first install)"
    for want in crds.installable():
        name = want["metadata"]["name"]
        live = await readable(client, CRD_API, "CustomResourceDefinition", name)
        if live is None:
            found.append(Check("crds", "fail", f"CRD {name} is not installed", apply))
        elif _schema_view(live) != _schema_view(want):
            found.append(Check("crds", "fail", f"CRD {name} differs from this version of Kaiwo (outdated?)", apply))
    if not found:
        found.append(Check("crds", "ok", f"{len(crds.ALL)} Kaiwo CRDs installed and current"))
    return found


def _image_version(deployments: list[Obj], hint: str) -> str:
    for d in deployments:
        for c in ((d.get("spec") or {}).get("template") or {}).get("spec", {}).get("containers") or []:
            image = str(c.get("image") or "")
            if hint in image or hint in d["metadata"]["name"]:
                return image.rsplit(":", 1)[-1] if ":" in image.rsplit("/", 1)[-1] else image
    return ""


async def check_dependencies(client: Client, kueue_config: Obj | None) -> list[Check]:
    found = []
    for name, crd_name, namespaces, required in DEPENDENCIES:
        crd = await readable(client, CRD_API, "CustomResourceDefinition", crd_name)
        if crd is None:
            found.append(
                Check(
                    "dependencies",
                    "fail" if required else "warn",
                    f"{name} is not installed (no CRD {crd_name})",
                    f"install {name} (see docs/admin-guide.md)"
                    + ("" if required else f"; without it Kaiwo workloads that use {name} stay pending"),
                )
            )
            continue
        served = ", ".join(v["name"] for v in crd["spec"].get("versions") or [] if v.get("served"))
        deployments = [d for ns in namespaces for d in await optional_list(client, "apps/v1", "Deployment", ns)]
        version = _image_version(deployments, name.lower().replace("kuberay", "ray"))
        ready = [d for d in deployments if ((d.get("status") or {}).get("readyReplicas") or 0) > 0]
        where = f"version {version}" if version else "version unknown (no Deployment in " + ", ".join(namespaces) + ")"
        if deployments and not ready:
            found.append(
                Check(
                    "dependencies",
                    "fail",
                    f"{name} ({where}) has no ready controller pod",
                    f"kubectl -n {deployments[0]['metadata']['namespace']} describe deployment "
                    f"{deployments[0]['metadata']['name']}",
                )
            )
        else:
            found.append(Check("dependencies", "ok", f"{name} installed: APIs {served}; {where}"))
    if kueue_config is None:
        found.append(
            Check(
                "kueue-config",
                "warn",
                f"Kueue's configuration (ConfigMap {kueueinfo.NAMESPACE}/{kueueinfo.CONFIG_MAP}) cannot be read: "
                "integrations and managed namespaces not checked",
                "run as a cluster administrator, or check Kueue's configuration by hand",
            )
        )
        return found
    enabled = set(((kueue_config.get("integrations") or {}).get("frameworks")) or [])
    missing = [f for f in KUEUE_FRAMEWORKS if f not in enabled]
    if missing:
        found.append(
            Check(
                "kueue-config",
                "fail",
                f"Kueue's integrations lack {', '.join(missing)}: Kaiwo workloads that make these children are "
                "never queued",
                f"add them to integrations.frameworks in {kueueinfo.NAMESPACE}/{kueueinfo.CONFIG_MAP} and "
                "restart Kueue's controller",
            )
        )
    else:
        found.append(Check("kueue-config", "ok", "Kueue's integrations include every framework Kaiwo uses"))
    return found


async def check_namespaces(client: Client, kueue_config: Obj | None) -> list[Check]:
    selector = kueueinfo.managed_selector(kueue_config)
    if selector is None:
        return []
    holding = sorted(
        {
            o["metadata"]["namespace"]
            for kind in ("KaiwoJob", "KaiwoService")
            for o in await optional_list(client, API, kind, None)
        }
    )
    unmanaged = []
    for ns in holding:
        obj = await readable(client, "v1", "Namespace", ns)
        if obj is not None and not explain.selector_matches(selector, obj["metadata"].get("labels") or {}):
            unmanaged.append(ns)
    if unmanaged:
        labels = explain.labels_to_set(selector) or "<labels matching the selector>"
        return [
            Check(
                "namespaces",
                "fail",
                f"Kueue does not manage namespace(s) {', '.join(unmanaged)} (managedJobsNamespaceSelector: "
                f"{explain.describe_selector(selector)}), yet they hold Kaiwo workloads: those wait for ever",
                "; ".join(f"kubectl label namespace {ns} {labels}" for ns in unmanaged),
            )
        ]
    return [Check("namespaces", "ok", f"Kueue manages all {len(holding)} namespace(s) holding Kaiwo workloads")]


def _parse_time(ts: str | None) -> dt.datetime | None:
    return timestamps.parse(ts) if ts else None


async def check_operator(client: Client, namespace: str) -> list[Check]:
    found = []
    lease = await readable(client, "coordination.k8s.io/v1", "Lease", LEASE_NAME, namespace)
    spec = (lease or {}).get("spec") or {}
    renewed = _parse_time(spec.get("renewTime"))
    duration = float(spec.get("leaseDurationSeconds") or 15)
    holder = spec.get("holderIdentity")
    now = dt.datetime.now(dt.UTC)
    if lease is None:
        found.append(
            Check(
                "operator",
                "fail",
                f"no leader Lease {namespace}/{LEASE_NAME}: the operator is not running (or runs elsewhere)",
                "helm status kaiwo; kubectl -n NAMESPACE logs deploy/kaiwo-manager (or pass --operator-namespace)",
            )
        )
    elif not holder or renewed is None or (now - renewed).total_seconds() > 2 * duration:
        found.append(
            Check(
                "operator",
                "fail",
                f"the leader Lease has no live holder (holder {holder or '-'}, renewed {spec.get('renewTime', '-')}): "
                "nothing reconciles Kaiwo workloads",
                f"kubectl -n {namespace} get pods; check the manager's logs for why it lost or cannot take the Lease",
            )
        )
    else:
        found.append(Check("operator", "ok", f"leader {holder}, renewed {(now - renewed).total_seconds():.0f}s ago"))
    deployments = await optional_list(
        client, "apps/v1", "Deployment", namespace, labelSelector="app.kubernetes.io/component=manager"
    )
    for d in deployments:
        want = (d.get("spec") or {}).get("replicas", 1)
        ready = (d.get("status") or {}).get("readyReplicas") or 0
        if ready < 1:
            found.append(
                Check(
                    "operator",
                    "fail",
                    f"Deployment {namespace}/{d['metadata']['name']} has {ready}/{want} ready pods",
                    f"kubectl -n {namespace} describe deployment {d['metadata']['name']}",
                )
            )
        else:
            found.append(Check("operator", "ok", f"Deployment {d['metadata']['name']}: {ready}/{want} ready"))
    if not deployments:
        found.append(
            Check(
                "operator",
                "warn",
                f"no operator Deployment (app.kubernetes.io/component=manager) in {namespace}: readiness not checked",
                "install with the chart (helm install kaiwo charts/kaiwo), or pass --operator-namespace",
            )
        )
    return found


async def check_queue_config(client: Client) -> list[Check]:
    cfg = await readable(client, API, "KaiwoQueueConfig", "kaiwo")
    if cfg is None:
        return [
            Check(
                "queues",
                "fail",
                "no KaiwoQueueConfig kaiwo: the operator has not created the default queues",
                "check that the operator runs (see above); it creates the default config at start",
            )
        ]
    st = cfg.get("status") or {}
    cond = status_condition(st, "Ready") or {}
    if st.get("status") != QueueConfigStatus.READY:
        return [
            Check(
                "queues",
                "fail",
                f"KaiwoQueueConfig kaiwo is {st.get('status') or 'not reconciled yet'}: {cond.get('message', '')}",
                "kubectl get kaiwoqueueconfig kaiwo -o yaml; kaiwo status queues",
            )
        ]
    return [Check("queues", "ok", "KaiwoQueueConfig kaiwo is READY")]


async def check_gpu_nodes(client: Client) -> list[Check]:
    nodes = await client.list("v1", "Node")
    gpu_nodes = [
        n
        for n in nodes
        if any(quantity(((n.get("status") or {}).get("allocatable") or {}).get(k, 0)) > 0 for k in GPU_RESOURCES)
    ]
    if not gpu_nodes:
        return [
            Check(
                "nodes",
                "warn",
                "no node offers amd.com/gpu or nvidia.com/gpu: GPU workloads cannot run",
                "install the vendor's GPU operator / device plugin on the GPU nodes",
            )
        ]
    found = []
    unlabelled = sorted(
        n["metadata"]["name"]
        for n in gpu_nodes
        if not all((n["metadata"].get("labels") or {}).get(k) for k in (L.NODEPOOL, L.GPU_MODEL))
    )
    if unlabelled:
        found.append(
            Check(
                "nodes",
                "fail",
                f"GPU node(s) without Kaiwo's {L.NODEPOOL}/{L.GPU_MODEL} labels: {', '.join(unlabelled)}",
                "the operator labels GPU nodes it discovers; check it runs and that the nodes are not excluded "
                "(KaiwoConfig spec.nodes)",
            )
        )
    by_vendor = {
        k: sum(1 for n in gpu_nodes if k in (n.get("status") or {}).get("allocatable", {})) for k in GPU_RESOURCES
    }
    summary = ", ".join(f"{count} with {k}" for k, count in by_vendor.items() if count)
    found.append(Check("nodes", "ok", f"{len(gpu_nodes)} GPU node(s): {summary}"))
    return found


async def diagnose(client: Client, operator_namespace: str) -> list[Check]:
    kueue_config = await kueueinfo.configuration(client)
    return [
        *await check_crds(client),
        *await check_dependencies(client, kueue_config),
        *await check_namespaces(client, kueue_config),
        *await check_operator(client, operator_namespace),
        *await check_queue_config(client),
        *await check_gpu_nodes(client),
    ]


def render(checks: list[Check]) -> str:
    marks = {"ok": "OK", "warn": "WARN", "fail": "FAIL"}
    rows = [[marks[c.status], c.area, c.message + (f"\n  -> {c.fix}" if c.fix else "")] for c in checks]
    lines = []
    for row in rows:
        head, *rest = row[2].split("\n")
        lines.append([row[0], row[1], head])
        lines += [["", "", r] for r in rest]
    failed = sum(c.status == "fail" for c in checks)
    warned = sum(c.status == "warn" for c in checks)
    return table(["STATUS", "AREA", "FINDING"], lines) + f"\n\n{failed} failed, {warned} warning(s)"


def doctor(
    ctx: typer.Context,
    operator_namespace: Annotated[
        str, typer.Option(help="The namespace the operator runs in (its Lease and Deployment).")
    ] = "kaiwo-system",
    output_format: Annotated[DocFormat | None, typer.Option("-o", "--output", help="json or yaml.")] = None,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
) -> None:
    """Check a cluster for Kaiwo (for administrators): CRDs, Kueue/KubeRay/AppWrapper and Kueue's settings, the
    namespaces Kueue manages, the operator's leader and readiness, the default queues, and GPU nodes. Each
    finding says what to do; exit code 1 when a check fails."""
    out = output(ctx)
    target = Target(kubeconfig, context, None)

    async def main() -> list[Check]:
        async with target.connect() as client:
            return await diagnose(client, operator_namespace)

    checks = run(out, main())
    if output_format is DocFormat.json:
        out.echo(orjson.dumps([asdict(c) for c in checks], option=orjson.OPT_INDENT_2).decode())
    elif output_format is DocFormat.yaml:
        out.echo(yaml.safe_dump([asdict(c) for c in checks], sort_keys=False).rstrip())
    else:
        out.echo(render(checks))
    if any(c.status == "fail" for c in checks):
        raise typer.Exit(1)
