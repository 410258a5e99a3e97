"""A tenant's quota: request rate and burst, concurrency, queue, fair-share weight, image size, daily cap.

``None`` means unlimited. ``isolation = "dedicated"`` gives the tenant its own
sessions and a reserved worker.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Final

from warden.errors import InvalidArgument

_INT32_FIELDS: Final = ("burst", "max_concurrency", "max_queue", "daily_requests")
_INT64_FIELDS: Final = ("max_image_bytes", "max_image_pixels")
SHARED: Final = "shared"
DEDICATED: Final = "dedicated"


@dataclass(frozen=True, slots=True)
class Quota:
    """Limits applied to every request of one tenant, before any decode."""

    rps: float | None = None
    burst: int | None = None
    max_concurrency: int | None = None
    max_queue: int | None = None
    weight: float = 1.0
    max_image_bytes: int | None = None
    max_image_pixels: int | None = None
    daily_requests: int | None = None
    isolation: str = SHARED

    def __post_init__(self) -> None:
        for name in ("rps", "burst", "max_concurrency", "max_queue", "max_image_bytes", "max_image_pixels"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise InvalidArgument(f"quota {name} must be positive (or unset for no limit), got {value}")
        if self.daily_requests is not None and self.daily_requests < 0:
            raise InvalidArgument(f"quota daily_requests must not be negative, got {self.daily_requests}")
        for names, top in ((_INT32_FIELDS, 2**31 - 1), (_INT64_FIELDS, 2**63 - 1)):
            for name in names:
                value = getattr(self, name)
                if value is not None and value > top:
                    raise InvalidArgument(f"quota {name} must be at most {top}, got {value}")
        for name in ("rps", "weight"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise InvalidArgument(f"quota {name} must be a finite number, got {value}")
        if not self.weight > 0:
            raise InvalidArgument(f"quota weight must be positive, got {self.weight}")
        if self.isolation not in (SHARED, DEDICATED):
            raise InvalidArgument(f"isolation must be {SHARED} or {DEDICATED}, got {self.isolation!r}")
        if self.burst is not None and self.rps is None:
            raise InvalidArgument("a burst needs a rate (rps)")

    def updated(self, changes: dict[str, Any]) -> Quota:
        """A copy with ``changes`` applied; a value of ``0`` clears a limit (unlimited), except for weight."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise InvalidArgument(f"unknown quota field(s) {', '.join(unknown)}")
        merged: dict[str, Any] = asdict(self)
        merged.update(
            {k: (None if v == 0 and k not in ("weight", "daily_requests") else v) for k, v in changes.items()}
        )
        return Quota(**merged)

    def to_dict(self) -> dict[str, Any]:
        """The quota as JSON-friendly fields."""
        return asdict(self)


QUOTA_FIELDS: Final = tuple(f.name for f in fields(Quota))
"""The quota's field names, which are also the ``tenants`` table's quota columns."""
