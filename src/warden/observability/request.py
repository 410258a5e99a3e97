"""What one finished HTTP request tells the metrics and the access log: metadata only.

A :class:`FinishedRequest` holds the facts both consumers may use, and nothing
else: no header, no credential, no client address, no query string, no path
beyond the route template, nothing derived from an image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from warden.errors import AuditUnavailable, DeadlineExceeded, OverCapacity, QuotaExceeded, RateLimited

REFUSALS: Final = frozenset(
    {RateLimited.code, QuotaExceeded.code, OverCapacity.code, DeadlineExceeded.code, AuditUnavailable.code}
)
"""Error codes that mean "declined for load, quota or availability", not "the request was wrong"."""
NO_ROUTE: Final = "(no route)"
"""The route of a request that matched none (its raw path is never kept: callers choose it)."""
METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
"""Methods kept as sent; any other (callers choose it) is written ``OTHER``."""


@dataclass(frozen=True, slots=True)
class FinishedRequest:
    """One answered (or failed) request, as metrics and logs see it. Durations are in seconds."""

    request_id: str | None
    method: str
    route: str
    """The route template (``/v1/models/{name}/detect``), or :data:`NO_ROUTE`."""
    status: int
    code: str | None
    """The stable error code the answer carried (``X-Error-Code``); ``None`` on success."""
    total: float
    tenant: str | None = None
    """The authenticated caller's tenant; ``None`` for operators and unauthenticated requests."""
    operator: bool = False
    """Whether the caller authenticated with an operator key (bound to no tenant)."""
    model: str | None = None
    """The model name the request resolved to (a registered name, never one the caller merely asked for)."""
    model_version: int | None = None
    queue: float | None = None
    decode: float | None = None
    preprocess: float | None = None
    inference: float | None = None
    audit: float | None = None
    """How long a successful answer waited for its audit record to be durable (sync durability)."""

    @property
    def outcome(self) -> str:
        """The status class: ``2xx``, ``3xx``, ``4xx`` or ``5xx``."""
        return f"{min(max(self.status // 100, 1), 5)}xx"

    @property
    def refusal(self) -> str | None:
        """The refusal reason (rate_limited, quota_exceeded, over_capacity, ...), or ``None``."""
        return self.code if self.code in REFUSALS else None

    @property
    def stages(self) -> dict[str, float]:
        """The stage times noted for this request (queue, decode, preprocess, inference), when it ran a model."""
        found = {
            "queue": self.queue,
            "decode": self.decode,
            "preprocess": self.preprocess,
            "inference": self.inference,
        }
        return {name: seconds for name, seconds in found.items() if seconds is not None}
