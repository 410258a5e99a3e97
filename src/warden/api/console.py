"""The web console (``/console``): its page and assets, and the session a key is exchanged for.

The page is plain HTML, CSS and JavaScript written for Warden (no third-party code, nothing
fetched from elsewhere), served with a Content-Security-Policy that allows only this origin's
scripts and styles. Signing in posts an API key once; the answer sets an ``HttpOnly``,
``SameSite=Strict`` cookie holding an opaque session token (``Secure`` over HTTPS) and returns
the session's CSRF token, which the page keeps in memory and sends as ``X-CSRF-Token`` on every
state-changing call. The console then calls the same ``/admin`` and ``/v1`` routes as the CLI
and any client, under the same authorisation (see :mod:`warden.api.auth`).
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Annotated, Final

from fastapi import APIRouter, Depends, Request, Response, Security
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from warden.api.audit import facts
from warden.api.auth import SESSION, SESSION_COOKIE, console_caller
from warden.api.json_body import json_body, json_request_body
from warden.api.schemas import error_responses
from warden.errors import NotFound, Unauthenticated
from warden.services import Services
from warden.tenancy import Principal

router = APIRouter(prefix="/console", tags=["console"])

CONTENT_SECURITY_POLICY: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
PAGE_HEADERS: Final = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cache-Control": "no-store",
}
_SCRIPTS: Final = ("app", "api", "dom", "picker", "charts", "tenants", "keys", "models", "usage", "audit", "try")
_ASSETS: Final = {f"{name}.js": "text/javascript; charset=utf-8" for name in _SCRIPTS} | {
    "app.css": "text/css; charset=utf-8"
}


@cache
def _asset(name: str) -> bytes:
    return resources.files("warden.api").joinpath("console_assets", name).read_bytes()


class SignInIn(BaseModel):
    """The key to exchange for a session; it is never stored, in the browser or here."""

    key: str = Field(min_length=1, max_length=4096)


class SessionOut(BaseModel):
    """Who the session is, what it may do, its CSRF token and when it ends."""

    tenant: str | None
    scope: str
    operator: bool
    csrf: str
    expires_at: str


SignInBody = Annotated[SignInIn, Depends(json_body(SignInIn, None))]


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def _session_out(caller: Principal, csrf: str, expires_at: str) -> SessionOut:
    return SessionOut(
        tenant=caller.tenant_name,
        scope=caller.scope.value,
        operator=caller.is_operator,
        csrf=csrf,
        expires_at=expires_at,
    )


def _session_token(request: Request) -> str:
    token = request.cookies.get(SESSION_COOKIE)
    if token is None:
        raise Unauthenticated("not signed in")
    return token


@router.get("", include_in_schema=False)
@router.get("/", include_in_schema=False)
async def page() -> Response:
    """The console's single page."""
    return Response(_asset("index.html"), media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)


@router.get("/assets/{name}", include_in_schema=False)
async def asset(name: str) -> Response:
    """The console's own scripts (ES modules) and style sheet; no other name exists."""
    media_type = _ASSETS.get(name)
    if media_type is None:
        raise NotFound(f"no console asset {name!r}")
    return Response(_asset(name), media_type=media_type, headers=PAGE_HEADERS)


@router.post(
    "/session",
    response_model=SessionOut,
    summary="Sign in to the console with an API key",
    responses=error_responses(400, 401, 403, 413),
    openapi_extra=json_request_body(SignInIn),
)
async def sign_in(body: SignInBody, request: Request, response: Response) -> SessionOut:
    """Exchange a key for a session cookie; the answer carries the session's CSRF token."""
    services = _services(request)
    opened = await run_in_threadpool(services.console.open, body.key, services.authenticator.served_here)
    caller = opened.principal
    facts(request).principal = caller
    previous = request.cookies.get(SESSION_COOKIE)
    if previous is not None:  # a new sign-in ends the session this browser held, whoever's it was
        await run_in_threadpool(services.console.close, previous)
    response.set_cookie(
        SESSION_COOKIE,
        opened.token,
        max_age=services.settings.console_session_seconds,
        path="/",
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )
    response.headers["Cache-Control"] = "no-store"
    return _session_out(caller, opened.csrf, opened.expires_at.isoformat())


@router.get(
    "/session",
    response_model=SessionOut,
    summary="The console session of this cookie",
    responses=error_responses(401, 403),
)
async def current(
    request: Request, response: Response, _session: Annotated[str | None, Security(SESSION)]
) -> SessionOut:
    """Who is signed in (the page asks after a reload, to get its CSRF token back)."""
    services = _services(request)
    token = _session_token(request)
    caller, expires_at = await run_in_threadpool(services.console.resolve, token)
    caller = services.authenticator.served_here(caller)
    facts(request).principal = caller
    response.headers["Cache-Control"] = "no-store"
    return _session_out(caller, services.console.csrf_token(token), expires_at.isoformat())


async def _signed_in(request: Request) -> Principal:
    caller = await console_caller(request, _services(request), _session_token(request))
    facts(request).principal = caller
    return caller


@router.delete("/session", status_code=204, summary="Sign out of the console", responses=error_responses(401, 403))
async def sign_out(
    request: Request,
    _caller: Annotated[Principal, Depends(_signed_in)],
    _session: Annotated[str | None, Security(SESSION)],
) -> Response:
    """End the session here and in the browser (the request must carry its CSRF token)."""
    await run_in_threadpool(_services(request).console.close, _session_token(request))
    response = Response(status_code=204)
    response.delete_cookie(
        SESSION_COOKIE, path="/", secure=request.url.scheme == "https", httponly=True, samesite="strict"
    )
    return response
