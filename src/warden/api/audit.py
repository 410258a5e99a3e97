"""One audit record per HTTP request, committed before the answer leaves (metadata only, never the image).

Handlers note what they learn in :class:`RequestFacts` (``request.state.audit``): the
caller, the model and version, the image's size and the detection count, the stage
times, and for administrative routes the action and its target. The middleware turns
them, the route template, the status and the error code into an
:class:`~warden.audit.AuditEvent` when the answer starts. A successful answer (it may
carry a tenant's results or state) waits for its record to be durable
(``WARDEN_AUDIT_DURABILITY=sync``) and only then goes out; the wait is the answer's
``Server-Timing: audit`` entry. An error answer discloses nothing, so its record joins
the next group commit without holding the refusal back (refusals stay sub-millisecond). When the audit
store cannot take it and the log fails closed, the client gets 503 ``audit_unavailable``
instead of an answer nobody recorded; while the store is down, work is refused before
it starts.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field, replace
from typing import Any, Final

from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from warden.api.errors import INTERNAL_ERROR, error_response
from warden.audit import AuditEvent, AuditLog
from warden.detection import Detections
from warden.errors import AuditUnavailable, InvalidArgument
from warden.serving import StageTimes
from warden.tenancy import Principal

HTTP_ERROR: Final = 400
"""Answers from this status on carry no data: their records are committed without holding the answer."""
UNAUDITED: Final = frozenset(
    {"/v2/health/live", "/v2/health/ready", "/docs", "/openapi.json", "/favicon.ico", "/metrics"}
)
"""Probes, documentation and metrics scrapes: no tenant data, and too frequent to be worth a record.

``/metrics`` is never audited, public or not: a scrape every few seconds would bury the trail, and
monitoring (the audit backlog among it) must keep answering while the audit store is down, which
fail-closed auditing would refuse. Its access lines (failed credentials included) are in the log.
"""


@dataclass(slots=True)
class RequestFacts:
    """What a handler learnt about its request that the audit record keeps (metadata only)."""

    principal: Principal | None = None
    model: str | None = None
    model_version: int | None = None
    image_bytes: int | None = None
    images: list[tuple[int, int]] = field(default_factory=list)
    detections: int | None = None
    times: StageTimes | None = None
    action: str | None = None
    target: str | None = None
    details: dict[str, str | int | float | bool | None] = field(default_factory=dict)

    def found(self, results: list[Detections]) -> None:
        """Note the images' sizes and how many objects were found (not what, nor where)."""
        self.images = [(d.width, d.height) for d in results]
        self.detections = sum(len(d) for d in results)


def facts(request: Request) -> RequestFacts:
    """The request's facts, created on first use (apps built without the middleware record nothing)."""
    noted: RequestFacts | None = getattr(request.state, "audit", None)
    if noted is None:
        noted = RequestFacts()
        request.state.audit = noted
    return noted


class AuditMiddleware:
    """Records every request but probes, docs and scrapes; holds each successful answer until its record is durable."""

    def __init__(self, app: ASGIApp, audit: AuditLog) -> None:
        self.app = app
        self.audit = audit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI call."""
        if scope["type"] != "http" or scope["path"] in UNAUDITED:
            await self.app(scope, receive, send)
            return
        noted = RequestFacts()
        scope.setdefault("state", {})["audit"] = noted
        started = time.perf_counter()
        if self.audit.fail_closed and not self.audit.healthy:
            refusal = "the audit store is unavailable; no request is served unrecorded"
            self.audit.record(self._event(scope, noted, 503, AuditUnavailable.code, started))  # kept for later
            await self._refuse(scope, receive, send, refusal)
            return
        answered = replaced = False

        async def audited_send(message: Message) -> None:
            nonlocal answered, replaced
            if message["type"] == "http.response.start":
                answered = True
                code = Headers(raw=message.get("headers", [])).get("x-error-code")
                event = self._event(scope, noted, message["status"], code, started)
                if message["status"] >= HTTP_ERROR:  # a refusal discloses nothing: recorded, not waited for
                    self.audit.record(event)
                    await send(message)
                    return
                waited = time.perf_counter()
                try:
                    await self.audit.arecord(event)
                except AuditUnavailable as exc:
                    # The record stays queued; a second one says the answer it describes was withheld.
                    replaced = True
                    withheld = self._event(scope, noted, 503, AuditUnavailable.code, started)
                    self.audit.record(replace(withheld, details={**withheld.details, "withheld_status": event.status}))
                    await self._refuse(scope, receive, send, exc.message)
                    return
                _add_timing(message, "audit", time.perf_counter() - waited)
            if not replaced:
                await send(message)

        try:
            await self.app(scope, receive, audited_send)
        except Exception:
            if not answered:  # the server's own failure: recorded as such before the 500 goes out
                with contextlib.suppress(AuditUnavailable):
                    await self.audit.arecord(self._event(scope, noted, 500, INTERNAL_ERROR, started))
            raise

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, message: str) -> None:
        request = Request(scope, receive)
        answer = error_response(request, 503, AuditUnavailable.code, message, {"Retry-After": "1"})
        await answer(scope, receive, send)

    def _event(self, scope: Scope, noted: RequestFacts, status: int, code: str | None, started: float) -> AuditEvent:
        route = scope.get("route")
        template = getattr(route, "path", None) or "(no route)"
        client = scope.get("client")
        caller = noted.principal
        times = noted.times
        width, height = noted.images[0] if noted.images else (None, None)
        details = dict(noted.details)
        if len(noted.images) > 1:
            details["images"] = len(noted.images)
        common = {
            "request_id": scope.get("state", {}).get("request_id"),
            "tenant": caller.tenant_name if caller is not None else None,
            "key_id": caller.key_id if caller is not None else None,
            "authenticator": caller.authenticator if caller is not None else None,
            "route": f"{scope['method']} {template}",
            "model": noted.model,
            "model_version": noted.model_version,
            "status": status,
            "error_code": code,
            "total_ms": _ms(time.perf_counter() - started),
            "queue_ms": _ms(times.queue) if times is not None else None,
            "inference_ms": _ms(times.inference) if times is not None else None,
            "image_bytes": noted.image_bytes,
            "image_width": width,
            "image_height": height,
            "detections": noted.detections,
            "client": self.audit.client_address(client[0]) if client else None,
            "details": details,
        }
        try:
            return _build(noted.action, noted.target, common)
        except InvalidArgument:  # a caller-chosen name (too long, shaped like a key) is not fit to keep
            common.update(model=None, details={"withheld": "a caller-supplied name was not recorded"})
            return _build(noted.action, "(withheld)" if noted.action is not None else None, common)


def _build(action: str | None, target: str | None, common: dict[str, Any]) -> AuditEvent:
    if action is not None:
        return AuditEvent.admin(action, target, **common)
    return AuditEvent.request(**common)


def _add_timing(message: Message, name: str, seconds: float) -> None:
    headers = MutableHeaders(scope=message)
    entry = f"{name};dur={seconds * 1000:.3f}"
    present = headers.get("server-timing")
    headers["Server-Timing"] = f"{present}, {entry}" if present else entry


def _ms(seconds: float) -> float:
    return round(max(seconds, 0.0) * 1000, 3) if math.isfinite(seconds) else 0.0
