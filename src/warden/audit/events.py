"""Audit events: what happened, as metadata only, and its one canonical serialisation.

An event never holds image bytes, pixels, detections beyond their count, or secrets:
its fields are names, ids, numbers and small scalar ``details``; a string shaped like
a Warden API key is refused outright. Its canonical form (JSON, sorted keys, no
whitespace, UTF-8, ``None`` fields left out) is what the hash chain commits to.

Client addresses are recorded by policy (``ClientAddresses``): ``hashed`` (the default,
pseudonymised: a keyed HMAC-SHA256, so equal addresses stay linkable without being
readable), ``truncated`` (IPv4 /24, IPv6 /48) or ``full``.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final

from warden.errors import InvalidArgument

Scalar = str | int | float | bool | None
"""A value ``details`` may hold."""

MAX_TEXT: Final = 1024
MAX_DETAILS: Final = 32
_KEY_LIKE: Final = re.compile(r"wdn_[0-9a-f]{12}_[A-Za-z0-9_-]{43}")
_HASH_HEX: Final = 24
_TEXT_FIELDS: Final = frozenset(
    {"request_id", "tenant", "key_id", "authenticator", "route", "model", "error_code", "client", "action", "target"}
)
_INT_FIELDS: Final = frozenset({"model_version", "status", "image_bytes", "image_width", "image_height", "detections"})
_FLOAT_FIELDS: Final = frozenset({"queue_ms", "inference_ms", "total_ms"})


class EventKind(StrEnum):
    """What an event records: a served request, an administrative action, later a job or a de-identification."""

    REQUEST = "request"
    ADMIN = "admin"
    JOB = "job"
    DEID = "deid"


def canonical_json(value: object) -> str:
    """Deterministic JSON: sorted keys, no whitespace, UTF-8 text, no NaN or infinity."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def format_time(moment: datetime) -> str:
    """An instant as the chain stores it: UTC, microseconds, ``Z`` (``2026-11-22T10:00:00.000000Z``)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def utc_now() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One audited fact. Request events fill the request fields; admin events ``action``, ``target`` and ``details``.

    ``key_id`` is the acting credential's public id (an API key id or a JWT subject), never a
    secret. ``client`` is the client address already passed through the address policy
    (see :class:`ClientAddresses`). Build events with :meth:`request` or :meth:`admin`.
    """

    kind: EventKind
    time: datetime = field(default_factory=utc_now)
    request_id: str | None = None
    tenant: str | None = None
    key_id: str | None = None
    authenticator: str | None = None
    route: str | None = None
    model: str | None = None
    model_version: int | None = None
    status: int | None = None
    error_code: str | None = None
    queue_ms: float | None = None
    inference_ms: float | None = None
    total_ms: float | None = None
    image_bytes: int | None = None
    image_width: int | None = None
    image_height: int | None = None
    detections: int | None = None
    client: str | None = None
    action: str | None = None
    target: str | None = None
    details: Mapping[str, Scalar] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", _kind(self.kind))
        if not isinstance(self.time, datetime) or self.time.tzinfo is None:
            raise InvalidArgument("an audit event's time must be a timezone-aware datetime")
        object.__setattr__(self, "time", self.time.astimezone(UTC))
        for name in _TEXT_FIELDS | _INT_FIELDS | _FLOAT_FIELDS:
            value = getattr(self, name)
            if value is not None:
                _check_value(name, value)
        if not isinstance(self.details, Mapping):
            raise InvalidArgument("audit details must be a mapping of names to scalars")
        if len(self.details) > MAX_DETAILS:
            raise InvalidArgument(f"audit details hold at most {MAX_DETAILS} entries")
        for key, value in self.details.items():
            if not isinstance(key, str) or not 0 < len(key) <= 64:
                raise InvalidArgument(f"audit detail names are 1-64 characters, not {key!r}")
            _check_scalar(f"details.{key}", value)
        object.__setattr__(self, "details", dict(sorted(self.details.items())))

    @classmethod
    def request(cls, *, time: datetime | None = None, **values: Any) -> AuditEvent:
        """A served (or refused) inference request: tenant, key id, route, model, outcome, latencies, image size."""
        return cls(EventKind.REQUEST, time or utc_now(), **values)

    @classmethod
    def admin(
        cls, action: str, target: str | None = None, *, time: datetime | None = None, **values: Any
    ) -> AuditEvent:
        """An administrative action (``tenant.create``, ``key.revoke``, ``model.push``, ``alias.set``, …)."""
        return cls(EventKind.ADMIN, time or utc_now(), action=action, target=target, **values)

    def to_dict(self) -> dict[str, Any]:
        """The event as a JSON object: fields that are ``None`` (and empty details) left out."""
        out: dict[str, Any] = {}
        for item in fields(self):
            value = getattr(self, item.name)
            if value is None or (item.name == "details" and not value):
                continue
            if item.name == "time":
                value = format_time(value)
            elif item.name == "kind":
                value = value.value
            elif item.name == "details":
                value = dict(value)
            out[item.name] = value
        return out

    def canonical(self) -> str:
        """The canonical JSON text of :meth:`to_dict`: the bytes the hash chain commits to."""
        return canonical_json(self.to_dict())

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AuditEvent:
        """Rebuild an event from :meth:`to_dict` output; names this version does not know are ignored."""
        known = {item.name for item in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if "time" not in values or "kind" not in values:
            raise InvalidArgument("an audit event needs 'kind' and 'time'")
        values["time"] = datetime.fromisoformat(str(values["time"]))
        return cls(**values)


def _kind(value: object) -> EventKind:
    try:
        return EventKind(str(value))
    except ValueError:
        allowed = ", ".join(k.value for k in EventKind)
        raise InvalidArgument(f"unknown audit event kind {value!r}; use one of {allowed}") from None


def _check_value(name: str, value: object) -> None:
    if name in _TEXT_FIELDS:
        if not isinstance(value, str):
            raise InvalidArgument(f"audit field {name} must be a string, not {type(value).__name__}")
        _check_text(name, value)
        return
    wanted = int if name in _INT_FIELDS else int | float
    if isinstance(value, bool) or not isinstance(value, wanted):
        raise InvalidArgument(f"audit field {name} must be a number, not {type(value).__name__}")
    if not math.isfinite(value) or value < 0:
        raise InvalidArgument(f"audit field {name} must be a finite number >= 0, not {value!r}")


def _check_scalar(name: str, value: object) -> None:
    if value is None or isinstance(value, bool | int):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidArgument(f"audit field {name} must be finite")
        return
    if not isinstance(value, str):
        raise InvalidArgument(f"audit field {name} must be a string, number, boolean or null")
    _check_text(name, value)


def _check_text(name: str, value: str) -> None:
    if len(value) > MAX_TEXT:
        raise InvalidArgument(f"audit field {name} is longer than {MAX_TEXT} characters")
    if _KEY_LIKE.search(value):
        raise InvalidArgument(f"audit field {name} holds what looks like an API key; record its key id instead")


class AddressPolicy(StrEnum):
    """How a client address is recorded."""

    HASHED = "hashed"
    TRUNCATED = "truncated"
    FULL = "full"


@dataclass(frozen=True, slots=True)
class ClientAddresses:
    """Applies the client-address policy; ``key`` keys the HMAC of the ``hashed`` policy."""

    policy: AddressPolicy
    key: bytes = field(repr=False)

    def __call__(self, address: str | None) -> str | None:
        """The form of ``address`` to record, or ``None`` (no address, or not an IP under ``truncated``)."""
        if address is None or address == "":
            return None
        ip = _parse_ip(address)
        if self.policy is AddressPolicy.FULL:
            return address if ip is None else str(ip)
        if self.policy is AddressPolicy.TRUNCATED:
            if ip is None:
                return None
            prefix = 24 if ip.version == 4 else 48
            return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))
        text = address if ip is None else str(ip)
        return "hmac:" + hmac.new(self.key, text.encode(), hashlib.sha256).hexdigest()[:_HASH_HEX]


def _parse_ip(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(address.strip().strip("[]").split("%")[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip
