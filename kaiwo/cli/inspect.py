"""``kaiwo list``, ``kaiwo status`` and ``kaiwo delete``: what runs, why it waits, and removing it."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Annotated, Any

import orjson
import typer
import yaml

from kaiwo.api import labels as L
from kaiwo.api.config import API_VERSION as KAIWO_CONFIG_API
from kaiwo.cli import render, userconfig
from kaiwo.cli.errors import USAGE, CliError
from kaiwo.cli.lookup import get_workload, pods_of
from kaiwo.cli.refs import WorkloadRef, parse_ref
from kaiwo.cli.session import ContextOpt, KubeconfigOpt, NamespaceOpt, Target, handled, output, run
from kaiwo.runtime.client import ApiError, Client
from kaiwo.translate.meta import sanitize_user

Obj = dict[str, Any]
API = "kaiwo.silogen.ai/v1alpha1"
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


async def describe(client: Client, ref: WorkloadRef, ns: str) -> str:
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
    kueue = [
        w
        for w in await optional_list(client, KUEUE, "Workload", ns)
        if any(r.get("uid") in child_uids for r in w["metadata"].get("ownerReferences") or [])
    ]
    queue = (obj.get("spec") or {}).get("clusterQueue") or render.child_queue(children) or await default_queue(client)
    try:
        local_queue = await client.get_or_none(KUEUE, "LocalQueue", queue, ns)
    except ApiError as e:
        if not e.not_found:
            raise
        local_queue = None
    related = {uid} | child_uids | {p["metadata"]["uid"] for p in pods} | {w["metadata"]["uid"] for w in kueue}
    events = sorted(
        (e for e in await client.list("v1", "Event", ns) if (e.get("involvedObject") or {}).get("uid") in related),
        key=render.event_time,
    )[-20:]
    return render.describe_workload(
        obj, queue=queue, children=children, pods=pods, kueue=kueue, local_queue=local_queue, events=events, now=now()
    )


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
    return render.node_table(nodes, pods, key)


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
        typer.Option("-o", "--output", help="For a workload: print the object as json or yaml instead."),
    ] = None,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    namespace: NamespaceOpt = None,
) -> None:
    """Why a workload is where it is (status, conditions, Kueue admission, children, events), or the cluster's
    GPU nodes and queues."""
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
            if output_format is not None:
                out.echo(dump([await get_workload(client, ref, ns)], output_format.value, single=True))
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
