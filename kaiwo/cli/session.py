"""What every command shares: output (verbosity, colour, spinners) and the cluster connection flags.

Colour and spinners only on a terminal; ``NO_COLOR`` is honoured (rich reads it). Normal output goes to stdout,
progress, notices and errors to stderr, so stdout stays parseable.
The kubeconfig is found like kubectl finds it: ``--kubeconfig``, else ``$KUBECONFIG`` (a path list, merged),
else ``~/.kube/config``; the namespace is ``-n``, else the context's namespace, else ``default``
(docs/design/decisions.md D15).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import traceback
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from kaiwo.cli.errors import CliError, explain
from kaiwo.runtime.client import Client
from kaiwo.runtime.kubeconfig import KubeConfig, KubeconfigError, kubeconfig_paths

T = TypeVar("T")

KubeconfigOpt = Annotated[
    str | None,
    typer.Option(
        "--kubeconfig", help="Kubeconfig file (default: $KUBECONFIG, else ~/.kube/config).", show_default=False
    ),
]
ContextOpt = Annotated[
    str | None, typer.Option("--context", help="Kubeconfig context (default: the current context).", show_default=False)
]
NamespaceOpt = Annotated[
    str | None,
    typer.Option(
        "-n", "--namespace", help="Namespace (default: the context's namespace, else 'default').", show_default=False
    ),
]


@dataclass
class Output:
    """Where and how much to print. ``verbosity``: -1 quiet, 0 normal, 1+ verbose."""

    verbosity: int = 0
    out: Console = field(default_factory=lambda: Console(highlight=False, soft_wrap=True))
    err: Console = field(default_factory=lambda: Console(stderr=True, highlight=False, soft_wrap=True))

    def echo(self, text: str) -> None:
        """Command output (stdout), printed verbatim."""
        self.out.print(text, markup=False)

    def notice(self, markup: str) -> None:
        """Progress and hints (stderr); hidden by -q."""
        if self.verbosity >= 0:
            self.err.print(markup)

    def debug(self, markup: str) -> None:
        if self.verbosity > 0:
            self.err.print(f"[dim]{markup}[/dim]")

    def error(self, err: CliError) -> None:
        self.err.print(f"[bold red]error:[/bold red] {escape(err.message)}")
        if err.hint:
            self.err.print(f"[dim]hint:[/dim] {escape(err.hint)}")

    @contextlib.contextmanager
    def spinner(self, text: str) -> Iterator[Callable[[str], None]]:
        """A spinner on a terminal (updated through the yielded function); elsewhere each change is a line."""
        if self.verbosity < 0:
            yield lambda _: None
        elif self.err.is_terminal:
            with self.err.status(escape(text)) as status:
                yield lambda s: status.update(escape(s))
        else:
            last: list[str] = []

            def line(s: str) -> None:  # not a terminal: one line per change
                if last != [s]:
                    last[:] = [s]
                    self.err.print(escape(s))

            yield line


def output(ctx: typer.Context) -> Output:
    obj = ctx.find_root().obj
    return obj if isinstance(obj, Output) else Output()


@dataclass(frozen=True)
class Target:
    """The cluster and namespace a command talks to, from the connection flags."""

    kubeconfig: str | None = None
    context: str | None = None
    namespace: str | None = None

    def kubeconfig_path(self) -> str:
        path = self.kubeconfig or os.environ.get("KUBECONFIG") or str(Path("~/.kube/config").expanduser())
        existing = [p for p in path.split(os.pathsep) if p and Path(p).expanduser().is_file()]
        if not existing:
            raise CliError(
                f"no kubeconfig found at {path}",
                "set KUBECONFIG or pass --kubeconfig with the file your cluster admin gave you",
            )
        return os.pathsep.join(existing)

    def resolve_namespace(self) -> str:
        """``-n``, else the namespace of the kubeconfig context, else ``default``."""
        if self.namespace:
            return self.namespace
        try:
            config = KubeConfig.read(kubeconfig_paths(self.kubeconfig_path()))
        except KubeconfigError as e:
            raise CliError(f"cannot read the kubeconfig: {e}", "check the file given by --kubeconfig/KUBECONFIG") from e
        if self.context and self.context not in config.contexts:
            names = ", ".join(sorted(config.contexts))
            raise CliError(f"no context {self.context!r} in the kubeconfig", f"pick one of: {names}", code=2)
        chosen = config.contexts.get(self.context or config.current_context) or {}
        return str(chosen.get("namespace") or "default")

    @contextlib.asynccontextmanager
    async def connect(self) -> AsyncIterator[Client]:
        client = await Client.from_kubeconfig(self.kubeconfig_path(), self.context)
        client.max_attempts = 3  # a person is waiting: fail within seconds when the cluster is unreachable
        try:
            yield client
        finally:
            await client.close()


@contextlib.contextmanager
def handled(out: Output, server_hint: str = "") -> Iterator[None]:
    """Expected failures become a message and an exit code, not a traceback."""
    try:
        yield
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    except (typer.Exit, typer.Abort):
        raise
    except Exception as e:
        err = explain(e, server_hint)
        if err is None:
            if out.verbosity > 0:
                traceback.print_exc(file=sys.stderr)
            err = CliError(
                f"unexpected failure: {type(e).__name__}: {e}",
                "re-run with -v for the traceback and report it to the Kaiwo maintainers",
            )
        elif out.verbosity > 0 and not isinstance(e, CliError):
            out.debug(escape(f"{type(e).__name__}: {e}"))
        out.error(err)
        raise typer.Exit(err.code) from None


def run(out: Output, coro: Coroutine[Any, Any, T]) -> T:
    """Run one command's coroutine under ``handled``."""
    with handled(out):
        return asyncio.run(coro)
    raise AssertionError("unreachable")
