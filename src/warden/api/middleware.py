"""ASGI middleware: a request id on every answer, answers that caches must not keep, and shaped 500s."""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Final

from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from warden.api.errors import INTERNAL_ERROR, INTERNAL_MESSAGE, error_response

_SANE_ID: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
_log = logging.getLogger("warden.api")


def request_id_from(value: str | None) -> str:
    """Echo a client's request id if it is a sane token, else make a new one."""
    if value is not None and _SANE_ID.match(value):
        return value
    return uuid.uuid4().hex


class RequestContextMiddleware:
    """Sets ``X-Request-ID`` (echoed or generated), ``Cache-Control: no-store`` and the server's total time
    (``Server-Timing: total``) on every answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI call."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = None
        for key, value in scope["headers"]:
            if key == b"x-request-id":
                incoming = value.decode("latin-1")
                break
        request_id = request_id_from(incoming)
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()

        async def send_with_context(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["X-Request-ID"] = request_id
                headers.setdefault("Cache-Control", "no-store")
                total = f"total;dur={(time.perf_counter() - started) * 1000:.3f}"
                stages = headers.get("server-timing")
                headers["Server-Timing"] = f"{stages}, {total}" if stages else total
            await send(message)

        await self.app(scope, receive, send_with_context)


class ShapedErrors:
    """Answers an exception no handler took as JSON 500 ``internal_error`` with the request id, never its text.

    The traceback goes to the ``warden.api`` log (with the request id bound by the observability
    middleware); the client learns only that the server failed and which request it was. An
    exception after the answer started cannot be answered any more and goes on up (the server
    closes the connection).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI call."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watched_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, watched_send)
        except Exception:
            if started:
                raise
            _log.exception("unhandled exception in %s %s", scope.get("method"), scope.get("path"))
            request = Request(scope, receive)
            await error_response(request, 500, INTERNAL_ERROR, INTERNAL_MESSAGE)(scope, receive, send)
