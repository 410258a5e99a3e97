"""Who is calling: the credential comes only from ``Authorization: Bearer`` or ``X-API-Key``,
or, for the web console, from its session cookie (with a CSRF token on state-changing requests).

Nothing else in a request (headers, body, query, path) can name a tenant. Each route then
requires a scope (a key has one): ``detect`` runs detections (:data:`Caller`, :data:`Admitted`);
``admin`` administers (:data:`Admin`); a tenant's ``admin`` or ``train`` key requests approvals
(:data:`Requester`); an ``approve`` key decides them (:data:`Approver`), and reads and revokes
them with operators' admin keys (:data:`Overseer`). A wrong scope is 403 ``forbidden``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyCookie, APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from warden.api.audit import facts
from warden.errors import CsrfFailed, Forbidden, Unauthenticated
from warden.services import Services
from warden.tenancy import Principal, Scope
from warden.tenancy.jwt_auth import MAX_TOKEN_BYTES
from warden.tenancy.principal import REQUEST_SCOPES

SESSION_COOKIE = "warden_session"
"""The web console's session cookie (``HttpOnly``, ``SameSite=Strict``); an API key never goes in a cookie."""
CSRF_HEADER = "X-CSRF-Token"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def credential(request: Request) -> str:
    """The presented credential, or ``Unauthenticated`` when there is none or it is malformed."""
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("use 'Authorization: Bearer <key>' or 'X-API-Key: <key>'")
        value = token.strip()
    else:
        value = request.headers.get("x-api-key", "").strip()
        if not value:
            raise Unauthenticated("a credential is required: 'Authorization: Bearer <key>' or 'X-API-Key: <key>'")
    if len(value) > MAX_TOKEN_BYTES:  # the longest a JWT may be; API keys are far shorter
        raise Unauthenticated(f"the credential is longer than {MAX_TOKEN_BYTES} characters")
    return value


_BEARER = HTTPBearer(auto_error=False, description="An API key (wdn_…) or, when configured, a JWT.")
_API_KEY = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key (wdn_…).")
SESSION = APIKeyCookie(
    name=SESSION_COOKIE,
    auto_error=False,
    description="The web console's session (POST /console/session); state changes also need X-CSRF-Token.",
)


async def principal(
    request: Request,
    _bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_BEARER)],
    _api_key: Annotated[str | None, Security(_API_KEY)],
    _session: Annotated[str | None, Security(SESSION)],
) -> Principal:
    """Authenticate the request (a database lookup runs off the event loop; a fresh cached one needs none).

    The three security dependencies only declare the schemes in the OpenAPI schema;
    :func:`credential` reads the headers itself so that every malformed form is refused alike.
    """
    services: Services = request.app.state.services
    session_token = request.cookies.get(SESSION_COOKIE)
    caller: Principal | None
    if session_token is not None and "authorization" not in request.headers and "x-api-key" not in request.headers:
        caller = await console_caller(request, services, session_token)
    else:
        presented = credential(request)
        caller = services.authenticator.cached(presented)
        if caller is None:
            caller = await run_in_threadpool(services.authenticator.authenticate, presented)
    facts(request).principal = caller
    return caller


async def console_caller(request: Request, services: Services, token: str) -> Principal:
    """The principal of a console session cookie; a state-changing request must also echo its CSRF token.

    A replica's ``WARDEN_SERVE_TENANTS`` applies to sessions as to keys.
    """
    sessions = services.console
    caller, _ = await run_in_threadpool(sessions.resolve, token)  # an unknown session is unauthenticated
    if request.method not in _SAFE_METHODS and not sessions.check_csrf(token, request.headers.get(CSRF_HEADER)):
        raise CsrfFailed(f"a console request that changes state needs the session's {CSRF_HEADER} header")
    return services.authenticator.served_here(caller)


async def tenant_caller(caller: Annotated[Principal, Depends(principal)]) -> Principal:
    """A caller allowed to run detections: a ``detect`` key of an active tenant."""
    if caller.tenant_id is None or caller.scope is not Scope.DETECT:
        raise Forbidden("this route needs a key with the 'detect' scope of a tenant")
    return caller


async def admin_caller(caller: Annotated[Principal, Depends(principal)]) -> Principal:
    """A caller allowed to administer: an ``admin`` key (of a tenant, or an operator's)."""
    if caller.scope is not Scope.ADMIN:
        raise Forbidden("this route needs a key with the 'admin' scope")
    return caller


async def requester_caller(caller: Annotated[Principal, Depends(principal)]) -> Principal:
    """A caller allowed to request approvals: an ``admin`` or ``train`` key of a tenant."""
    if caller.tenant_id is None or caller.scope not in REQUEST_SCOPES:
        raise Forbidden("this route needs a tenant's key with the 'admin' or 'train' scope")
    return caller


async def approver_caller(caller: Annotated[Principal, Depends(principal)]) -> Principal:
    """A caller allowed to decide approvals: an ``approve`` key (of a tenant, or operator-wide)."""
    if caller.scope is not Scope.APPROVE:
        raise Forbidden("this route needs a key with the 'approve' scope")
    return caller


async def overseer_caller(caller: Annotated[Principal, Depends(principal)]) -> Principal:
    """A caller allowed to read the approvals inbox and revoke: an ``approve`` key, or an operator's admin key."""
    if caller.scope is not Scope.APPROVE and not caller.is_operator:
        raise Forbidden("this route needs a key with the 'approve' scope, or an operator's admin key")
    return caller


async def admitted_caller(request: Request, caller: Annotated[Principal, Depends(tenant_caller)]) -> Principal:
    """A tenant caller within its rate and daily quota (refused here, before the body is read)."""
    request.app.state.engine.admit(caller)
    return caller


Caller = Annotated[Principal, Depends(tenant_caller)]
Admitted = Annotated[Principal, Depends(admitted_caller)]
Admin = Annotated[Principal, Depends(admin_caller)]
Requester = Annotated[Principal, Depends(requester_caller)]
Approver = Annotated[Principal, Depends(approver_caller)]
Overseer = Annotated[Principal, Depends(overseer_caller)]
