"""The ``warden`` Typer application and its entry point."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from warden import __version__
from warden.cli.approvals import approval_app
from warden.cli.audit import audit_app
from warden.cli.datasets import dataset_app
from warden.cli.deid import deid_app
from warden.cli.deploy import deploy_app
from warden.cli.detect import detect
from warden.cli.jobs import job_app
from warden.cli.keys import init, key_app
from warden.cli.models import model_app
from warden.cli.policy import policy_app
from warden.cli.sbom import sbom
from warden.cli.serve import demo, serve
from warden.cli.tenants import tenant_app

app = typer.Typer(
    name="warden",
    help="Multi-tenant YOLO inference and hardened training on personal data.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("detect")(detect)
app.command("init")(init)
app.add_typer(tenant_app, name="tenant")
app.add_typer(key_app, name="key")
app.add_typer(model_app, name="model")
app.add_typer(dataset_app, name="dataset")
app.add_typer(audit_app, name="audit")
app.add_typer(deid_app, name="deid")
app.add_typer(approval_app, name="approval")
app.add_typer(job_app, name="job")
app.add_typer(policy_app, name="policy")
app.add_typer(deploy_app, name="deploy")
app.command("sbom")(sbom)
app.command("serve")(serve)
app.command("demo")(demo)


@app.callback(invoke_without_command=True)
def _root(
    version: bool = typer.Option(False, "--version", help="Print Warden's version and exit."),
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            envvar="WARDEN_DATA_DIR",
            show_default=False,
            help="Data directory (database, model blobs, server secret); default ./warden-data.",
        ),
    ] = None,
) -> None:
    if version:
        typer.echo(__version__)
        raise typer.Exit(0)


def main() -> None:
    """Run the ``warden`` command line."""
    app()
