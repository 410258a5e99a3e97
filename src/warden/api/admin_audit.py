"""The audit trail and usage over HTTP: ``/admin/audit`` (query, export, verify), ``/admin/usage`` and ``/v1/usage``.

An operator key reads every tenant; a tenant's admin key only its own records (another
tenant's name answers 404 as an unknown one does); a detect key only its own usage. Verifying
the chains is the operator's: it reads every stream. Records hold metadata only, never images.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool

from warden.api.audit import facts
from warden.api.auth import Admin, Caller
from warden.api.schemas import error_responses
from warden.audit import AuditEntry, AuditFilter, Cursor
from warden.audit.query import query as query_audit
from warden.audit.usage import usage
from warden.errors import Forbidden, InvalidArgument, TenantNotFound
from warden.services import Services
from warden.settings import NAME_REGEX
from warden.tenancy import Principal

router = APIRouter(tags=["audit"])

Outcome = Literal["ok", "refused", "error"]
_REFUSED: Final = frozenset({401, 403, 429, 503})
_NAME: Final = f"^{NAME_REGEX}$"
_ISO: Final = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}([T ][0-9:.]+)?(Z|[+-][0-9]{2}:?[0-9]{2})?$"
_LOOKUP_ERRORS: Final = error_responses(400, 401, 403, 404)
_EXPORT_RESPONSES: Final[dict[int | str, dict[str, Any]]] = {
    **_LOOKUP_ERRORS,
    200: {"content": {"application/x-ndjson": {}}, "description": "One record per line."},
}
_READ_PAGE: Final = 500
"""Records read per query while an outcome filter skips some (whatever page size the caller asked for)."""
_MAX_SCANNED: Final = 20_000
"""Records read at most to fill one page when an outcome filter skips most of them."""


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def _moment(name: str, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidArgument(f"{name}: not an ISO 8601 time: {value!r}") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _scope_tenant(caller: Principal, tenant: str | None) -> str | None:
    """The tenant a caller may read: any (or all) for an operator, else only its own."""
    if caller.is_operator:
        return tenant
    if tenant is not None and tenant != caller.tenant_name:
        raise TenantNotFound(f"no tenant named {tenant!r}")
    return caller.tenant_name


async def readable(
    services: Services, caller: Principal, tenant: str | None, since: datetime | None
) -> tuple[str | None, datetime | None]:
    """The tenant and the earliest time a caller may read records of.

    An operator reads any tenant, any time. Anyone else reads only its own tenant, and only
    since that tenant was created: records name tenants, and a name can be reused after a
    tenant is deleted, so an older record of the name belongs to someone else.
    """
    scoped = _scope_tenant(caller, tenant)
    if caller.is_operator or scoped is None:
        return scoped, since
    created = (await run_in_threadpool(services.tenants.get_tenant, scoped)).created_at
    return scoped, created if since is None or since < created else since


def outcome_of(entry: AuditEntry) -> Outcome:
    """ok (answered below 400, or an event with no status), refused (401, 403, 429, 503) or error."""
    status = entry.event.status
    if status is None or status < 400:
        return "ok"
    return "refused" if status in _REFUSED else "error"


def _encode(cursor: Cursor) -> str:
    raw = json.dumps([cursor.time.isoformat(), cursor.stream, cursor.seq]).encode()
    return base64.urlsafe_b64encode(raw).decode()


def _decode(text: str) -> Cursor:
    try:
        moment, stream, seq = json.loads(base64.urlsafe_b64decode(text.encode()))
        cursor = Cursor(datetime.fromisoformat(moment), str(stream), int(seq))
    except (ValueError, TypeError, OverflowError, binascii.Error, UnicodeDecodeError):
        cursor = None
    if cursor is None or cursor.time.tzinfo is None or not 0 <= cursor.seq < 2**63 or len(cursor.stream) > 64:
        raise InvalidArgument("cursor: not a cursor this API returned")
    return cursor


class _Query:
    """The filters shared by the query and the export."""

    def __init__(
        self,
        tenant: Annotated[str | None, Query(pattern=_NAME)] = None,
        outcome: Annotated[Outcome | None, Query()] = None,
        since: Annotated[str | None, Query(pattern=_ISO, description="ISO 8601 time, inclusive.")] = None,
        until: Annotated[str | None, Query(pattern=_ISO, description="ISO 8601 time, exclusive.")] = None,
        request_id: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")] = None,
        kind: Annotated[Literal["request", "admin", "job", "deid"] | None, Query()] = None,
    ) -> None:
        self.tenant, self.outcome, self.request_id, self.kind = tenant, outcome, request_id, kind
        self.since, self.until = _moment("since", since), _moment("until", until)

    async def where(self, services: Services, caller: Principal) -> AuditFilter:
        tenant, since = await readable(services, caller, self.tenant, self.since)
        return AuditFilter(tenant=tenant, since=since, until=self.until, request_id=self.request_id, kind=self.kind)


def _page(services: Services, where: AuditFilter, outcome: Outcome | None, after: Cursor | None, limit: int) -> Any:
    """Newest first is not offered: pages run in time order, as ``warden audit query`` does."""
    found: list[AuditEntry] = []
    scanned = 0
    while True:
        page = query_audit(services.db, where, after=after, limit=limit if outcome is None else _READ_PAGE)
        scanned += len(page.entries)
        for entry in page.entries:
            if outcome is None or outcome_of(entry) == outcome:
                found.append(entry)
                if len(found) == limit:
                    return found, Cursor(entry.event.time, entry.stream, entry.seq)
        if page.next is None or scanned >= _MAX_SCANNED:
            return found, page.next
        after = page.next


@router.get("/admin/audit", summary="Query the audit trail", responses=_LOOKUP_ERRORS)
async def audit_query(
    request: Request,
    caller: Admin,
    filters: Annotated[_Query, Depends()],
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> dict[str, Any]:
    """One page of records in time order; ``next`` is the cursor of the following page (``null`` at the end)."""
    services = _services(request)
    where = await filters.where(services, caller)
    after = None if cursor is None else _decode(cursor)
    entries, following = await run_in_threadpool(_page, services, where, filters.outcome, after, limit)
    return {
        "entries": [entry.to_dict() | {"outcome": outcome_of(entry)} for entry in entries],
        "next": None if following is None else _encode(following),
    }


@router.get(
    "/admin/audit/export",
    summary="Export the audit trail as JSON Lines",
    response_class=StreamingResponse,
    responses=_EXPORT_RESPONSES,
)
async def audit_export(request: Request, caller: Admin, filters: Annotated[_Query, Depends()]) -> StreamingResponse:
    """Every matching record, one JSON object per line, as a download."""
    services = _services(request)
    where = await filters.where(services, caller)
    facts(request).details.update(tenant=where.tenant)

    def lines() -> Iterator[str]:
        for entry in services.audit.scan(where):
            if filters.outcome is None or outcome_of(entry) == filters.outcome:
                yield json.dumps(entry.to_dict(), ensure_ascii=False) + "\n"

    return StreamingResponse(
        iterate_in_threadpool(lines()),
        media_type="application/x-ndjson",
        headers={"Content-Disposition": 'attachment; filename="warden-audit.jsonl"', "Cache-Control": "no-store"},
    )


@router.post("/admin/audit/verify", summary="Verify every audit chain", responses=error_responses(401, 403))
async def audit_verify(request: Request, caller: Admin) -> dict[str, Any]:
    """Every stream's verdict, as ``warden audit verify --json`` prints it (operators only)."""
    if not caller.is_operator:
        raise Forbidden("only an operator key (bound to no tenant) may verify the audit chains")
    report = await run_in_threadpool(_services(request).audit.verify)
    result: dict[str, Any] = report.to_dict()
    return result


async def _usage(
    request: Request, caller: Principal, tenant: str | None, minutes: int, bucket_seconds: int
) -> dict[str, Any]:
    services = _services(request)
    until = datetime.now(UTC)
    since = until - timedelta(minutes=minutes)
    tenant, not_before = await readable(services, caller, tenant, None)
    found = await run_in_threadpool(
        lambda: usage(
            services.db, since=since, until=until, bucket_seconds=bucket_seconds, tenant=tenant, not_before=not_before
        )
    )
    load = request.app.state.engine.scheduler.load()
    live = {
        name: {"running": running, "queued": queued}
        for name, (running, queued) in load.items()
        if tenant is None or name == tenant
    }
    return found.to_dict() | {"live": live}


_MINUTES = Annotated[int, Query(ge=1, le=1440, description="The window: this many minutes up to now.")]
_BUCKET = Annotated[int, Query(ge=1, le=3600, description="Seconds per bucket.")]


@router.get("/admin/usage", summary="Usage per tenant over a recent window", responses=_LOOKUP_ERRORS)
async def admin_usage(
    request: Request,
    caller: Admin,
    tenant: Annotated[str | None, Query(pattern=_NAME)] = None,
    minutes: _MINUTES = 60,
    bucket_seconds: _BUCKET = 60,
) -> dict[str, Any]:
    """Inference requests, refusals by reason and latency p50/p99 per bucket, from the audit trail of every
    replica; ``live`` adds this replica's running and queued requests."""
    return await _usage(request, caller, tenant, minutes, bucket_seconds)


@router.get(
    "/v1/usage", summary="The caller's own usage over a recent window", responses=error_responses(400, 401, 403)
)
async def tenant_usage(
    request: Request, caller: Caller, minutes: _MINUTES = 60, bucket_seconds: _BUCKET = 60
) -> dict[str, Any]:
    """As ``/admin/usage``, for the tenant of the detect key."""
    return await _usage(request, caller, caller.tenant_name, minutes, bucket_seconds)
