"""Entry point of the ``kaiwo`` command. Commands arrive with the CLI issue; ``version`` works today."""

from __future__ import annotations

import typer

from kaiwo import __version__

app = typer.Typer(help="Submit and follow GPU jobs and services on a Kaiwo cluster.", no_args_is_help=True)


@app.callback()
def _root() -> None:
    """Submit and follow GPU jobs and services on a Kaiwo cluster."""


@app.command()
def version() -> None:
    """Print the client version."""
    typer.echo(f"kaiwo {__version__}")
