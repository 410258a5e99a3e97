"""The ASGI middleware that observes every HTTP request once it is answered: metrics and the access line.

Plain ASGI (no web framework is imported here). It sits inside the middleware that
sets the request id and outside the audit middleware, so it sees the request id,
the final status and headers (the audit wait in ``Server-Timing: audit``, the
``X-Error-Code``), and, after the app returns, what the handlers noted in the
request's ``scope["state"]["audit"]`` (the caller, the resolved model, the stage
times). Nothing is read from the request itself: no header, body, query or path.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any, Final

import structlog

from warden.errors import ClientDisconnected
from warden.observability.logs import ACCESS_LOGGER, get_logger, log_request
from warden.observability.metrics import Metrics
from warden.observability.request import METHODS, NO_ROUTE, FinishedRequest

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_AUDIT_TIMING: Final = re.compile(rb"(?:^|,)\s*audit;dur=([0-9]+(?:\.[0-9]+)?)")
_CLIENT_CLOSED: Final = 499
_HTTP_ERROR: Final = 400


class ObservabilityMiddleware:
    """Records each finished HTTP request in ``metrics`` and writes its access line (``access_log``)."""

    def __init__(self, app: ASGIApp, metrics: Metrics | None = None, access_log: bool = True) -> None:
        self.app = app
        self.metrics = metrics
        self._log = get_logger(ACCESS_LOGGER) if access_log else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI call."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status: int | None = None
        headers: Sequence[tuple[bytes, bytes]] = ()

        async def observed_send(message: Message) -> None:
            nonlocal status, headers
            if message["type"] == "http.response.start":
                status, headers = message["status"], list(message.get("headers", []))
            await send(message)

        request_id = (scope.get("state") or {}).get("request_id")
        failure: BaseException | None = None
        code: str | None = None
        if self.metrics is not None:
            self.metrics.in_flight.inc()
        try:
            with structlog.contextvars.bound_contextvars(request_id=request_id):
                await self.app(scope, receive, observed_send)
        except Exception as exc:  # the app's own failure: answered 500 further out
            failure = exc
            raise
        except BaseException:  # cancelled: the client went away
            if status is None:
                status, code = _CLIENT_CLOSED, ClientDisconnected.code
            raise
        finally:
            if self.metrics is not None:
                self.metrics.in_flight.dec()
            finished = finished_request(scope, status, headers, time.perf_counter() - started, code)
            if self.metrics is not None:
                self.metrics.observe(finished)
            if self._log is not None:
                log_request(self._log, finished, failure)


def finished_request(
    scope: Scope, status: int | None, headers: Sequence[tuple[bytes, bytes]], total: float, code: str | None = None
) -> FinishedRequest:
    """The facts of a finished request: its scope (route, state), the answer's status and headers.

    Stage times are kept for successful answers only (a refused or failed request's are not measured).
    """
    state = scope.get("state") or {}
    noted = state.get("audit")
    caller = getattr(noted, "principal", None)
    audit: float | None = None
    for name, value in headers:
        if name.lower() == b"x-error-code":
            code = value.decode("latin-1")
        elif name.lower() == b"server-timing" and (found := _AUDIT_TIMING.search(value)) is not None:
            audit = float(found.group(1)) / 1000
    if status is None:  # no answer started: the app raised, and the 500 is written further out
        status, code = 500, "internal"
    times = getattr(noted, "times", None) if status < _HTTP_ERROR else None
    method = str(scope.get("method", "GET")).upper()
    template = getattr(scope.get("route"), "path", None)
    return FinishedRequest(
        request_id=state.get("request_id"),
        method=method if method in METHODS else "OTHER",
        route=template if isinstance(template, str) else NO_ROUTE,
        status=status,
        code=code,
        total=total,
        tenant=getattr(caller, "tenant_name", None),
        operator=bool(getattr(caller, "is_operator", False)),
        model=getattr(noted, "model", None),
        model_version=getattr(noted, "model_version", None),
        queue=getattr(times, "queue", None),
        decode=getattr(times, "decode", None),
        preprocess=getattr(times, "preprocess", None),
        inference=getattr(times, "inference", None),
        audit=audit,
    )
