"""The ``audit.resumed`` record: what a writer found when it took over a stream whose last writer did not close.

A clean close signs a checkpoint stating the stream's last record; a crash leaves the
records after the last signed checkpoint resting on the chain alone, where removing them
cannot be detected. A later writer of the stream that closes cleanly would vouch for what
is left, so before its first record it appends this one, chained and signed: the last seq
it found, the last seq a signature vouched for, and that the previous run did not close.
``verify`` reports every such record, so a crash, and the window in which records could
have been removed before the restart, stay visible after the stream is sealed again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from warden.audit.chain import StoredRecord
from warden.audit.events import AuditEvent, EventKind

RESUMED: Final = "audit.resumed"
"""The ``action`` of a resumption record (an admin event, targeting its stream)."""


@dataclass(frozen=True, slots=True)
class Resumption:
    """A writer took over a stream left unsealed: at ``seq``, after finding ``found_last_seq`` (signed through)."""

    seq: int
    found_last_seq: int
    signed_through: int

    @property
    def unvouched(self) -> tuple[int, int] | None:
        """The seqs (first, last) no signature ever vouched for, or ``None`` when the crash left none."""
        if self.found_last_seq <= self.signed_through:
            return None
        return (self.signed_through + 1, self.found_last_seq)

    def to_dict(self) -> dict[str, Any]:
        """As ``verify --json`` prints it (``unvouched``: ``[first, last]`` or ``null``)."""
        gap = self.unvouched
        return {
            "seq": self.seq,
            "found_last_seq": self.found_last_seq,
            "signed_through": self.signed_through,
            "unvouched": None if gap is None else list(gap),
        }


def resumption_event(stream: str, found_last_seq: int, signed_through: int, time: datetime) -> AuditEvent:
    """The record a writer appends first when the stream's tail (``found_last_seq``) has no clean close."""
    details = {"found_last_seq": found_last_seq, "signed_through": signed_through, "previous_closed": False}
    return AuditEvent.admin(RESUMED, stream, time=time, key_id="audit-writer", details=details)


def resumption_of(row: StoredRecord) -> Resumption | None:
    """The resumption ``row`` records, or ``None`` when it is another record."""
    if row.kind != EventKind.ADMIN.value:
        return None
    try:
        body = json.loads(row.body)
        details = body["details"] if body.get("action") == RESUMED else None
        if not isinstance(details, dict):
            return None
        found, signed = details["found_last_seq"], details["signed_through"]
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    if not all(isinstance(value, int) and not isinstance(value, bool) for value in (found, signed)):
        return None
    return Resumption(row.seq, found, signed)
