"""Finding a workload and its pods: the Kaiwo object by reference, its pods by the ``run-id`` label (the
object's UID, set by the operator on every pod), and choosing one pod and container for logs/exec."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import typer

from kaiwo.api import labels as L
from kaiwo.cli.errors import USAGE, CliError
from kaiwo.cli.refs import WorkloadRef
from kaiwo.runtime.client import Client
from kaiwo.runtime.objects import Obj


async def get_workload(client: Client, ref: WorkloadRef, namespace: str) -> Obj:
    obj = await client.get_or_none(ref.api_version, ref.kind, ref.name, namespace)
    if obj is None:
        raise CliError(
            f"{ref.short} not found in namespace {namespace}",
            "check the name and namespace (-n, or -A with `kaiwo list`)",
        )
    return obj


async def pods_of(client: Client, workload: Obj) -> list[Obj]:
    meta = workload["metadata"]
    pods = await client.list("v1", "Pod", meta["namespace"], labelSelector=f"{L.RUN_ID}={meta['uid']}")
    return sorted(pods, key=lambda p: p["metadata"]["name"])


def choose_pod(pods: Sequence[Obj], wanted: str | None, ref: WorkloadRef, *, interactive: bool) -> Obj:
    """The pod named ``wanted``; else the only pod; else ask (on a terminal); else a usage error listing them."""
    names = [p["metadata"]["name"] for p in pods]
    if wanted:
        for p in pods:
            if p["metadata"]["name"] == wanted:
                return p
        raise CliError(f"{ref.short} has no pod {wanted!r}", f"its pods: {', '.join(names) or 'none'}", code=USAGE)
    if not pods:
        raise CliError(
            f"{ref.short} has no pods yet", f"see why with `kaiwo status {ref.short}` (it may wait for Kueue admission)"
        )
    if len(pods) == 1:
        return pods[0]
    if interactive:
        for i, name in enumerate(names, 1):
            phase = (pods[i - 1].get("status") or {}).get("phase", "")
            typer.echo(f"  {i}) {name}  {phase}", err=True)
        while True:
            choice = typer.prompt("Pod number", type=int, default=1, err=True)
            if 1 <= choice <= len(pods):
                chosen: Obj = pods[choice - 1]
                return chosen
    raise CliError(f"{ref.short} has {len(pods)} pods: {', '.join(names)}", "choose one with --pod NAME", code=USAGE)


def choose_container(pod: Obj, wanted: str | None) -> tuple[str, str]:
    """(container, notice): ``wanted``, else the default-container annotation, else the first container."""
    containers = [str(c["name"]) for c in (pod.get("spec") or {}).get("containers") or []]
    if wanted:
        if wanted not in containers:
            raise CliError(
                f"pod {pod['metadata']['name']} has no container {wanted!r}",
                f"its containers: {', '.join(containers)}",
                code=USAGE,
            )
        return wanted, ""
    annotated = (pod["metadata"].get("annotations") or {}).get("kubectl.kubernetes.io/default-container")
    chosen = str(annotated) if annotated in containers else containers[0]
    others = [c for c in containers if c != chosen]
    return chosen, (f"using container {chosen} (others: {', '.join(others)}; pick with -c)" if others else "")


def interactive() -> bool:
    return sys.stdin.isatty() and sys.stderr.isatty()
