"""The hash chain's definition: what exactly is hashed, and what a checkpoint signature covers."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from datetime import UTC, datetime

from warden.audit import GENESIS, AuditKeys
from warden.audit.chain import StoredCheckpoint, chain, checkpoint_signature, record_bytes, signature_valid
from warden.audit.events import canonical_json

MOMENT = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


def test_record_bytes_are_the_canonical_json_of_event_seq_and_stream() -> None:
    body = canonical_json({"kind": "admin", "target": 'ünïcode "quoted"', "time": "2026-11-22T10:00:00.000000Z"})
    expected = canonical_json({"event": json.loads(body), "seq": 7, "stream": "replica-1"})
    assert record_bytes("replica-1", 7, body) == expected.encode()


def test_each_hash_is_sha256_of_the_previous_hash_and_the_record_bytes() -> None:
    links = chain("r", ['{"a":1}', '{"a":2}'])
    assert [seq for seq, _, _ in links] == [1, 2]
    assert links[0][1] == GENESIS == "0" * 64
    assert links[0][2] == hashlib.sha256(GENESIS.encode() + record_bytes("r", 1, '{"a":1}')).hexdigest()
    assert links[1][1] == links[0][2]
    assert chain("r", ['{"a":2}'], after_seq=1, after_hash=links[0][2]) == links[1:]


def test_the_same_events_in_another_stream_or_position_hash_differently() -> None:
    assert chain("r", ['{"a":1}'])[0][2] != chain("s", ['{"a":1}'])[0][2]
    assert chain("r", ['{"a":1}'])[0][2] != chain("r", ['{"a":1}'], after_seq=1)[0][2]


def test_a_checkpoint_signature_covers_every_field_and_needs_the_key() -> None:
    keys = AuditKeys.derive(b"s" * 32)
    signature = checkpoint_signature(
        keys.checkpoint, stream="r", seq=3, hash_="ab" * 32, kind="seal", created_at=MOMENT
    )
    mark = StoredCheckpoint("r", 3, "ab" * 32, "seal", MOMENT, signature)
    assert signature_valid(keys.checkpoint, mark)
    assert not signature_valid(AuditKeys.derive(b"t" * 32).checkpoint, mark)
    for changed in (
        replace(mark, stream="q"),
        replace(mark, seq=4),
        replace(mark, hash="cd" * 32),
        replace(mark, kind="cut"),
        replace(mark, created_at=MOMENT.replace(second=1)),
    ):
        assert not signature_valid(keys.checkpoint, changed)


def test_the_derived_keys_differ_per_purpose_and_per_secret() -> None:
    keys = AuditKeys.derive(b"s" * 32)
    assert keys.checkpoint != keys.address
    assert keys.checkpoint != AuditKeys.derive(b"t" * 32).checkpoint
    assert repr(keys) == "AuditKeys()"  # key bytes never shown
