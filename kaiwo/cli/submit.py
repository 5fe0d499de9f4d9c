"""``kaiwo submit``: create or update workloads from manifests by server-side apply, then optionally wait."""

from __future__ import annotations

import asyncio
import sys
import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
import yaml

from kaiwo.api.common import WorkloadStatus
from kaiwo.api.groups import KAIWO_API
from kaiwo.cli import userconfig
from kaiwo.cli.errors import USAGE, CliError
from kaiwo.cli.manifests import Defaults, choose_defaults, fill, is_workload, load_documents, place
from kaiwo.cli.refs import qualified_name
from kaiwo.cli.render import conditions_problem, phase, workload_type
from kaiwo.cli.session import ContextOpt, KubeconfigOpt, NamespaceOpt, Output, Target, handled, output, run
from kaiwo.runtime.client import Client
from kaiwo.runtime.objects import Obj

FIELD_MANAGER = "kaiwo-cli"
DONE = {"job": {WorkloadStatus.COMPLETE}, "service": {WorkloadStatus.RUNNING}}
BAD = {WorkloadStatus.FAILED, WorkloadStatus.ERROR, WorkloadStatus.TERMINATED}


class DryRun(StrEnum):
    client = "client"
    server = "server"


class Format(StrEnum):
    yaml = "yaml"
    json = "json"


def read_sources(files: list[str]) -> list[Obj]:
    docs: list[Obj] = []
    for f in files:
        if f == "-":
            text, source = sys.stdin.read(), "<stdin>"
        else:
            path = Path(f)
            if not path.is_file():
                raise CliError(f"{f}: no such file", "check the path (use -f - to read from stdin)", code=USAGE)
            text, source = path.read_text(), f
        docs += load_documents(text, source)
    return docs


def resolve_defaults(out: Output, docs: list[Obj], user: str | None, queue: str | None, config: str | None) -> Defaults:
    """Flags, then the config file; on the very first run at a terminal, offer to write the config file."""
    path = userconfig.config_path(config)
    cfg = userconfig.load(path)
    needs_user = any(is_workload(d) and not (d.get("spec") or {}).get("user") for d in docs)
    if cfg is None and not user and needs_user and sys.stdin.isatty():
        cfg = first_run(out, path)
    cfg = cfg or userconfig.UserConfig()
    defaults = choose_defaults(user, queue, cfg.user, cfg.cluster_queue)
    if needs_user and not defaults.user:
        out.notice(
            f"[yellow]note:[/yellow] no user set, so `kaiwo list` will not show this as yours; pass --user "
            f"or write user: and clusterQueue: to {path}"
        )
    return defaults


def first_run(out: Output, path: Path) -> userconfig.UserConfig | None:
    out.notice(f"No Kaiwo config at {path}. It records who you are (spec.user) and your ClusterQueue.")
    if not typer.confirm("Create it now?", default=True, err=True):
        return None
    while True:
        try:
            user = userconfig.validate_email(typer.prompt("Your e-mail", err=True))
            break
        except ValueError as e:
            out.notice(f"[red]{e}[/red]")
    queue = typer.prompt("ClusterQueue", default=userconfig.DEFAULT_QUEUE, err=True)
    cfg = userconfig.UserConfig(user=user, cluster_queue=queue)
    userconfig.save(path, cfg)
    out.notice(f"wrote {path}")
    return cfg


def strip(obj: Obj) -> Obj:
    """An object without the fields the server changes on every write (for before/after comparisons)."""
    meta = {
        k: v
        for k, v in (obj.get("metadata") or {}).items()
        if k not in ("managedFields", "resourceVersion", "generation")
    }
    return {**{k: v for k, v in obj.items() if k != "status"}, "metadata": meta}


def contains(live: Any, wanted: Any) -> bool:
    """Whether every field of ``wanted`` has the same value in ``live`` (client dry run: would apply change it?)."""
    if isinstance(wanted, dict):
        return isinstance(live, dict) and all(contains(live.get(k), v) for k, v in wanted.items())
    return bool(live == wanted)


async def apply_one(
    client: Client, doc: Obj, target: Target, namespace: str, dry_run: DryRun | None, force: bool
) -> tuple[str, Obj]:
    res = await client.resource(doc["apiVersion"], doc["kind"])
    obj = place(doc, target.namespace, namespace, res.namespaced)
    meta = obj["metadata"]
    live = await client.get_or_none(obj["apiVersion"], obj["kind"], meta["name"], meta.get("namespace"))
    if dry_run is DryRun.client:
        verb = "created" if live is None else "unchanged" if contains(live, obj) else "configured"
        return verb, obj
    result = await client.apply(obj, FIELD_MANAGER, force=force, dry_run=dry_run is DryRun.server)
    if live is None:
        return "created", result
    # Not by resourceVersion: the operator may write the status between the GET and the apply.
    return ("unchanged" if strip(result) == strip(live) else "configured"), result


async def wait_for(out: Output, client: Client, objs: list[Obj], timeout: float) -> int:
    """Follow each workload's status until it is done (COMPLETE for jobs, RUNNING for services) or bad."""
    deadline = time.monotonic() + timeout if timeout > 0 else None
    pending = {
        (o["kind"], o["metadata"]["namespace"], o["metadata"]["name"]): o["metadata"].get("generation", 0) for o in objs
    }
    failed = 0
    with out.spinner("waiting") as update:
        while pending:
            for key, generation in list(pending.items()):
                kind, ns, name = key
                obj = await client.get_or_none(KAIWO_API, kind, name, ns)
                label = f"{workload_type({'kind': kind})}/{name}"
                if obj is None:
                    raise CliError(f"{label} was deleted while waiting", "")
                status = obj.get("status") or {}
                if status.get("observedGeneration", 0) < generation:
                    update(f"{label}: waiting for the operator")
                    continue
                now = phase(obj)
                problem = conditions_problem(obj)
                update(f"{label}: {now}" + (f" ({problem})" if problem else ""))
                if now in DONE[workload_type(obj)] or now in BAD:
                    del pending[key]
                    out.echo(f"{qualified_name(kind, name)} {now}")
                    if now in BAD:
                        failed += 1
                        out.error(
                            CliError(f"{label} is {now}: {problem or 'see events'}", f"kaiwo status {label} -n {ns}")
                        )
            if pending:
                if deadline is not None and time.monotonic() > deadline:
                    raise CliError(
                        f"timed out after {timeout:g}s waiting for {', '.join(n for _, _, n in pending)}",
                        "see `kaiwo status` for why",
                    )
                await asyncio.sleep(1.0)
    return 1 if failed else 0


def submit(
    ctx: typer.Context,
    files: Annotated[
        list[str],
        typer.Option(
            "-f", "--filename", help="Manifest file (YAML/JSON, several documents allowed); - reads stdin. Repeatable."
        ),
    ],
    user: Annotated[str | None, typer.Option(help="spec.user for workloads that have none.")] = None,
    queue: Annotated[str | None, typer.Option(help="spec.clusterQueue for workloads that have none.")] = None,
    config: Annotated[
        str | None,
        typer.Option(
            "-c", "--config", help="CLI config file (default: $KAIWOCONFIG, else ~/.config/kaiwo/kaiwoconfig.yaml)."
        ),
    ] = None,
    dry_run: Annotated[
        DryRun | None,
        typer.Option(
            "--dry-run", help="client: change nothing, only show; server: let the cluster validate without saving."
        ),
    ] = None,
    wait: Annotated[
        bool,
        typer.Option(
            "--wait",
            help="Follow the workloads until COMPLETE (jobs) or RUNNING "
            "(services); exit 1 if one becomes FAILED, ERROR or TERMINATED.",
        ),
    ] = False,
    timeout: Annotated[float, typer.Option(help="With --wait: give up after this many seconds (0: never).")] = 0,
    force_conflicts: Annotated[bool, typer.Option(help="Take over fields another manager owns.")] = False,
    output_format: Annotated[Format | None, typer.Option("-o", "--output", help="Print the resulting objects.")] = None,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    namespace: NamespaceOpt = None,
) -> None:
    """Create or update workloads from manifests (server-side apply, field manager kaiwo-cli).

    spec.user and spec.clusterQueue are filled in only where a manifest leaves them out: from --user/--queue,
    else from the CLI config file. The namespace is -n, else the manifest's, else the kubeconfig context's.
    """
    out = output(ctx)
    if wait and dry_run:
        out.error(CliError("--wait cannot be combined with --dry-run", "drop one of them", code=USAGE))
        raise typer.Exit(USAGE)
    target = Target(kubeconfig, context, namespace)
    with handled(out):
        docs = read_sources(files)
        defaults = resolve_defaults(out, docs, user, queue, config)
        docs = [fill(d, defaults) for d in docs]
        ns = target.resolve_namespace()

    async def main() -> int:
        results = []
        async with target.connect() as client:
            out.debug(f"API server {client.host}, namespace {ns}")
            for doc in docs:
                verb, obj = await apply_one(client, doc, target, ns, dry_run, force_conflicts)
                suffix = f" ({dry_run.value} dry run)" if dry_run else ""
                out.echo(f"{qualified_name(obj['kind'], obj['metadata']['name'], obj['apiVersion'])} {verb}{suffix}")
                results.append(obj)
            if output_format is Format.yaml:
                out.echo(yaml.safe_dump_all([strip_managed(o) for o in results], sort_keys=False).rstrip())
            elif output_format is Format.json:
                items = [strip_managed(o) for o in results]
                body = items[0] if len(items) == 1 else {"apiVersion": "v1", "kind": "List", "items": items}
                out.echo(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode())
            if wait:
                return await wait_for(out, client, [o for o in results if is_workload(o)], timeout)
        return 0

    code = run(out, main())
    if code:
        raise typer.Exit(code)


def strip_managed(obj: Obj) -> Obj:
    return {**obj, "metadata": {k: v for k, v in (obj.get("metadata") or {}).items() if k != "managedFields"}}
