"""Request bodies read into memory only, with a size bound, and multipart parsed without spooling.

Starlette's form parser spools uploads over 1 MiB to temporary files; Warden
never calls it. Images are read from the stream into one ``bytes`` object, and
multipart bodies are parsed by python-multipart's callback parser into memory.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable
from typing import Final, TypeVar

from fastapi import Request
from python_multipart.exceptions import FormParserError, MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool

from warden.errors import ClientDisconnected, InvalidArgument, PayloadTooLarge, UnsupportedMediaType
from warden.serving import StageTimes

T = TypeVar("T")
TIMEOUT_HEADER: Final = "x-request-timeout-ms"

MULTIPART_OVERHEAD: Final = 64 * 1024
"""Room for multipart boundaries and part headers beyond the image limit."""
MAX_PARTS: Final = 16
"""The most parts a multipart body may have (a detect request needs one)."""
MAX_PART_HEADER_BYTES: Final = 8 * 1024
"""The most header bytes (names and values) one multipart part may have."""
MAX_BOUNDARY: Final = 70
"""The longest multipart boundary RFC 2046 allows."""
_BOUNDARY: Final = re.compile(rb"[0-9A-Za-z'()+_,\-./:=? ]*[0-9A-Za-z'()+_,\-./:=?]")


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refused with ``PayloadTooLarge`` as soon as it exceeds ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the body has {declared} bytes; the limit is {limit}")
    body = bytearray()
    async for chunk in request.stream():
        if len(body) + len(chunk) > limit:
            raise PayloadTooLarge(f"the body exceeds the limit of {limit} bytes")
        body += chunk
    return bytes(body)


async def read_image(request: Request, max_bytes: int) -> bytes:
    """The image of a detect request: the raw body (``image/*``, octet-stream) or the multipart field ``image``."""
    media_type, options = parse_options_header(request.headers.get("content-type", ""))
    kind = media_type.decode("latin-1").lower()
    if kind.startswith("image/") or kind == "application/octet-stream":
        return await read_body(request, max_bytes)
    if kind == "multipart/form-data":
        boundary = check_boundary(options.get(b"boundary"))
        body = await read_body(request, max_bytes + MULTIPART_OVERHEAD)
        image = await run_in_threadpool(multipart_field, body, boundary, "image")
        del body
        if len(image) > max_bytes:
            raise PayloadTooLarge(f"the image has {len(image)} bytes; the limit is {max_bytes}")
        return image
    shown = kind or "none"
    raise UnsupportedMediaType(
        f"content type {shown!r} is not accepted: send the image as image/*, application/octet-stream, "
        "or multipart/form-data with a field named 'image'"
    )


def check_boundary(boundary: bytes | None) -> bytes:
    """The multipart boundary, if it is one RFC 2046 allows (1-70 of its characters, not ending in a space)."""
    if not boundary:
        raise InvalidArgument("multipart body without a boundary")
    if len(boundary) > MAX_BOUNDARY:
        raise InvalidArgument(f"the multipart boundary has {len(boundary)} characters; RFC 2046 allows {MAX_BOUNDARY}")
    if not _BOUNDARY.fullmatch(boundary):
        raise InvalidArgument(
            "the multipart boundary may hold only letters, digits, spaces and '()+_,-./:=? (RFC 2046), "
            "and may not end in a space"
        )
    return boundary


def multipart_field(body: bytes, boundary: bytes, field: str) -> bytes:
    """The content of the one multipart part named ``field``, parsed in memory; other parts' bytes are dropped.

    At most ``MAX_PARTS`` parts of at most ``MAX_PART_HEADER_BYTES`` of headers each: a body of
    400,000 empty parts held every one of them and kept the event loop for a second.
    """
    found: bytearray | None = None
    parts = 0
    header_bytes = 0
    header_field = bytearray()
    header_value = bytearray()
    disposition = b""
    keeping = False

    def on_part_begin() -> None:
        nonlocal disposition, header_bytes, keeping, parts
        parts += 1
        if parts > MAX_PARTS:
            raise InvalidArgument(f"the multipart body has more than {MAX_PARTS} parts")
        disposition, header_bytes, keeping = b"", 0, False

    def on_header_bytes(data: bytes, start: int, end: int, into: bytearray) -> None:
        nonlocal header_bytes
        header_bytes += end - start
        if header_bytes > MAX_PART_HEADER_BYTES:
            raise InvalidArgument(f"a multipart part has more than {MAX_PART_HEADER_BYTES} bytes of headers")
        into.extend(data[start:end])

    def on_header_end() -> None:
        nonlocal disposition
        if header_field.lower() == b"content-disposition":
            disposition = bytes(header_value)
        header_field.clear()
        header_value.clear()

    def on_headers_finished() -> None:
        nonlocal found, keeping
        _, params = parse_options_header(disposition)
        if params.get(b"name", b"").decode("latin-1") == field:
            if found is not None:
                raise InvalidArgument(f"the multipart body has more than one field named {field!r}")
            found, keeping = bytearray(), True

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if keeping and found is not None:
            found.extend(data[start:end])

    callbacks = {
        "on_part_begin": on_part_begin,
        "on_header_field": lambda data, start, end: on_header_bytes(data, start, end, header_field),
        "on_header_value": lambda data, start, end: on_header_bytes(data, start, end, header_value),
        "on_header_end": on_header_end,
        "on_headers_finished": on_headers_finished,
        "on_part_data": on_part_data,
    }
    try:
        parser = MultipartParser(check_boundary(boundary), callbacks)  # type: ignore[arg-type]
        parser.write(body)
        parser.finalize()
    except (MultipartParseError, FormParserError):
        raise InvalidArgument(
            "malformed multipart body: its parts do not follow the boundary its Content-Type names"
        ) from None
    if found is None:
        raise InvalidArgument(f"the multipart body has no field named {field!r}")
    return bytes(found)


def request_deadline(request: Request, timeout_ms: object = None) -> float:
    """The monotonic deadline: the request's timeout (parameter, else ``X-Request-Timeout-Ms``), capped."""
    maximum: int = request.app.state.services.settings.max_timeout_ms
    chosen = timeout_ms if timeout_ms is not None else request.headers.get(TIMEOUT_HEADER)
    if chosen is None:
        return time.monotonic() + maximum / 1000
    try:
        value = float(chosen)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InvalidArgument(f"a timeout must be a number of milliseconds, got {shown(chosen)}") from None
    if not value > 0:
        raise InvalidArgument(f"a timeout must be positive, got {shown(chosen)}")
    return time.monotonic() + min(value, maximum) / 1000


def shown(value: object) -> str:
    """A caller's value as an error message may quote it: short scalars as they are, anything else by its kind."""
    if isinstance(value, bool | int | float) or (isinstance(value, str) and len(value) <= 40):
        return repr(value)
    if isinstance(value, str):
        return f"a string of {len(value)} characters"
    kinds = {dict: "an object", list: "a list", type(None): "null"}
    return kinds.get(type(value), "a value of another type")


async def unless_disconnected(request: Request, work: Awaitable[T], times: StageTimes | None = None) -> T:
    """Await ``work``, withdrawing it (or stopping its run) if the client disconnects first (nobody would read
    the answer); ``times`` tells the error, and so the audit record, which stage was cut."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnect(request))
    try:
        done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if task in done:
        return task.result()
    task.cancel()
    stage = times.stage if times is not None else "queue"
    raise ClientDisconnected("the client disconnected before its answer was ready", stage=stage)


async def _disconnect(request: Request) -> None:
    message = await request.receive()
    while message["type"] != "http.disconnect":
        message = await request.receive()
