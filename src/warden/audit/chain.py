"""The hash chain and its signed checkpoints, as pure functions over plain values.

Each stream (one per replica) is a chain: record ``seq`` (1, 2, …) stores
``prev_hash`` (the previous record's hash; 64 zeros for the first) and

    hash = sha256(prev_hash || canonical({"event": …, "seq": …, "stream": …}))

where ``prev_hash`` is its 64 hex digits in ASCII and the canonical JSON is
:func:`record_bytes` (the event's stored canonical text embedded as is). A
checkpoint states that record ``seq`` of ``stream`` had hash ``hash``; it is
signed with HMAC-SHA256 under a key derived from the server secret, so a chain
re-hashed from some point on no longer matches a checkpoint nobody can forge.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Final

from warden.audit.events import canonical_json, format_time

GENESIS: Final = "0" * 64
"""The ``prev_hash`` of a stream's first record."""

_CHECKPOINT_CONTEXT: Final = b"warden audit checkpoint v1"
_ADDRESS_CONTEXT: Final = b"warden audit client address v1"


class CheckpointKind(StrEnum):
    """Why a checkpoint was written."""

    SEAL = "seal"
    """Every N records."""
    CLOSE = "close"
    """On a clean shutdown of the writer."""
    CUT = "cut"
    """Retention removed every record up to and including ``seq``; the chain resumes after it."""


@dataclass(frozen=True, slots=True)
class AuditKeys:
    """The keys the audit trail uses, each derived from the server secret for one purpose."""

    checkpoint: bytes = field(repr=False)
    address: bytes = field(repr=False)

    @classmethod
    def derive(cls, server_secret: bytes) -> AuditKeys:
        """``HMAC(server_secret, purpose)`` for checkpoint signatures and for hashed client addresses."""
        return cls(
            checkpoint=hmac.new(server_secret, _CHECKPOINT_CONTEXT, hashlib.sha256).digest(),
            address=hmac.new(server_secret, _ADDRESS_CONTEXT, hashlib.sha256).digest(),
        )


@dataclass(frozen=True, slots=True)
class StoredRecord:
    """A record as stored: chain position and hashes, the hashed ``body``, and the columns repeated from it."""

    stream: str
    seq: int
    time: datetime
    kind: str
    tenant: str | None
    request_id: str | None
    body: str
    prev_hash: str
    hash: str


@dataclass(frozen=True, slots=True)
class StoredCheckpoint:
    """A checkpoint as stored."""

    stream: str
    seq: int
    hash: str
    kind: str
    created_at: datetime
    signature: str


def record_bytes(stream: str, seq: int, body: str) -> bytes:
    """The canonical JSON of a record: ``{"event":<body>,"seq":<seq>,"stream":<stream>}`` (keys sorted)."""
    return f'{{"event":{body},"seq":{int(seq)},"stream":{json.dumps(stream, ensure_ascii=False)}}}'.encode()


def record_hash(prev_hash: str, stream: str, seq: int, body: str) -> str:
    """A record's chain hash, in hex."""
    digest = hashlib.sha256(prev_hash.encode("ascii", "replace"))
    digest.update(record_bytes(stream, seq, body))
    return digest.hexdigest()


def chain(
    stream: str, bodies: list[str], *, after_seq: int = 0, after_hash: str = GENESIS
) -> list[tuple[int, str, str]]:
    """Link ``bodies`` after ``(after_seq, after_hash)``: one ``(seq, prev_hash, hash)`` per body."""
    links = []
    prev = after_hash
    for offset, body in enumerate(bodies, start=1):
        seq = after_seq + offset
        digest = record_hash(prev, stream, seq, body)
        links.append((seq, prev, digest))
        prev = digest
    return links


def checkpoint_signature(key: bytes, *, stream: str, seq: int, hash_: str, kind: str, created_at: datetime) -> str:
    """HMAC-SHA256 (hex) over the canonical JSON of everything a checkpoint states."""
    statement = canonical_json(
        {"hash": hash_, "kind": kind, "seq": int(seq), "stream": stream, "time": format_time(created_at)}
    )
    return hmac.new(key, statement.encode(), hashlib.sha256).hexdigest()


def signature_valid(key: bytes, checkpoint: StoredCheckpoint) -> bool:
    """Whether a stored checkpoint's signature is the one ``key`` makes (compared in constant time)."""
    expected = checkpoint_signature(
        key,
        stream=checkpoint.stream,
        seq=checkpoint.seq,
        hash_=checkpoint.hash,
        kind=checkpoint.kind,
        created_at=checkpoint.created_at,
    )
    return hmac.compare_digest(expected, checkpoint.signature)
