"""``kaiwo-dev``: the local Kubernetes cluster for demos, tests and benchmarks."""

from __future__ import annotations

import asyncio
import os
import shlex
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from kaiwo.devcluster import addons as addon_registry
from kaiwo.devcluster import controllers
from kaiwo.devcluster.build import ADDONS, BENCH, CONTROL_PLANE, TOOLS, Builder, BuildError
from kaiwo.devcluster.cluster import ClusterError, DevCluster, default_state_dir

app = typer.Typer(help=__doc__, no_args_is_help=True, add_completion=False)
err = Console(stderr=True)

StateOpt = Annotated[
    Path | None,
    typer.Option("--state", envvar="KAIWO_DEV_STATE", help="State folder of the cluster (default: per user)."),
]


def _cluster(state: Path | None) -> DevCluster:
    return DevCluster(state or default_state_dir())


def _progress(msg: str) -> None:
    err.print(f"[dim]{msg}[/dim]", highlight=False)


@app.command()
def build(
    prune: Annotated[bool, typer.Option(help="Afterwards delete cached builds that are no longer current.")] = False,
) -> None:
    """Build (or find cached) the control-plane, addon and tool (helm, fake-gcs-server) binaries from Go modules."""
    names = (*CONTROL_PLANE, *ADDONS, *TOOLS)
    builder = Builder(_progress)
    try:
        paths = builder.ensure(names)
        removed = builder.prune((*names, *BENCH)) if prune else []  # a benchmark build stays
    except BuildError as e:
        err.print(f"[red]build failed:[/red] {e}")
        raise typer.Exit(1) from None
    for name, path in paths.items():
        typer.echo(f"{name}\t{path}")
    for entry in removed:
        _progress(f"pruned {entry}")


@app.command()
def up(
    state: StateOpt = None,
    topology: Annotated[
        Path | None, typer.Option(help="Node topology YAML (default: 4 AMD, 2 NVIDIA, 1 CPU node).")
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the cluster.")] = 600,
    addons: Annotated[
        str,
        typer.Option(
            help=f"Addons to run: a comma list of {', '.join(addon_registry.ADDONS)}; all (= "
            f"{', '.join(addon_registry.DEFAULT_ADDONS)}, e.g. all,jaeger), or none."
        ),
    ] = "all",
) -> None:
    """Start the local cluster (idempotent) and print how to use it."""
    cluster = _cluster(state)
    try:
        selected = addon_registry.parse_selection(addons)
    except ValueError as e:
        err.print(f"[red]error:[/red] {e}")
        raise typer.Exit(2) from None
    try:
        kubeconfig = cluster.up(topology=topology, timeout=timeout, addons=selected, progress=_progress)
    except (ClusterError, BuildError) as e:
        err.print(f"[red]error:[/red] {e}")
        raise typer.Exit(1) from None
    st = cluster.status()
    err.print(
        f"[green]local cluster ready[/green] at {st.data.get('server')} (logs: {cluster.layout.logs})", highlight=False
    )
    if "jaeger" in st.data.get("addons", []):
        # Jaeger's web UI assets are built by its release (npm), not part of its Go module: the page there is a
        # placeholder, the query API (/api/services, /api/traces) is complete.
        err.print(f"Jaeger query API: {controllers.jaeger_endpoints(st.data['ports'])['ui']}/api", highlight=False)
    typer.echo(f"export KUBECONFIG={shlex.quote(str(kubeconfig))}")


@app.command()
def down(state: StateOpt = None) -> None:
    """Stop the local cluster and every process it started."""
    if _cluster(state).down():
        err.print("local cluster stopped")
    else:
        err.print("no local cluster was running")


@app.command()
def status(state: StateOpt = None) -> None:
    """Show whether the cluster runs, its components and its nodes."""
    cluster = _cluster(state)
    st = cluster.status()
    typer.echo(f"phase: {st.phase}  {st.message if st.phase != 'ready' else ''}".rstrip())
    if st.phase != "ready":
        raise typer.Exit(0 if st.phase in ("absent", "stopped") else 1)
    typer.echo(f"server: {st.data.get('server')}\nkubeconfig: {cluster.kubeconfig}\nlogs: {cluster.layout.logs}")
    typer.echo(f"addons: {', '.join(st.data.get('addons', [])) or 'none'}")
    if "jaeger" in st.data.get("addons", []):
        for name, url in controllers.jaeger_endpoints(st.data["ports"]).items():
            typer.echo(f"jaeger {name}: {url}")
    asyncio.run(_print_nodes(str(cluster.kubeconfig)))


@app.command()
def nodes(
    kubeconfig: Annotated[str | None, typer.Option(envvar="KUBECONFIG", help="Cluster to show.")] = None,
) -> None:
    """Show the nodes with their GPUs."""
    asyncio.run(_print_nodes(kubeconfig))


async def _print_nodes(kubeconfig: str | None) -> None:
    from kaiwo.runtime.client import Client
    from kaiwo.runtime.objects import condition

    async with await Client.from_kubeconfig(kubeconfig) as client:
        items = await client.list("v1", "Node")
    table = Table("NODE", "READY", "CPU", "MEMORY", "GPU", "GPU PRODUCT")
    for n in sorted(items, key=lambda n: n["metadata"]["name"]):
        cap = n.get("status", {}).get("capacity", {})
        labels = n["metadata"].get("labels", {})
        gpus = ", ".join(f"{v} {k}" for k, v in cap.items() if k.endswith("/gpu"))
        product = labels.get("amd.com/gpu.product-name") or labels.get("nvidia.com/gpu.product") or "-"
        ready = (condition(n, "Ready") or {}).get("status", "?")
        table.add_row(n["metadata"]["name"], ready, cap.get("cpu", "?"), cap.get("memory", "?"), gpus or "-", product)
    Console().print(table)


def main() -> None:
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    app()


if __name__ == "__main__":
    main()
