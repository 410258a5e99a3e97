"""JSON request bodies read only after the caller is authenticated, within a small cap.

FastAPI reads a body declared as a pydantic parameter before it resolves any dependency,
authentication included, and without a size limit. Warden's routes therefore take their
JSON body from :func:`json_body`, a dependency that depends on the caller's own: the
credential is checked first, then at most ``WARDEN_MAX_JSON_BYTES`` are read (the console's
sign-in, which authenticates with the key in its body, reads at most a few KiB). Routes
document the body with :func:`json_request_body`.

This module does not use postponed annotations: FastAPI reads the dependency's signature,
whose ``Depends`` names a function chosen when the dependency is made.
"""

from collections.abc import Awaitable, Callable
from email.message import Message
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from warden.api.body import read_body
from warden.api.guard import SIGN_IN_BODY_BYTES
from warden.api.schemas import inline_schema
from warden.errors import InvalidArgument
from warden.tenancy import Principal

M = TypeVar("M", bound=BaseModel)


def json_body(model: type[M], caller: Callable[..., Awaitable[Principal]] | None) -> Callable[..., Awaitable[M]]:
    """A dependency that yields the request's JSON body as ``model``, read after ``caller`` authenticated it.

    ``caller`` ``None`` is for the one anonymous route (sign-in): its body is capped at
    :data:`~warden.api.guard.SIGN_IN_BODY_BYTES`.
    """
    if caller is None:

        async def anonymous(request: Request) -> M:
            return parse_json(model, await _read_json(request, SIGN_IN_BODY_BYTES))

        return anonymous

    async def authenticated(request: Request, _caller: Annotated[Principal, Depends(caller)]) -> M:
        limit: int = request.app.state.services.settings.max_json_bytes
        return parse_json(model, await _read_json(request, limit))

    return authenticated


def json_request_body(model: type[BaseModel]) -> dict[str, Any]:
    """The ``openapi_extra`` documenting a route's required JSON body of ``model``."""
    schema = inline_schema(model.model_json_schema())
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def parse_json(model: type[M], raw: bytes) -> M:
    """``raw`` validated as ``model``; a bad document is a validation error named by field, as FastAPI's are."""
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        errors = [{**error, "loc": ("body", *error["loc"])} for error in exc.errors(include_url=False)]
        raise RequestValidationError(errors) from None


async def _read_json(request: Request, limit: int) -> bytes:
    content_type = request.headers.get("content-type")
    if content_type is not None:
        message = Message()
        message["content-type"] = content_type
        subtype = message.get_content_subtype()
        if message.get_content_maintype() != "application" or not (subtype == "json" or subtype.endswith("+json")):
            raise InvalidArgument("the body must be a JSON document sent as Content-Type: application/json")
    raw = await read_body(request, limit)
    if not raw:
        raise InvalidArgument("this route needs a JSON body")
    return raw
