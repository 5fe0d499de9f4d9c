"""Commands that reach into a workload's pods: ``logs``, ``exec``, ``monitor`` and ``port-forward``."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

import typer

from kaiwo.cli.errors import USAGE, CliError
from kaiwo.cli.lookup import choose_container, choose_pod, get_workload, interactive, pods_of
from kaiwo.cli.refs import WorkloadRef, parse_ref
from kaiwo.cli.render import GPU_KEYS
from kaiwo.cli.session import ContextOpt, KubeconfigOpt, NamespaceOpt, Output, Target, handled, output, run
from kaiwo.cli.streams import ExecResult, exec_in_pod, forward_connection
from kaiwo.runtime.client import ApiError, Client

Obj = dict[str, Any]
PodOpt = Annotated[str | None, typer.Option("--pod", help="Pod to use when the workload has several.")]
ContainerOpt = Annotated[str | None, typer.Option("-c", "--container", help="Container (default: the first).")]
RefArg = Annotated[str, typer.Argument(help="job/NAME or service/NAME.", metavar="REF")]
SMI = {
    "amd": ["rocm-smi"],
    "nvidia": ["nvidia-smi", "--query-gpu=index,name,utilization.gpu,memory.used,memory.total", "--format=csv"],
}


def _binary(name: Literal["stdin", "stdout", "stderr"]) -> Any:
    return typer.get_binary_stream(name)


async def _pod(client: Client, ref: WorkloadRef, ns: str, wanted: str | None) -> tuple[Obj, Obj]:
    workload = await get_workload(client, ref, ns)
    return workload, choose_pod(await pods_of(client, workload), wanted, ref, interactive=interactive())


def _prologue(
    ctx: typer.Context, ref: str, kubeconfig: str | None, context: str | None, namespace: str | None
) -> tuple[Output, Target, WorkloadRef, str]:
    """What every pod command starts with: output, cluster, the parsed workload reference and the namespace."""
    out = output(ctx)
    target = Target(kubeconfig, context, namespace)
    with handled(out):
        return out, target, parse_ref(ref), target.resolve_namespace()
    raise AssertionError("unreachable")  # handled() turns every failure into an exit


def _container(out: Output, pod: Obj, wanted: str | None) -> str:
    name, notice = choose_container(pod, wanted)
    if notice:
        out.notice(f"[dim]{notice}[/dim]")
    return name


def _running(pod: Obj, ref: WorkloadRef) -> None:
    phase = (pod.get("status") or {}).get("phase", "Unknown")
    if phase != "Running":
        raise CliError(
            f"pod {pod['metadata']['name']} is {phase}, not Running", f"wait until it runs (kaiwo status {ref.short})"
        )


def logs(
    ctx: typer.Context,
    ref: RefArg,
    follow: Annotated[bool, typer.Option("-f", "--follow", help="Keep streaming new lines.")] = False,
    tail: Annotated[int, typer.Option(help="Only the last N lines (-1: all).")] = -1,
    container: ContainerOpt = None,
    pod: PodOpt = None,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    namespace: NamespaceOpt = None,
) -> None:
    """Print (or follow) the logs of a workload's pod, found by the kaiwo.silogen.ai/run-id label."""
    out, target, parsed, ns = _prologue(ctx, ref, kubeconfig, context, namespace)

    async def main() -> None:
        async with target.connect() as client:
            _, chosen = await _pod(client, parsed, ns, pod)
            name = chosen["metadata"]["name"]
            cname = _container(out, chosen, container)
            params: dict[str, Any] = {"container": cname, "follow": follow}
            if tail >= 0:
                params["tailLines"] = tail
            sink = _binary("stdout")
            try:
                async with client.open_stream(
                    f"/api/v1/namespaces/{ns}/pods/{name}/log", params, timeout=None if follow else 300
                ) as body:
                    async for chunk in body.iter_any():
                        sink.write(chunk)
                        sink.flush()
            except ApiError as e:
                if e.status in (400, 404):
                    raise CliError(
                        f"cannot read the logs of pod {name}: {e.message}",
                        f"the container may not have started yet: kaiwo status {parsed.short}",
                    ) from None
                raise

    run(out, main())


async def _stdin_chunks() -> AsyncIterator[bytes]:
    stream = _binary("stdin")
    while chunk := await asyncio.to_thread(stream.read1, 65536):
        yield chunk


async def _exec(
    client: Client, ns: str, pod: str, container: str, command: list[str], *, stdin: bool = False, capture: bool = False
) -> tuple[ExecResult, bytes, bytes]:
    out_buf, err_buf = bytearray(), bytearray()
    stdout, stderr = _binary("stdout"), _binary("stderr")

    def write(sink: Any, buf: bytearray) -> Any:
        def emit(data: bytes) -> None:
            if capture:
                buf.extend(data)
            else:
                sink.write(data)
                sink.flush()

        return emit

    result = await exec_in_pod(
        client,
        ns,
        pod,
        container,
        command,
        stdout=write(stdout, out_buf),
        stderr=write(stderr, err_buf),
        stdin=_stdin_chunks() if stdin else None,
    )
    return result, bytes(out_buf), bytes(err_buf)


def exec_(
    ctx: typer.Context,
    ref: RefArg,
    command: Annotated[
        list[str], typer.Argument(help="The command and its arguments, after --.", metavar="-- COMMAND [ARGS]...")
    ],
    stdin: Annotated[bool, typer.Option("-i", "--stdin", help="Pass this terminal's stdin to the command.")] = False,
    container: ContainerOpt = None,
    pod: PodOpt = None,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    namespace: NamespaceOpt = None,
) -> None:
    """Run a command in a workload's pod; exits with the command's exit code."""
    out, target, parsed, ns = _prologue(ctx, ref, kubeconfig, context, namespace)

    async def main() -> int:
        async with target.connect() as client:
            _, chosen = await _pod(client, parsed, ns, pod)
            _running(chosen, parsed)
            cname = _container(out, chosen, container)
            name = chosen["metadata"]["name"]
            result, _, _ = await _exec(client, ns, name, cname, command, stdin=stdin)
            if result.error:
                raise CliError(
                    f"cannot run {command[0]!r} in {name}/{cname}: {result.error}",
                    "check the command exists in the container image",
                )
            return result.exit_code

    code = run(out, main())
    if code:
        raise typer.Exit(code)


def _gpu_container(pod: Obj) -> str | None:
    for c in (pod.get("spec") or {}).get("containers") or []:
        limits = (c.get("resources") or {}).get("limits") or {}
        if any(k in limits for k in GPU_KEYS):
            return str(c["name"])
    return None


def monitor(
    ctx: typer.Context,
    ref: RefArg,
    interval: Annotated[float, typer.Option(help="Seconds between refreshes.")] = 2.0,
    once: Annotated[bool, typer.Option("--once", help="Print one reading and exit.")] = False,
    container: ContainerOpt = None,
    pod: PodOpt = None,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    namespace: NamespaceOpt = None,
) -> None:
    """Show GPU utilisation in a workload's pod: rocm-smi (AMD) or nvidia-smi (NVIDIA), by spec.gpuVendor."""
    out, target, parsed, ns = _prologue(ctx, ref, kubeconfig, context, namespace)

    async def main() -> None:
        async with target.connect() as client:
            workload = await get_workload(client, parsed, ns)
            pods = await pods_of(client, workload)
            gpu_pods = [p for p in pods if _gpu_container(p)] or pods
            chosen = choose_pod(gpu_pods, pod, parsed, interactive=interactive())
            _running(chosen, parsed)
            cname = container or _gpu_container(chosen) or choose_container(chosen, None)[0]
            vendor = str((workload.get("spec") or {}).get("gpuVendor") or "amd").lower()
            command = SMI.get(vendor, SMI["amd"])
            name = chosen["metadata"]["name"]
            while True:
                result, text, err = await _exec(client, ns, name, cname, command, capture=True)
                if result.error or result.exit_code:
                    detail = result.error or err.decode(errors="replace").strip() or f"exit code {result.exit_code}"
                    missing = result.exit_code == 127 or "not found" in detail or "no such file" in detail.lower()
                    raise CliError(
                        f"{command[0]} failed in {name}/{cname}: {detail}",
                        f"the image needs {command[0]} (use a ROCm/CUDA base image)"
                        if missing
                        else "check the GPU is visible in the container",
                    )
                if out.out.is_terminal and not once:
                    out.out.clear()
                stamp = dt.datetime.now().strftime("%H:%M:%S")
                out.echo(f"{parsed.short}  pod {name}  container {cname}  {stamp}")
                out.echo(text.decode(errors="replace").rstrip())
                if once:
                    return
                await asyncio.sleep(interval)

    run(out, main())


def parse_ports(specs: list[str]) -> list[tuple[int, int]]:
    """``LOCAL:REMOTE``, ``PORT`` (same both sides) or ``:REMOTE`` (any free local port) -> (local, remote)."""
    pairs = []
    for spec in specs:
        local, sep, remote = spec.partition(":")
        if not sep:
            local = remote = spec
        try:
            pair = (int(local) if local else 0, int(remote))
        except ValueError:
            raise CliError(f"{spec!r} is not a port mapping", "write LOCAL:REMOTE, e.g. 8080:80", code=USAGE) from None
        if not (0 <= pair[0] < 65536 and 0 < pair[1] < 65536):
            raise CliError(f"{spec!r}: ports must be between 1 and 65535", "e.g. 8080:80", code=USAGE)
        pairs.append(pair)
    return pairs


async def serve_forwards(
    out: Output, client: Client, ns: str, pod: str, pairs: list[tuple[int, int]], address: str
) -> None:
    servers = []
    for local, remote in pairs:

        def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, remote: int = remote) -> Any:
            out.debug(f"connection for port {remote}")
            return forward_connection(
                client, ns, pod, remote, reader, writer, lambda msg: out.notice(f"[red]port-forward:[/red] {msg}")
            )

        try:
            server = await asyncio.start_server(handler, address, local)
        except OSError as e:
            raise CliError(
                f"cannot listen on {address}:{local}: {e.strerror or e}",
                "choose another local port (or :REMOTE for any free one)",
            ) from None
        bound = server.sockets[0].getsockname()[1]
        out.echo(f"Forwarding from {address}:{bound} -> {remote}")
        servers.append(server)
    _binary("stdout").flush()
    await asyncio.gather(*(s.serve_forever() for s in servers))


def port_forward(
    ctx: typer.Context,
    ref: RefArg,
    ports: Annotated[list[str], typer.Argument(help="LOCAL:REMOTE, PORT or :REMOTE.", metavar="LOCAL:REMOTE...")],
    address: Annotated[str, typer.Option(help="Local address to listen on.")] = "127.0.0.1",
    pod: PodOpt = None,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    namespace: NamespaceOpt = None,
) -> None:
    """Forward local ports to a workload's pod (a running one; --pod to choose) until Ctrl-C."""
    out, target, parsed, ns = _prologue(ctx, ref, kubeconfig, context, namespace)
    with handled(out):
        pairs = parse_ports(ports)

    async def main() -> None:
        async with target.connect() as client:
            workload = await get_workload(client, parsed, ns)
            pods = await pods_of(client, workload)
            running = [p for p in pods if (p.get("status") or {}).get("phase") == "Running"]
            if pod:
                chosen = choose_pod(pods, pod, parsed, interactive=False)
            elif running:
                chosen = running[0]
            else:
                chosen = choose_pod(pods[:1], None, parsed, interactive=False)  # raises when there are none
            _running(chosen, parsed)
            name = chosen["metadata"]["name"]
            out.notice(f"[dim]forwarding to pod {name}[/dim]")
            await serve_forwards(out, client, ns, name, pairs, address)

    run(out, main())
