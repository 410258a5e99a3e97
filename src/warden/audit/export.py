"""SIEM formats, one line per entry: JSON lines, RFC 5424 syslog, and ArcSight CEF.

- ``jsonl``: ``{"event": {...}, "hash": ..., "seq": ..., "stream": ...}``, keys sorted.
- ``syslog``: ``<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [SD] MSG`` (RFC 5424). Facility
  13 (log audit); HOSTNAME is the stream (replica id); MSGID the event kind; the structured
  data element ``warden@32473`` (32473 is RFC 5424's documentation enterprise number) holds
  the scalar fields, with ``"``, ``\\`` and ``]`` escaped by a backslash; MSG is the entry's
  JSON line in ASCII. Control characters, which would break the line, become the text
  ``\\uXXXX`` (its backslash escaped like any other).
- ``cef``: ``CEF:0|Warden|Warden|VERSION|SIGNATURE|NAME|SEVERITY|EXTENSION``. In the header
  ``\\`` and ``|`` are escaped by a backslash (line breaks become spaces); in the extension
  ``\\`` and ``=`` are escaped, and line breaks written as ``\\n`` and ``\\r``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from enum import StrEnum
from typing import Any, Final

from warden import __version__
from warden.audit.events import EventKind, canonical_json, format_time
from warden.audit.query import AuditEntry
from warden.errors import InvalidArgument

SD_ID: Final = "warden@32473"
APP_NAME: Final = "warden"
_FACILITY_AUDIT: Final = 13
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")
_NOT_PRINTUSASCII: Final = re.compile(r"[^\x21-\x7e]")


class ExportFormat(StrEnum):
    """The export formats."""

    JSONL = "jsonl"
    SYSLOG = "syslog"
    CEF = "cef"


def export_lines(entries: Iterable[AuditEntry], format_: ExportFormat | str) -> Iterator[str]:
    """Each entry as one line (without its newline) in ``format_``."""
    try:
        render = _RENDERERS[ExportFormat(format_)]
    except ValueError:
        raise InvalidArgument(f"unknown export format {format_!r}; use jsonl, syslog or cef") from None
    return (render(entry) for entry in entries)


def to_jsonl(entry: AuditEntry) -> str:
    """An entry as one JSON line, keys sorted, UTF-8."""
    return canonical_json(entry.to_dict())


def to_syslog(entry: AuditEntry) -> str:
    """An entry as an RFC 5424 message (see the module docstring)."""
    event = entry.event
    severity = _syslog_severity(event.kind, event.status)
    header = " ".join(
        [
            f"<{_FACILITY_AUDIT * 8 + severity}>1",
            format_time(event.time),
            _header_field(entry.stream, 255),
            APP_NAME,
            "-",
            _header_field(event.kind.value, 32),
        ]
    )
    params = {"stream": entry.stream, "seq": entry.seq, "hash": entry.hash}
    params.update({k: v for k, v in event.to_dict().items() if k not in ("time", "details")})
    data = " ".join(f'{name}="{_sd_value(value)}"' for name, value in params.items())
    message = json.dumps(entry.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return f"{header} [{SD_ID} {data}] {message}"


def to_cef(entry: AuditEntry) -> str:
    """An entry as an ArcSight CEF line (see the module docstring)."""
    event = entry.event
    if event.kind is EventKind.ADMIN:
        signature, name, severity = event.action or "admin", f"admin action {event.action or ''}".strip(), 3
    elif event.kind is EventKind.REQUEST:
        status = event.status or 0
        signature, name = "request", "inference request"
        severity = 6 if status >= 500 else 4 if status >= 400 else 1
    else:
        signature, name, severity = event.kind.value, f"{event.kind.value} event", 2
    header = "|".join(_cef_header(part) for part in ("Warden", "Warden", __version__, signature, name))
    extension: dict[str, Any] = {
        "rt": int(event.time.timestamp() * 1000),
        "dvchost": entry.stream,
        "cn1Label": "seq",
        "cn1": entry.seq,
        "cs3Label": "chainHash",
        "cs3": entry.hash,
        "externalId": event.request_id,
        "suid": event.key_id,
        "request": event.route,
        "outcome": event.status,
        "reason": event.error_code,
        "act": event.action,
        "in": event.image_bytes,
    }
    labelled = (
        ("cs1", "tenant", event.tenant),
        ("cs2", "model", event.model),
        ("cs4", "client", event.client),
        ("cs5", "target", event.target),
        ("cs6", "authenticator", event.authenticator),
        ("cn2", "modelVersion", event.model_version),
        ("cn3", "detections", event.detections),
        ("cfp1", "queueMs", event.queue_ms),
        ("cfp2", "inferenceMs", event.inference_ms),
        ("cfp3", "totalMs", event.total_ms),
        ("flexNumber1", "imageWidth", event.image_width),
        ("flexNumber2", "imageHeight", event.image_height),
    )
    for key, label, value in labelled:
        if value is not None:
            extension[f"{key}Label"], extension[key] = label, value
    if event.details:
        extension["msg"] = canonical_json(dict(event.details))
    pairs = " ".join(f"{key}={_cef_value(value)}" for key, value in extension.items() if value is not None)
    return f"CEF:0|{header}|{severity}|{pairs}"


def _syslog_severity(kind: EventKind, status: int | None) -> int:
    if kind is EventKind.ADMIN:
        return 5  # notice
    if status is not None and status >= 500:
        return 4  # warning
    if status is not None and status >= 400:
        return 5  # notice
    return 6  # informational


def _header_field(value: str, limit: int) -> str:
    cleaned = _NOT_PRINTUSASCII.sub("_", value)[:limit]
    return cleaned or "-"


def _visible_controls(text: str) -> str:
    return _CONTROL.sub(lambda match: f"\\u{ord(match.group()):04x}", text)


def _sd_value(value: object) -> str:
    text = _visible_controls(value if isinstance(value, str) else json.dumps(value))
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def _cef_header(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("|", "\\|")
    return re.sub(r"[\r\n]+", " ", escaped)


def _cef_value(value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    escaped = text.replace("\\", "\\\\").replace("=", "\\=").replace("\r", "\\r").replace("\n", "\\n")
    return _CONTROL.sub(" ", escaped)


_RENDERERS: Final = {ExportFormat.JSONL: to_jsonl, ExportFormat.SYSLOG: to_syslog, ExportFormat.CEF: to_cef}
