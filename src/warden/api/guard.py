"""A cap on every request body, enforced before the route runs and on every byte it reads.

Each route has a body cap (:func:`body_cap`): the admin JSON routes ``WARDEN_MAX_JSON_BYTES``,
detect the image limit plus multipart overhead, ``/v2`` infer its images per request times
the image limit (as base64), a model upload ``WARDEN_MAX_MODEL_BYTES``, a dataset push
``WARDEN_MAX_DATASET_BYTES``, the console's
sign-in a few KiB; a request that presents no credential may stream no more than that on
any route. :class:`BodyGuard` refuses a declared ``Content-Length`` over the cap with 413 before
a byte is read, and counts the bytes of a streamed (chunked) body as the route reads them,
raising ``PayloadTooLarge`` the moment the cap is passed. Routes read their bodies only
after authentication (see :mod:`warden.api.json_body`), with tighter per-tenant caps where
they apply (:func:`warden.api.body.read_body`).

An answer that starts before its request's body has been read to the end (a refusal, an
early 401) carries ``Connection: close``, so the server reads no more of it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import Request
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from warden.api.auth import SESSION_COOKIE
from warden.api.body import MULTIPART_OVERHEAD
from warden.api.errors import error_response
from warden.errors import PayloadTooLarge
from warden.settings import Settings

SIGN_IN_BODY_BYTES: Final = 16 * 1024
"""The console's sign-in body (one key of at most 4096 characters, as JSON), and any anonymous request's cap."""
INFER_OVERHEAD: Final = 64 * 1024
"""Room for an inference request's JSON header beyond its images."""
_PER_ELEMENT: Final = 8
"""JSON quotes and separator, or a binary length prefix, per image of an inference request."""


class BodyKind(StrEnum):
    """What a route's body is, which decides its cap."""

    JSON = "json"
    IMAGE = "image"
    INFER = "infer"
    MODEL = "model"
    DATASET = "dataset"
    SIGN_IN = "sign_in"


UPLOADS: Final[dict[tuple[str, str], BodyKind]] = {
    ("POST", "/v1/models/{name}/detect"): BodyKind.IMAGE,
    ("POST", "/v2/models/{name}/infer"): BodyKind.INFER,
    ("POST", "/v2/models/{name}/versions/{version}/infer"): BodyKind.INFER,
    ("POST", "/admin/tenants/{name}/models/{model}"): BodyKind.MODEL,
    ("POST", "/v1/datasets/{name}"): BodyKind.DATASET,
    ("POST", "/console/session"): BodyKind.SIGN_IN,
}
"""The routes whose body is not a small JSON document; every other route's cap is ``WARDEN_MAX_JSON_BYTES``."""


def infer_cap(images: int, image_bytes: int) -> int:
    """The body cap of an inference request of at most ``images`` images of ``image_bytes`` each, sent as base64."""
    return images * (4 * math.ceil(image_bytes / 3) + _PER_ELEMENT) + INFER_OVERHEAD


def body_cap(settings: Settings, kind: BodyKind) -> int:
    """The largest body a route of ``kind`` accepts from any caller (a tenant's own limits may be tighter)."""
    if kind is BodyKind.IMAGE:
        return settings.max_image_bytes + MULTIPART_OVERHEAD
    if kind is BodyKind.INFER:
        return infer_cap(settings.max_images_per_request, settings.max_image_bytes)
    if kind is BodyKind.MODEL:
        return settings.max_model_bytes
    if kind is BodyKind.DATASET:
        return settings.max_dataset_bytes
    if kind is BodyKind.SIGN_IN:
        return SIGN_IN_BODY_BYTES
    return settings.max_json_bytes


def presents_credential(headers: Headers) -> bool:
    """Whether a request carries an API key, a bearer token or a console session (valid or not)."""
    if any(name in headers for name in ("authorization", "x-api-key")):
        return True
    return any(part.strip().startswith(f"{SESSION_COOKIE}=") for part in headers.get("cookie", "").split(";"))


def declared_length(headers: Headers) -> int | None:
    """The request's ``Content-Length`` as a number, or ``None`` when absent or not a number."""
    value = headers.get("content-length")
    if value is None or not (value.isascii() and value.isdigit()):
        return None
    return int(value)


class BodyGuard:
    """Caps the body of every request: a declared length at once, a streamed body byte by byte."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    def caps(self, scope: Scope, headers: Headers) -> tuple[int, int, RouteTemplate | None]:
        """The request's route cap (for its declared length), the cap on what it may stream, and its upload route.

        A request without a credential may stream no more than the sign-in cap, whatever its route: the
        routes read nothing before authentication, so this bounds a route that would.
        """
        upload = upload_route(scope["method"], scope["path"])
        cap = body_cap(self.settings, upload.kind if upload is not None else BodyKind.JSON)
        return cap, cap if presents_credential(headers) else min(cap, SIGN_IN_BODY_BYTES), upload

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI call."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        cap, streamed, upload = self.caps(scope, headers)
        declared = declared_length(headers)
        if declared is not None and declared > cap:
            if upload is not None:
                scope["route"] = upload  # the audit record and the access line name the route refused
            answer = error_response(
                Request(scope), 413, PayloadTooLarge.code, f"the body has {declared} bytes; the limit here is {cap}"
            )
            answer.headers["Connection"] = "close"
            await answer(scope, receive, send)
            return
        ended = not ("transfer-encoding" in headers or (declared or 0) > 0)
        received = 0

        async def counted_receive() -> Message:
            nonlocal received, ended
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                ended = ended or not message.get("more_body", False)
                if received > streamed:
                    raise PayloadTooLarge(f"the body exceeds the limit here of {streamed} bytes")
            return message

        async def closing_send(message: Message) -> None:
            if message["type"] == "http.response.start" and not ended:
                MutableHeaders(scope=message)["Connection"] = "close"
            await send(message)

        await self.app(scope, counted_receive, closing_send)


@dataclass(frozen=True, slots=True)
class RouteTemplate:
    """An upload route as the guard knows it: its method, path template (``path``, as routes name it) and kind."""

    method: str
    path: str
    kind: BodyKind
    pattern: re.Pattern[str]


_UPLOAD_ROUTES: Final = tuple(
    RouteTemplate(method, template, kind, compile_path(template)[0]) for (method, template), kind in UPLOADS.items()
)


def upload_route(method: str, path: str) -> RouteTemplate | None:
    """The upload route a request addresses, if it addresses one."""
    for route in _UPLOAD_ROUTES:
        if route.method == method and route.pattern.match(path):
            return route
    return None
