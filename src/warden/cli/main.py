"""The ``warden`` Typer application and its entry point."""

from __future__ import annotations

import typer

from warden import __version__
from warden.cli.detect import detect

app = typer.Typer(
    name="warden",
    help="Multi-tenant YOLO inference and hardened training on personal data.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("detect")(detect)


@app.callback(invoke_without_command=True)
def _root(
    version: bool = typer.Option(False, "--version", help="Print Warden's version and exit."),
) -> None:
    if version:
        typer.echo(__version__)
        raise typer.Exit(0)


def main() -> None:
    """Run the ``warden`` command line."""
    app()
