"""Entry point of the ``kaiwo`` command: kubectl's well-behaved sibling for Kaiwo workloads.

Exit codes: 0 success, 1 an error (message on stderr with what to do), 2 a usage error, or the remote command's
code for ``exec``. Commands live in submit.py (submit), inspect.py (list, status, delete) and pods.py (logs, exec,
monitor, port-forward).
"""

from __future__ import annotations

from typing import Annotated

import typer

from kaiwo import __version__
from kaiwo.cli import doctor, inspect, pods, submit
from kaiwo.cli.errors import USAGE
from kaiwo.cli.session import Output

app = typer.Typer(
    help="Submit and follow GPU jobs and services on a Kaiwo cluster.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _root(
    ctx: typer.Context,
    verbose: Annotated[
        int, typer.Option("-v", "--verbose", count=True, help="More detail on stderr (API server, tracebacks of bugs).")
    ] = 0,
    quiet: Annotated[
        bool, typer.Option("-q", "--quiet", help="Only results and errors: no notes or spinners.")
    ] = False,
) -> None:
    """Submit and follow GPU jobs and services on a Kaiwo cluster.

    Talks to the cluster like kubectl (KUBECONFIG, --kubeconfig, --context, -n). Run `kaiwo COMMAND --help`
    for examples.
    """
    if verbose and quiet:
        Output().err.print("[bold red]error:[/bold red] -v and -q cannot be used together")
        raise typer.Exit(USAGE)
    ctx.obj = Output(verbosity=-1 if quiet else verbose)


def _examples(*lines: str) -> str:
    """A help epilog; the blank-line-separated form survives rich's reflowing."""
    return "[b]Examples[/b]\n\n" + "\n\n".join(f"  $ {line}" for line in lines)


app.command(
    epilog=_examples(
        "kaiwo submit -f examples/kaiwojob-hello.yaml",
        "cat job.yaml | kaiwo submit -f - --user me@example.com --queue team-a",
        "kaiwo submit -f job.yaml --wait --timeout 3600",
        "kaiwo submit -f job.yaml --dry-run=server -o yaml",
    )
)(submit.submit)
app.command(
    "list", epilog=_examples("kaiwo list", "kaiwo list -A --all-users", "kaiwo list -o wide", "kaiwo list -o json")
)(inspect.list_workloads)
app.command(
    epilog=_examples(
        "kaiwo status job/my-training",
        "kaiwo status service/inference -o yaml",
        "kaiwo status amd",
        "kaiwo status nvidia",
        "kaiwo status queues",
    )
)(inspect.status)
app.command(
    epilog=_examples(
        "kaiwo logs job/my-training",
        "kaiwo logs job/my-training -f --tail 100",
        "kaiwo logs job/ddp --pod ddp-1-abcde -c main",
    )
)(pods.logs)
app.command(
    "exec",
    epilog=_examples(
        "kaiwo exec job/my-training -- nvidia-smi",
        "kaiwo exec service/inference -c main -- ls /models",
        "echo 'print(1)' | kaiwo exec -i job/my-training -- python",
        "kaiwo exec -it job/my-training -- bash",
        "kaiwo exec job/my-training --command 'rocm-smi --showuse'",
    ),
)(pods.exec_)
app.command(epilog=_examples("kaiwo monitor job/my-training", "kaiwo monitor job/my-training --once"))(pods.monitor)
app.command(epilog=_examples("kaiwo delete job/my-training", "kaiwo delete job/a service/b -n team-a"))(inspect.delete)
app.command(
    "port-forward",
    epilog=_examples(
        "kaiwo port-forward service/inference 8080:8000",
        "kaiwo port-forward service/inference :8000",
        "kaiwo port-forward job/my-training",
    ),
)(pods.port_forward)

app.command(epilog=_examples("kaiwo doctor", "kaiwo doctor --operator-namespace kaiwo -o json"))(doctor.doctor)


@app.command(epilog=_examples("kaiwo version"))
def version() -> None:
    """Print the client version."""
    typer.echo(f"kaiwo {__version__}")
