"""``kaiwo list``, ``kaiwo status`` and ``kaiwo delete``: what runs, why it waits, and removing it."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Annotated, Any

import orjson
import typer
import yaml

from kaiwo.api import labels as L
from kaiwo.api.groups import KAIWO_API as API
from kaiwo.api.groups import KAIWO_CONFIG_API
from kaiwo.cli import explain, gpuview, kueueinfo, render, userconfig
from kaiwo.cli.errors import USAGE, CliError
from kaiwo.cli.lookup import get_workload, pods_of
from kaiwo.cli.refs import WorkloadRef, parse_ref
from kaiwo.cli.session import ContextOpt, KubeconfigOpt, NamespaceOpt, Target, handled, output, run
from kaiwo.runtime.client import ApiError, Client
from kaiwo.runtime.objects import Obj, has_condition
from kaiwo.translate import kueuestate
from kaiwo.translate.meta import sanitize_user

KUEUE = "kueue.x-k8s.io/v1beta1"
CHILD_KINDS = (
    ("batch/v1", "Job"),
    ("apps/v1", "Deployment"),
    ("v1", "Service"),
    ("v1", "PersistentVolumeClaim"),
    ("v1", "ConfigMap"),
    ("ray.io/v1", "RayJob"),
    ("ray.io/v1", "RayService"),
    ("workload.codeflare.dev/v1beta2", "AppWrapper"),
)
CLUSTER_VIEWS = {"amd": "amd.com/gpu", "nvidia": "nvidia.com/gpu"}


class ListFormat(StrEnum):
    wide = "wide"
    json = "json"
    yaml = "yaml"


class DocFormat(StrEnum):
    json = "json"
    yaml = "yaml"


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def clean(obj: Obj) -> Obj:
    return {**obj, "metadata": {k: v for k, v in (obj.get("metadata") or {}).items() if k != "managedFields"}}


def dump(objs: list[Obj], fmt: str, single: bool = False) -> str:
    body: Any = clean(objs[0]) if single else {"apiVersion": "v1", "kind": "List", "items": [clean(o) for o in objs]}
    if fmt == "json":
        return orjson.dumps(body, option=orjson.OPT_INDENT_2).decode()
    return yaml.safe_dump(body, sort_keys=False).rstrip()


def owned_by(obj: Obj, user: str) -> bool:
    """Whether ``obj`` belongs to ``user``: its ``kaiwo.silogen.ai/user`` label (as the operator writes it on
    the children: spec.user made label-safe) or, for objects created without the CLI, its spec.user."""
    want = sanitize_user(user)
    label = (obj["metadata"].get("labels") or {}).get(L.USER)
    return (label or sanitize_user((obj.get("spec") or {}).get("user") or "")) == want


async def optional_list(client: Client, api_version: str, kind: str, namespace: str | None, **params: Any) -> list[Obj]:
    """Objects of a kind the cluster may not serve (KubeRay, AppWrapper, Kueue): none when it does not."""
    try:
        return await client.list(api_version, kind, namespace, **params)
    except ApiError as e:
        if e.not_found:
            return []
        raise


def list_workloads(
    ctx: typer.Context,
    all_namespaces: Annotated[bool, typer.Option("-A", "--all-namespaces", help="Every namespace.")] = False,
    all_users: Annotated[bool, typer.Option("--all-users", help="Everyone's workloads, not only yours.")] = False,
    user: Annotated[
        str | None, typer.Option(help="Show this user's workloads (default: the user in the CLI config).")
    ] = None,
    output_format: Annotated[ListFormat | None, typer.Option("-o", "--output", help="wide, json or yaml.")] = None,
    config: Annotated[str | None, typer.Option("-c", "--config", help="CLI config file.")] = None,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    namespace: NamespaceOpt = None,
) -> None:
    """List KaiwoJobs and KaiwoServices with status, user, queue, GPUs and age (yours, unless --all-users)."""
    out = output(ctx)
    target = Target(kubeconfig, context, namespace)
    with handled(out):
        ns = None if all_namespaces else target.resolve_namespace()
        cfg = userconfig.load(userconfig.config_path(config))
        who = None if all_users else (user or (cfg.user if cfg else ""))
        if who == "":
            out.notice("[dim]no user configured (--user or the CLI config): showing all users[/dim]")
            who = None

    async def main() -> None:
        async with target.connect() as client:
            objs = [
                {**o, "apiVersion": API, "kind": kind}
                for kind in ("KaiwoJob", "KaiwoService")
                for o in await client.list(API, kind, ns)
            ]
        if who is not None:
            objs[:] = [o for o in objs if owned_by(o, who)]
        if output_format in (ListFormat.json, ListFormat.yaml):
            out.echo(dump(objs, output_format.value))
            return
        if not objs:
            scope = "any namespace" if ns is None else f"namespace {ns}"
            out.notice(f"no workloads{f' of {who}' if who else ''} in {scope}")
            return
        out.echo(render.workload_table(objs, now(), namespaces=ns is None, wide=output_format is ListFormat.wide))

    run(out, main())


async def gather(client: Client, ref: WorkloadRef, ns: str) -> Obj:
    """Everything that explains a workload, read once: the CR, its children and pods, Kueue's Workloads (owned by
    a child, or by a pod under Kueue's pod integration), its LocalQueue and ClusterQueue, its namespace, Kueue's
    managedJobsNamespaceSelector and the related events. Objects a scientist may not read are None."""
    obj = await get_workload(client, ref, ns)
    uid = obj["metadata"]["uid"]
    # List items carry no kind: it is set here, as the renderer goes by it.
    children = [
        {**c, "apiVersion": api, "kind": kind}
        for api, kind in CHILD_KINDS
        for c in await optional_list(client, api, kind, ns, labelSelector=f"{L.RUN_ID}={uid}")
    ]
    pods = [{**p, "kind": "Pod"} for p in await pods_of(client, obj)]
    child_uids = {c["metadata"]["uid"] for c in children}
    owners = child_uids | {p["metadata"]["uid"] for p in pods}
    kueue = [
        {**w, "kind": "Workload"}
        for w in await optional_list(client, KUEUE, "Workload", ns)
        if any(r.get("uid") in owners for r in w["metadata"].get("ownerReferences") or [])
    ]
    queue = (obj.get("spec") or {}).get("clusterQueue") or render.child_queue(children) or await default_queue(client)
    local_queue = await readable(client, KUEUE, "LocalQueue", queue, ns)
    cq_name = ((local_queue or {}).get("spec") or {}).get("clusterQueue")
    cluster_queue = await readable(client, KUEUE, "ClusterQueue", cq_name) if cq_name else None
    related = owners | {uid} | {w["metadata"]["uid"] for w in kueue}
    events = sorted(
        (e for e in await client.list("v1", "Event", ns) if (e.get("involvedObject") or {}).get("uid") in related),
        key=render.event_time,
    )
    return {
        "object": obj,
        "queue": queue,
        "children": children,
        "pods": pods,
        "kueue": kueue,
        "local_queue": local_queue,
        "cluster_queue": cluster_queue,
        "namespace": await readable(client, "v1", "Namespace", ns),
        "kueue_selector": kueueinfo.managed_selector(await kueueinfo.configuration(client)),
        "events": events,
    }


async def readable(client: Client, api_version: str, kind: str, name: str, ns: str | None = None) -> Obj | None:
    """The object, or None when it is missing, its kind is not served, or we may not read it."""
    try:
        return await client.get_or_none(api_version, kind, name, ns)
    except ApiError:
        return None


def explanation(facts: Obj) -> tuple[str, str, list[explain.Finding]]:
    phase, reason = explain.phase_reason(facts["object"])
    found = explain.findings(
        facts["object"],
        queue=facts["queue"],
        children=facts["children"],
        pods=facts["pods"],
        kueue=facts["kueue"],
        local_queue=facts["local_queue"],
        cluster_queue=facts["cluster_queue"],
        namespace=facts["namespace"],
        kueue_selector=facts["kueue_selector"],
        events=facts["events"],
    )
    return phase, reason, found


async def describe(client: Client, ref: WorkloadRef, ns: str) -> str:
    facts = await gather(client, ref, ns)
    _, reason, found = explanation(facts)
    cq = facts["cluster_queue"]
    text = render.describe_workload(
        facts["object"],
        queue=facts["queue"],
        children=facts["children"],
        pods=facts["pods"],
        kueue=facts["kueue"],
        local_queue=facts["local_queue"],
        events=facts["events"][-20:],
        now=now(),
        reason=reason,
        why=explain.render_findings(found),
        usage=explain.usage_line(cq) if cq else "",
    )
    extra = gpuview.workload_lines(facts["object"], await gpu_records(client, ns), now())
    return "\n".join([text, *extra]) if extra else text


async def describe_document(client: Client, ref: WorkloadRef, ns: str) -> Obj:
    """``kaiwo status KIND/NAME -o json|yaml``: the explanation as data, with the workload object itself."""
    facts = await gather(client, ref, ns)
    phase, reason, found = explanation(facts)
    cq = facts["cluster_queue"]
    meta = facts["object"]["metadata"]
    return {
        "kind": facts["object"]["kind"],
        "name": meta["name"],
        "namespace": meta.get("namespace"),
        "phase": phase,
        "reason": reason,
        "findings": [f.as_dict() for f in found],
        "queue": {
            "localQueue": facts["queue"],
            "localQueueFound": facts["local_queue"] is not None,
            "clusterQueue": cq["metadata"]["name"] if cq else None,
            "clusterQueueState": kueuestate.verdict("ClusterQueue", cq).state if cq else None,
            "usage": {k: {"used": u, "quota": q} for k, (u, q) in explain.usage(cq).items()} if cq else None,
        },
        "namespaceManagedByKueue": (
            None
            if facts["namespace"] is None or facts["kueue_selector"] is None
            else explain.selector_matches(facts["kueue_selector"], facts["namespace"]["metadata"].get("labels") or {})
        ),
        "workloads": [
            {
                "name": w["metadata"]["name"],
                "owner": next((f"{r['kind']}/{r['name']}" for r in w["metadata"].get("ownerReferences") or []), None),
                "admitted": has_condition(w, "Admitted"),
                "clusterQueue": ((w.get("status") or {}).get("admission") or {}).get("clusterQueue"),
                "conditions": (w.get("status") or {}).get("conditions") or [],
            }
            for w in facts["kueue"]
        ],
        "children": [
            {"kind": c["kind"], "name": c["metadata"]["name"], "state": render.child_state(c)}
            for c in facts["children"]
        ],
        "pods": [
            {
                "name": p["metadata"]["name"],
                "state": render.child_state(p),
                "node": (p.get("spec") or {}).get("nodeName"),
            }
            for p in facts["pods"]
        ],
        "object": clean(facts["object"]),
    }


async def gpu_records(client: Client, ns: str | None) -> list[Obj]:
    """GpuWorkload records (kaiwo.cli.gpuview); none when the CRD is absent or the user may not read them."""
    try:
        return await optional_list(client, API, "GpuWorkload", ns)
    except ApiError as e:
        if e.status == 403:
            return []
        raise


async def default_queue(client: Client) -> str:
    """KaiwoConfig's default ClusterQueue name, or its default ``kaiwo`` when the config cannot be read."""
    try:
        cfg = await client.get_or_none(KAIWO_CONFIG_API, "KaiwoConfig", "kaiwo")
    except ApiError:  # scientists often may not read cluster-scoped objects
        cfg = None
    return str(((cfg or {}).get("spec") or {}).get("defaultClusterQueueName") or "kaiwo")


async def cluster_view(client: Client, what: str) -> str:
    if what == "queues":
        cqs = await client.list(KUEUE, "ClusterQueue")
        lqs = await client.list(KUEUE, "LocalQueue")
        if not cqs:
            return "no ClusterQueues (is Kueue installed and configured?)"
        workloads: list[Obj] = []
        if any(c["metadata"].get("deletionTimestamp") for c in cqs):  # name what keeps it terminating
            try:
                workloads = await client.list(KUEUE, "Workload")
            except ApiError:  # scientists may not list every namespace's Workloads
                workloads = []
        return render.queue_table(cqs, lqs, workloads)
    nodes = await client.list("v1", "Node")
    pods = await client.list("v1", "Pod", fieldSelector="status.phase!=Succeeded,status.phase!=Failed")
    key = CLUSTER_VIEWS[what]
    if not any(render.quantity(((n.get("status") or {}).get("allocatable") or {}).get(key, 0)) for n in nodes):
        return f"no nodes with {key}"
    tracked = gpuview.node_utilisation(await gpu_records(client, None), pods, key)
    lines = gpuview.node_lines(gpuview.node_annotations(nodes, key, now()), tracked)
    return render.node_table(nodes, pods, key) + "\n\n" + lines


def status(
    ctx: typer.Context,
    what: Annotated[
        str,
        typer.Argument(
            help="job/NAME or service/NAME; or amd, nvidia (GPU nodes), queues (Kueue ClusterQueues).", metavar="TARGET"
        ),
    ],
    output_format: Annotated[
        DocFormat | None,
        typer.Option(
            "-o",
            "--output",
            help="For a workload: the explanation as json or yaml (phase, reason, findings, queue usage, Kueue "
            "Workloads, children, pods) with the object itself under `object`.",
        ),
    ] = None,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    namespace: NamespaceOpt = None,
) -> None:
    """Why a workload is where it is: its phase and reason, then what holds it (a namespace Kueue does not
    manage, a missing or inactive queue, Kueue's pending reason with the ClusterQueue's usage against quota,
    unbound volumes and downloads, unschedulable pods, preemption), conditions, children and events. Or the
    cluster's GPU nodes and queues."""
    out = output(ctx)
    target = Target(kubeconfig, context, namespace)
    if what in (*CLUSTER_VIEWS, "queues"):

        async def cluster() -> None:
            async with target.connect() as client:
                out.echo(await cluster_view(client, what))

        run(out, cluster())
        return
    with handled(out):
        ref = parse_ref(what) if "/" in what else _bad_target(what)
        ns = target.resolve_namespace()

    async def workload() -> None:
        async with target.connect() as client:
            if output_format is DocFormat.json:
                doc = await describe_document(client, ref, ns)
                out.echo(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode())
            elif output_format is DocFormat.yaml:
                out.echo(yaml.safe_dump(await describe_document(client, ref, ns), sort_keys=False).rstrip())
            else:
                out.echo(await describe(client, ref, ns))

    run(out, workload())


def _bad_target(what: str) -> WorkloadRef:
    raise CliError(
        f"{what!r} is neither a workload (job/NAME, service/NAME) nor amd, nvidia or queues",
        "e.g. kaiwo status job/my-training, or kaiwo status queues",
        code=USAGE,
    )


def delete(
    ctx: typer.Context,
    refs: Annotated[list[str], typer.Argument(help="job/NAME or service/NAME (several allowed).", metavar="REF...")],
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    namespace: NamespaceOpt = None,
) -> None:
    """Delete workloads; their Jobs, Deployments, pods and volumes go with them."""
    out = output(ctx)
    target = Target(kubeconfig, context, namespace)
    with handled(out):
        parsed = [parse_ref(r) for r in refs]
        ns = target.resolve_namespace()

    async def main() -> None:
        async with target.connect() as client:
            for ref in parsed:
                await get_workload(client, ref, ns)
                await client.delete(ref.api_version, ref.kind, ref.name, ns, propagation="Background")
                out.echo(f"{ref.qualified} deleted")

    run(out, main())
