"""Structured logs (structlog over the standard ``logging`` module): JSON lines or console text.

:func:`configure_logging` installs one handler on the root logger that renders
every record, Warden's own and its libraries' (uvicorn, SQLAlchemy), as one JSON
object per line (``WARDEN_LOG_FORMAT=json``) or as readable ``key=value`` text
(``console``), at ``WARDEN_LOG_LEVEL``. ``warden serve`` calls it; tests and
library users who do not are left with their own logging set-up.

What a line may hold is decided here, not by each caller:

- the access line (:func:`log_request`) has the request id, tenant, model, route
  template, status, error code and durations, and nothing of the request itself:
  no header, credential, client address, query string, raw path or image byte;
- an exception is written as its type and its frames (file, line, function),
  never its message or local variables, which may echo request data;
- as a last guard, anything shaped like a Warden API key, a JWT or a Bearer
  credential is masked in every value before it is written.
"""

from __future__ import annotations

import logging
import re
import sys
import traceback
from collections.abc import MutableMapping
from types import TracebackType
from typing import Any, Final, Literal, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from warden.observability.request import FinishedRequest

ACCESS_LOGGER: Final = "warden.access"
"""The standard-library logger the access lines go to."""
QUIET_ROUTES: Final = frozenset({"GET /metrics", "GET /v2/health/live", "GET /v2/health/ready"})
"""Scrapes and probes: their successful access lines are written at debug level (they come every few seconds)."""
_HANDLER_NAME: Final = "warden"
_TYPE_NAME: Final = re.compile(r"[A-Za-z0-9_.]*")
_HEADLINE: Final = ("time", "level", "logger", "event")
_MASKS: Final = (
    (re.compile(r"\b(wdn_[0-9a-f]{12}_)[A-Za-z0-9_-]+"), r"\1[redacted]"),
    (re.compile(r"\beyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"), "[redacted-jwt]"),
    (re.compile(r"(?i)\b(bearer\s+)[^\s,;\"']+"), r"\1[redacted]"),
)


def _shared_chain() -> list[Processor]:
    """What every line gets, whoever wrote it: request context, level, logger name, UTC time."""
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="time"),
    ]


def _own_chain() -> list[Processor]:
    """Structlog's own lines: made safe before they leave, whoever renders them (even a bare ``logging``)."""
    return [
        structlog.stdlib.filter_by_level,
        *_shared_chain(),
        safe_exception,
        mask_secrets,
        structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
    ]


def configure_logging(
    format_: Literal["json", "console"] = "json", level: str = "info", stream: TextIO | None = None
) -> logging.Handler:
    """Route every log record to ``stream`` (default stderr) as JSON lines or console text; returns the handler.

    Calling it again replaces the handler it installed before. uvicorn's loggers are
    made to propagate to it (run uvicorn with ``log_config=None, access_log=False``:
    the access line is Warden's own).
    """
    out = stream if stream is not None else sys.stderr
    renderer: Processor
    if format_ == "json":
        renderer = structlog.processors.JSONRenderer(sort_keys=False)
    else:
        renderer = structlog.dev.ConsoleRenderer(  # plain_traceback: never rich's, which shows local variables
            colors=out.isatty(), exception_formatter=structlog.dev.plain_traceback, timestamp_key="time"
        )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_shared_chain(),
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            safe_exception,
            mask_secrets,
            _headline_first,
            renderer,
        ],
    )
    handler = logging.StreamHandler(out)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Image decoders log chunk names and sizes at debug level: image-derived, so never below info.
    logging.getLogger("PIL").setLevel(max(logging.INFO, root.level))
    for name in ("uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    structlog.configure(
        processors=_own_chain(),
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    return handler


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    """A structlog logger writing to the standard-library logger ``name`` (rendered by :func:`configure_logging`).

    It does not depend on structlog's global configuration, so a library user who
    never configures logging gets standard ``logging`` behaviour.
    """
    logger: structlog.stdlib.BoundLogger = structlog.wrap_logger(
        logging.getLogger(name),
        processors=_own_chain(),
        wrapper_class=structlog.stdlib.BoundLogger,
    )
    return logger


def log_request(
    logger: structlog.stdlib.BoundLogger, finished: FinishedRequest, failure: BaseException | None = None
) -> None:
    """Write the access line of ``finished``; ``failure``: the exception the app raised, if it did."""
    route = f"{finished.method} {finished.route}"
    fields: dict[str, Any] = {
        "request_id": finished.request_id,
        "method": finished.method,
        "route": finished.route,
        "status": finished.status,
        "duration_ms": _ms(finished.total),
    }
    if finished.code is not None:
        fields["code"] = finished.code
    if finished.tenant is not None:
        fields["tenant"] = finished.tenant
    elif finished.operator:
        fields["operator"] = True
    if finished.model is not None:
        fields["model"] = finished.model
        fields["model_version"] = finished.model_version
    for stage, seconds in finished.stages.items():
        fields[f"{stage}_ms"] = _ms(seconds)
    if finished.audit is not None:
        fields["audit_ms"] = _ms(finished.audit)
    if failure is not None:
        logger.error("request failed", exc_info=failure, **fields)
    elif finished.status >= 500:
        logger.error("request", **fields)
    elif finished.status < 400 and route in QUIET_ROUTES:
        logger.debug("request", **fields)
    else:
        logger.info("request", **fields)


def safe_exception(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """Replace ``exc_info`` by the exception's type and frames: no message, no locals (they may hold request data)."""
    kind, tb = _exception_of(event_dict.pop("exc_info", None))
    if kind is not None:
        event_dict["exception"] = f"{kind.__module__}.{kind.__qualname__}"
        event_dict["frames"] = [f"{f.filename}:{f.lineno} in {f.name}" for f in traceback.extract_tb(tb)]
    elif not _TYPE_NAME.fullmatch(str(event_dict.get("exception", ""))):
        event_dict.pop("exception", None)  # a traceback rendered elsewhere: its message may echo request data
    return event_dict


def mask_secrets(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """Mask whatever looks like an API key, a JWT or a Bearer credential, in every string value."""
    for key, value in list(event_dict.items()):
        event_dict[key] = _masked(value)
    return event_dict


def _headline_first(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """Time, level, logger and event lead each line; the rest follows in the order it was given."""
    lead = {key: event_dict.pop(key) for key in _HEADLINE if key in event_dict}
    return {**lead, **event_dict}


def _masked(value: Any) -> Any:
    if isinstance(value, str):
        for pattern, replacement in _MASKS:
            value = pattern.sub(replacement, value)
        return value
    if isinstance(value, MutableMapping):
        return {k: _masked(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_masked(v) for v in value]
    if isinstance(value, bytes | bytearray | memoryview):
        return f"<{len(value)} bytes>"
    return value


def _exception_of(exc_info: Any) -> tuple[type[BaseException] | None, TracebackType | None]:
    if exc_info is True:
        exc_info = sys.exc_info()
    if isinstance(exc_info, BaseException):
        return type(exc_info), exc_info.__traceback__
    if isinstance(exc_info, tuple) and len(exc_info) == 3 and exc_info[0] is not None:
        return exc_info[0], exc_info[2]
    return None, None


def _ms(seconds: float) -> float:
    return round(max(seconds, 0.0) * 1000, 3)
