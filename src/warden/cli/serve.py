"""``warden serve`` and ``warden demo``: the multi-tenant server on the data directory."""

from __future__ import annotations

import contextlib
import shlex
from collections.abc import Callable
from typing import Annotated

import typer
import uvicorn

from warden.api import create_app
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

Host = Annotated[str | None, typer.Option(help="Address to listen on (default 127.0.0.1, or WARDEN_HOST).")]
Port = Annotated[int | None, typer.Option(min=0, max=65535, help="Port (default 8080, or WARDEN_PORT).")]


def serve(ctx: typer.Context, host: Host = None, port: Port = None) -> None:
    """Run the HTTP server (simple API /v1, Open Inference Protocol /v2, admin API /admin)."""
    settings = _settings(ctx, host, port)
    services = _open(settings)
    try:
        _run(services)
    finally:
        services.close()


def demo(ctx: typer.Context, host: Host = None, port: Port = None) -> None:
    """Set up a 'demo' tenant with the fall-detection model, print a ready curl command, and serve."""
    settings = _settings(ctx, host, port)
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
        return load_settings(data_dir=data_dir(ctx), host=host, port=port)
    except WardenError as exc:
        fail(*describe(exc))


def _open(settings: Settings) -> Services:
    try:
        return open_services(settings)
    except (WardenError, OSError) as exc:
        fail(*describe(exc))


def _run(services: Services) -> None:
    settings = services.settings
    configure_logging(settings.log_format, settings.log_level)  # structured logs; the access line is Warden's own
    uvicorn.run(
        create_app(services),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        log_config=None,
        access_log=False,
        server_header=False,
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=settings.trusted_proxies or None,
    )
