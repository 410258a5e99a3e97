"""The one mapping from domain errors to HTTP: status codes, and the error body of each API.

``/v1`` and ``/admin`` answer ``{"error": {"code": ..., "message": ...}}``; the Open
Inference Protocol (``/v2``) answers ``{"error": "message"}`` as KServe and Triton do.
Every answer carries the stable code in ``X-Error-Code`` too.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from warden.errors import (
    AnswerTooLarge,
    ApprovalRefused,
    AuditUnavailable,
    ClientDisconnected,
    Conflict,
    DeadlineExceeded,
    DeidError,
    DeviceUnavailable,
    EngineUnavailable,
    Forbidden,
    HeadersTooLarge,
    InvalidArgument,
    InvalidImage,
    InvalidModel,
    InvalidToken,
    ModelError,
    NotFound,
    OverCapacity,
    PayloadTooLarge,
    QuotaExceeded,
    RateLimited,
    Refused,
    RequestTimeout,
    StagingUnavailable,
    StorageCorrupt,
    Unauthenticated,
    UnsupportedFile,
    UnsupportedMediaType,
    UnsupportedModel,
    WardenError,
)

_STATUS: Final[tuple[tuple[type[WardenError], int], ...]] = (
    (Unauthenticated, 401),
    (Forbidden, 403),
    (ApprovalRefused, 403),
    (NotFound, 404),
    (Conflict, 409),
    (PayloadTooLarge, 413),
    (AnswerTooLarge, 422),
    (UnsupportedMediaType, 415),
    (UnsupportedFile, 415),
    (HeadersTooLarge, 431),
    (RequestTimeout, 408),
    (RateLimited, 429),
    (QuotaExceeded, 429),
    (OverCapacity, 503),
    (AuditUnavailable, 503),
    (StagingUnavailable, 503),
    (EngineUnavailable, 503),
    (DeidError, 400),
    (DeadlineExceeded, 504),
    (ClientDisconnected, 499),
    (StorageCorrupt, 500),
    (InvalidImage, 400),
    (InvalidArgument, 400),
    (InvalidModel, 400),
    (UnsupportedModel, 422),
    (DeviceUnavailable, 503),
    (ModelError, 500),
)
INTERNAL_ERROR: Final = "internal_error"
"""The code of an answer to a fault of the server's own (an exception nobody raised on purpose)."""
INTERNAL_MESSAGE: Final = "internal error: the server failed to answer this request; quote its request id to report it"
_HTTP_CODES: Final = {400: "invalid_argument", 404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}


def status_for(error: WardenError) -> int:
    """The HTTP status of a domain error."""
    for kind, status in _STATUS:
        if isinstance(error, kind):
            return status
    return 500


def error_response(
    request: Request, status: int, code: str, message: str, extra_headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """An error answer in the shape of the API the request addressed."""
    oip = request.url.path.startswith("/v2")
    message = without_reprs(message)
    body: object = {"error": message} if oip else {"error": {"code": code, "message": message}}
    headers = {**(extra_headers or {}), "X-Error-Code": code}
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="warden"'
    return JSONResponse(body, status_code=status, headers=headers)


_REPR: Final = re.compile(r"\s*<(?:[^<>]|<[^<>]{0,80}>){1,200}? at 0x[0-9A-Fa-f]+>")


def without_reprs(message: str) -> str:
    """``message`` without the ``<… object at 0x…>`` reprs a foreign library's text may carry (heap addresses)."""
    return _REPR.sub("", message)


def install_error_handlers(app: FastAPI) -> None:
    """Route domain errors, validation errors and unknown routes through :func:`error_response`.

    Request validation answers 400 here, so the schema loses the 422 FastAPI documents for it.
    """

    async def on_error(request: Request, exc: Exception) -> JSONResponse:
        if isinstance(exc, Refused):
            retry = {"Retry-After": str(max(1, math.ceil(exc.retry_after)))}
            return error_response(request, status_for(exc), exc.code, exc.message, retry)
        if isinstance(exc, InvalidToken) and exc.subject is not None:
            _note(request, jwt_subject=exc.subject)
        if isinstance(exc, DeadlineExceeded):
            _note(request, cut_stage=exc.stage, cut_by=exc.cause)
        if isinstance(exc, ClientDisconnected):
            _note(request, cut_stage=exc.stage, cut_by="disconnect")
        if isinstance(exc, WardenError):
            return error_response(request, status_for(exc), exc.code, exc.message)
        if isinstance(exc, RequestValidationError):
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'] if p != 'body') or 'request'}: {e['msg']}" for e in exc.errors()
            )
            return error_response(request, 400, "invalid_argument", problems)
        if isinstance(exc, StarletteHTTPException):
            code = _HTTP_CODES.get(exc.status_code, "http_error")
            return error_response(request, exc.status_code, code, str(exc.detail), exc.headers)
        return error_response(request, 500, INTERNAL_ERROR, INTERNAL_MESSAGE)

    for kind in (WardenError, RequestValidationError, StarletteHTTPException):
        app.add_exception_handler(kind, on_error)

    generate = app.openapi

    def openapi() -> dict[str, Any]:
        return without_validation_422(generate())

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to amend its schema


def _note(request: Request, **facts: str) -> None:
    """Give the request's audit record what its error knows: a refused token's sanitised subject (see
    ``InvalidToken``), or the stage a request was cut at and what cut it (deadline, run cap, disconnect)."""
    details = getattr(getattr(request.state, "audit", None), "details", None)
    if isinstance(details, dict):
        details.update(facts)


_VALIDATION_422: Final = {"$ref": "#/components/schemas/HTTPValidationError"}


def without_validation_422(schema: dict[str, Any]) -> dict[str, Any]:
    """Drop FastAPI's 422 ``HTTPValidationError`` answers (Warden answers validation errors with 400)."""
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.get("responses", {})
            declared = responses.get("422", {}).get("content", {}).get("application/json", {}).get("schema")
            if declared == _VALIDATION_422:
                del responses["422"]
    components = schema.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    return schema
