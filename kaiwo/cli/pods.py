"""Commands that reach into a workload's pods: ``logs``, ``exec``, ``monitor`` and ``port-forward``."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import errno
import os
import signal
import sys
import termios
import tty as ttymode
from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any, Literal

import typer

from kaiwo.cli.errors import USAGE, CliError
from kaiwo.cli.lookup import choose_container, choose_pod, get_workload, interactive, pods_of
from kaiwo.cli.refs import WorkloadRef, parse_ref
from kaiwo.cli.render import GPU_KEYS
from kaiwo.cli.session import ContextOpt, KubeconfigOpt, NamespaceOpt, Output, Target, handled, output, run
from kaiwo.cli.streams import ExecResult, exec_in_pod, forward_connection
from kaiwo.runtime.client import ApiError, Client
from kaiwo.runtime.objects import Obj

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


async def _terminal_chunks(fd: int) -> AsyncIterator[bytes]:
    """Keystrokes of a terminal as they come. Read through the event loop, not a thread: a thread blocked in
    read() would keep the process alive after the remote command has ended."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes] = asyncio.Queue()

    def readable() -> None:
        try:
            data = os.read(fd, 65536)
        except OSError:
            data = b""
        if not data:
            loop.remove_reader(fd)
        queue.put_nowait(data)

    loop.add_reader(fd, readable)
    try:
        while data := await queue.get():
            yield data
    finally:
        loop.remove_reader(fd)


async def _terminal_sizes(fd: int) -> AsyncIterator[tuple[int, int]]:
    """(columns, rows) of the terminal now and after every SIGWINCH."""
    loop = asyncio.get_running_loop()
    changed = asyncio.Event()
    try:
        loop.add_signal_handler(signal.SIGWINCH, changed.set)
    except (RuntimeError, ValueError):  # not the main thread (an embedding caller): the first size only
        size = os.get_terminal_size(fd)
        yield size.columns, size.lines
        return
    try:
        while True:
            size = os.get_terminal_size(fd)
            yield size.columns, size.lines
            await changed.wait()
            changed.clear()
    finally:
        loop.remove_signal_handler(signal.SIGWINCH)


@contextlib.contextmanager
def _raw_terminal(fd: int) -> Iterator[None]:
    """Keystrokes go to the remote TTY unprocessed (Ctrl-C included); the terminal is restored on any exit."""
    saved = termios.tcgetattr(fd)
    ttymode.setraw(fd)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


async def _exec(
    client: Client,
    ns: str,
    pod: str,
    container: str,
    command: list[str],
    *,
    stdin: bool = False,
    capture: bool = False,
    tty: bool = False,
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

    fd = sys.stdin.fileno() if tty else -1
    source = (_terminal_chunks(fd) if tty else _stdin_chunks()) if stdin else None
    with _raw_terminal(fd) if tty and stdin else contextlib.nullcontext():
        result = await exec_in_pod(
            client,
            ns,
            pod,
            container,
            command,
            stdout=write(stdout, out_buf),
            stderr=write(stderr, err_buf),
            stdin=source,
            tty=tty,
            sizes=_terminal_sizes(fd) if tty else None,
        )
    return result, bytes(out_buf), bytes(err_buf)


def _stdin_is_terminal() -> bool:
    try:
        return os.isatty(sys.stdin.fileno())
    except (OSError, ValueError):  # no stdin at all, or a test runner's replacement
        return False


def exec_command(argv: list[str] | None, shell: str | None) -> list[str]:
    """The command to run: the words after ``--``, or ``--command`` as a shell line (``/bin/sh -c``)."""
    if argv and shell is not None:
        raise CliError("give the command after -- or with --command, not both", "e.g. --command 'ls -l'", code=USAGE)
    if shell is not None:
        return ["/bin/sh", "-c", shell]
    if not argv:
        raise CliError("no command to run", "kaiwo exec job/NAME -it -- bash, or --command 'nvidia-smi'", code=USAGE)
    return argv


def exec_(
    ctx: typer.Context,
    ref: RefArg,
    command: Annotated[
        list[str] | None,
        typer.Argument(help="The command and its arguments, after --.", metavar="[-- COMMAND [ARGS]...]"),
    ] = None,
    shell_command: Annotated[
        str | None,
        typer.Option(
            "--command",
            help="A shell command line, run with /bin/sh -c (as upstream Kaiwo). With it, -i and -t default to on "
            "when this terminal is interactive.",
        ),
    ] = None,
    stdin: Annotated[
        bool | None, typer.Option("--stdin/--no-stdin", "-i", help="Pass this terminal's stdin to the command.")
    ] = None,
    tty: Annotated[
        bool | None,
        typer.Option(
            "--tty/--no-tty", "-t", help="Allocate a terminal in the container (with -i: an interactive shell)."
        ),
    ] = None,
    container: ContainerOpt = None,
    pod: PodOpt = None,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    namespace: NamespaceOpt = None,
) -> None:
    """Run a command in a workload's pod; exits with the command's exit code. `-it -- bash` opens a shell."""
    with handled(output(ctx)):  # a usage error needs no cluster
        argv = exec_command(command, shell_command)
    out, target, parsed, ns = _prologue(ctx, ref, kubeconfig, context, namespace)
    terminal = _stdin_is_terminal()
    use_stdin = stdin if stdin is not None else shell_command is not None and terminal
    use_tty = tty if tty is not None else shell_command is not None and terminal
    if use_tty and not terminal:
        out.notice("[dim]no TTY: this input is not a terminal[/dim]")  # as kubectl: run without one
        use_tty = False

    async def main() -> int:
        async with target.connect() as client:
            _, chosen = await _pod(client, parsed, ns, pod)
            _running(chosen, parsed)
            cname = _container(out, chosen, container)
            name = chosen["metadata"]["name"]
            result, _, _ = await _exec(client, ns, name, cname, argv, stdin=use_stdin, tty=use_tty)
            if result.error:
                raise CliError(
                    f"cannot run {argv[0]!r} in {name}/{cname}: {result.error}",
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


RENDEZVOUS_PORT_NAME = "rendezvous"  # the headless Service of a multi-node job: torchrun's, not a user endpoint


def _selects(service: Obj, pod: Obj) -> bool:
    selector = (service.get("spec") or {}).get("selector") or {}
    return bool(selector) and selector.items() <= (pod["metadata"].get("labels") or {}).items()


def _container_ports(pod: Obj) -> list[Obj]:
    return [p for c in (pod.get("spec") or {}).get("containers") or [] for p in c.get("ports") or []]


def discover_ports(pod: Obj, services: list[Obj]) -> tuple[list[int], str]:
    """The pod's ports worth forwarding, and where they were found: the target ports of the Services that select
    the pod (named target ports resolved through the containers), else the containers' declared TCP ports."""
    found: list[int] = []
    for svc in sorted(services, key=lambda s: str(s["metadata"]["name"])):
        if not _selects(svc, pod):
            continue
        for port in (svc.get("spec") or {}).get("ports") or []:
            if port.get("name") == RENDEZVOUS_PORT_NAME or port.get("protocol", "TCP") != "TCP":
                continue
            target = port.get("targetPort", port.get("port"))
            if isinstance(target, str):
                target = next((p["containerPort"] for p in _container_ports(pod) if p.get("name") == target), None)
            if isinstance(target, int) and target not in found:
                found.append(target)
    if found:
        return found, "its Service"
    declared = [int(p["containerPort"]) for p in _container_ports(pod) if p.get("protocol", "TCP") == "TCP"]
    return list(dict.fromkeys(declared)), "its containers"


async def serve_forwards(
    out: Output,
    client: Client,
    ns: str,
    pod: str,
    pairs: list[tuple[int, int]],
    address: str,
    *,
    any_port_if_busy: bool = False,
) -> None:
    servers = []
    for local, remote in pairs:

        def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, remote: int = remote) -> Any:
            out.debug(f"connection for port {remote}")
            return forward_connection(
                client, ns, pod, remote, reader, writer, lambda msg: out.notice(f"[red]port-forward:[/red] {msg}")
            )

        try:
            try:
                server = await asyncio.start_server(handler, address, local)
            except OSError as e:
                if not (any_port_if_busy and e.errno == errno.EADDRINUSE):
                    raise
                server = await asyncio.start_server(handler, address, 0)
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
    ports: Annotated[
        list[str] | None,
        typer.Argument(
            help="LOCAL:REMOTE, PORT or :REMOTE. Without any: the ports of the Service that selects the pod, else the "
            "containers' declared ports, each on the same local port (or a free one when taken).",
            metavar="[LOCAL:REMOTE]...",
        ),
    ] = None,
    address: Annotated[str, typer.Option(help="Local address to listen on.")] = "127.0.0.1",
    pod: PodOpt = None,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    namespace: NamespaceOpt = None,
) -> None:
    """Forward local ports to a workload's pod (a running one; --pod to choose) until Ctrl-C."""
    out, target, parsed, ns = _prologue(ctx, ref, kubeconfig, context, namespace)
    with handled(out):
        pairs = parse_ports(ports or [])

    async def main() -> None:
        async with target.connect() as client:
            workload = await get_workload(client, parsed, ns)
            pods = await pods_of(client, workload)
            running = [p for p in pods if (p.get("status") or {}).get("phase") == "Running"]
            services = [] if pairs else await client.list("v1", "Service", ns)
            if pod:
                chosen = choose_pod(pods, pod, parsed, interactive=False)
            elif running:
                # a pod a Service selects (e.g. a Ray head) is the workload's endpoint
                served = [p for p in running if discover_ports(p, services)[1] == "its Service"]
                chosen = (served or running)[0]
            else:
                chosen = choose_pod(pods[:1], None, parsed, interactive=False)  # raises when there are none
            _running(chosen, parsed)
            name = chosen["metadata"]["name"]
            wanted = pairs
            if not wanted:
                found, source = discover_ports(chosen, services)
                if not found:
                    raise CliError(
                        f"no port to forward: no Service selects pod {name} and its containers declare no ports",
                        f"name the ports: kaiwo port-forward {parsed.short} 8080:80",
                        code=USAGE,
                    )
                out.notice(f"[dim]ports {', '.join(map(str, found))} from {source}[/dim]")
                wanted = [(p, p) for p in found]
            out.notice(f"[dim]forwarding to pod {name}[/dim]")
            await serve_forwards(out, client, ns, name, wanted, address, any_port_if_busy=not pairs)

    run(out, main())
