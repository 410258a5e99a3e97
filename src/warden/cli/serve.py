"""``warden serve`` and ``warden demo``: the multi-tenant server on the data directory.

Before anything is opened the server makes every path in its settings absolute, then moves
into a fresh, private, empty working directory (removed at exit): ONNX Runtime resolves a
model's external-data paths against the working directory, which then holds nothing to read.
Files it creates are private (umask 077). SIGTERM and SIGINT both drain in-flight requests
(``WARDEN_SHUTDOWN_DRAIN_SECONDS``), then flush the audit trail and sign its closing checkpoint.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Final

import typer
from sqlalchemy.engine import make_url

from warden.api import create_app
from warden.api.server import build_server
from warden.cli.common import console, data_dir, describe, fail
from warden.errors import Conflict, ModelNotFound, WardenError
from warden.observability import configure_logging
from warden.registry import sha256_hex
from warden.samples import SAMPLE_IMAGE, fall_model_path
from warden.services import Services, open_services
from warden.settings import Settings, load_settings
from warden.tenancy import Scope

DEMO_TENANT = "demo"
DEMO_MODEL = "fall"
PRIVATE_UMASK: Final = 0o077
"""The server creates its files 0600 and its directories 0700."""

_log = logging.getLogger("warden.serve")

Host = Annotated[str | None, typer.Option(help="Address to listen on (default 127.0.0.1, or WARDEN_HOST).")]
Port = Annotated[int | None, typer.Option(min=0, max=65535, help="Port (default 8080, or WARDEN_PORT).")]


def serve(ctx: typer.Context, host: Host = None, port: Port = None) -> None:
    """Run the HTTP server (simple API /v1, Open Inference Protocol /v2, admin API /admin)."""
    settings = _settings(ctx, host, port)
    with _server_process():
        services = _open(settings)
        try:
            _run(services)
        finally:
            services.close()


def demo(ctx: typer.Context, host: Host = None, port: Port = None) -> None:
    """Set up a 'demo' tenant with the fall-detection model, print a ready curl command, and serve."""
    settings = _settings(ctx, host, port)
    with _server_process():
        services = _open(settings)
        try:
            out = console()
            try:
                key = _prepare_demo(services, out.print)
            except WardenError as exc:
                fail(*describe(exc))
            url = f"http://{settings.host}:{settings.port}/v1/models/{DEMO_MODEL}/detect"
            curl = (
                f"curl -s -H {shlex.quote('Authorization: Bearer ' + key)} -H 'Content-Type: image/jpeg' "
                f"--data-binary @{shlex.quote(str(SAMPLE_IMAGE))} {url}"
            )
            out.print("Try it (in another terminal):", markup=False)
            out.print(curl, markup=False, soft_wrap=True)
            _run(services)
        finally:
            services.close()


def _prepare_demo(services: Services, say: Callable[..., None]) -> str:
    """Operator key (if none), the demo tenant, the fall model (unless already current), and a fresh detect key."""
    tenants, registry = services.tenants, services.registry
    if not tenants.has_operator_key():
        operator = tenants.create_key(None, Scope.ADMIN)
        say(f"Operator admin key (shown once): {operator.key}", markup=False)
    with contextlib.suppress(Conflict):
        tenants.create_tenant(DEMO_TENANT)
    tenant_id = tenants.tenant_id(DEMO_TENANT)
    data = fall_model_path().read_bytes()
    try:
        current = registry.resolve(tenant_id, DEMO_MODEL).sha256
    except ModelNotFound:
        current = None
    if current != sha256_hex(data):
        registry.push(tenant_id, DEMO_MODEL, data)
    return tenants.create_key(DEMO_TENANT, Scope.DETECT).key


def _settings(ctx: typer.Context, host: str | None, port: int | None) -> Settings:
    try:
        return absolute_paths(load_settings(data_dir=data_dir(ctx), host=host, port=port))
    except WardenError as exc:
        fail(*describe(exc))


def absolute_paths(settings: Settings, base: Path | None = None) -> Settings:
    """``settings`` with every relative path (data directory, model store, SQLite file, JWT key files) made
    absolute against ``base`` (default: the working directory), so a later change of directory changes nothing."""
    root = Path.cwd() if base is None else base

    def absolute(path: Path) -> Path:
        return Path(os.path.normpath(root / path.expanduser()))

    update: dict[str, object] = {"data_dir": absolute(settings.data_dir)}
    for name in ("model_store", "jwt_jwks_file", "jwt_public_key_file"):
        value = getattr(settings, name)
        if isinstance(value, Path):
            update[name] = absolute(value)
    if settings.database_url is not None:
        url = make_url(settings.database_url)
        database = url.database
        relative = database and database != ":memory:" and not database.startswith("file:")
        if url.get_backend_name() == "sqlite" and relative and not os.path.isabs(database or ""):
            update["database_url"] = url.set(database=str(absolute(Path(database or "")))).render_as_string(
                hide_password=False
            )
    return settings.model_copy(update=update)


@contextlib.contextmanager
def _server_process() -> Iterator[Path]:
    """A private umask and a fresh, empty, private working directory for the server's lifetime; both undone after."""
    try:
        empty = Path(tempfile.mkdtemp(prefix="warden-cwd-"))  # 0700, beside no data of Warden's
    except OSError as exc:
        fail(*describe(exc))
    previous_dir = os.getcwd()
    previous_mask = os.umask(PRIVATE_UMASK)
    os.chdir(empty)
    try:
        yield empty
    finally:
        os.umask(previous_mask)
        with contextlib.suppress(OSError):
            os.chdir(previous_dir)
        try:
            empty.rmdir()
        except OSError as exc:  # something wrote into it: leave it for a look, and say so
            _log.warning("the server's working directory %s was not left empty: %s", empty, exc)


def _open(settings: Settings) -> Services:
    try:
        return open_services(settings)
    except (WardenError, OSError) as exc:
        fail(*describe(exc))


def _run(services: Services) -> None:
    settings = services.settings
    configure_logging(settings.log_format, settings.log_level)  # structured logs; the access line is Warden's own
    build_server(create_app(services), settings).run()
