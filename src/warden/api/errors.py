"""The one mapping from domain errors to HTTP: status codes, and the error body of each API.

``/v1`` and ``/admin`` answer ``{"error": {"code": ..., "message": ...}}``; the Open
Inference Protocol (``/v2``) answers ``{"error": "message"}`` as KServe and Triton do.
Every answer carries the stable code in ``X-Error-Code`` too.
"""

from __future__ import annotations

from typing import Final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from warden.errors import (
    Conflict,
    DeviceUnavailable,
    Forbidden,
    InvalidArgument,
    InvalidImage,
    InvalidModel,
    ModelError,
    NotFound,
    PayloadTooLarge,
    Unauthenticated,
    UnsupportedMediaType,
    UnsupportedModel,
    WardenError,
)

_STATUS: Final[tuple[tuple[type[WardenError], int], ...]] = (
    (Unauthenticated, 401),
    (Forbidden, 403),
    (NotFound, 404),
    (Conflict, 409),
    (PayloadTooLarge, 413),
    (UnsupportedMediaType, 415),
    (InvalidImage, 400),
    (InvalidArgument, 400),
    (InvalidModel, 400),
    (UnsupportedModel, 422),
    (DeviceUnavailable, 503),
    (ModelError, 500),
)
_HTTP_CODES: Final = {400: "invalid_argument", 404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}


def status_for(error: WardenError) -> int:
    """The HTTP status of a domain error."""
    for kind, status in _STATUS:
        if isinstance(error, kind):
            return status
    return 500


def error_response(request: Request, status: int, code: str, message: str) -> JSONResponse:
    """An error answer in the shape of the API the request addressed."""
    oip = request.url.path.startswith("/v2")
    body: object = {"error": message} if oip else {"error": {"code": code, "message": message}}
    headers = {"X-Error-Code": code}
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="warden"'
    return JSONResponse(body, status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """Route domain errors, validation errors and unknown routes through :func:`error_response`."""

    async def on_error(request: Request, exc: Exception) -> JSONResponse:
        if isinstance(exc, WardenError):
            return error_response(request, status_for(exc), exc.code, exc.message)
        if isinstance(exc, RequestValidationError):
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'] if p != 'body') or 'request'}: {e['msg']}" for e in exc.errors()
            )
            return error_response(request, 400, "invalid_argument", problems)
        if isinstance(exc, StarletteHTTPException):
            code = _HTTP_CODES.get(exc.status_code, "http_error")
            return error_response(request, exc.status_code, code, str(exc.detail))
        return error_response(request, 500, "internal", "internal error")

    for kind in (WardenError, RequestValidationError, StarletteHTTPException):
        app.add_exception_handler(kind, on_error)
