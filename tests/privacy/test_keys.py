"""Key files and derived keys: formats read, too-short secrets refused, purposes independent, ids public."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from warden.errors import KeyRequired
from warden.privacy.keys import MIN_SECRET_BYTES, DeidKey

SECRET = bytes(range(100, 140))  # 40 bytes, none of them text


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        pytest.param(SECRET.hex().encode() + b"\n", SECRET, id="hex-with-newline"),
        pytest.param(SECRET.hex().upper().encode(), SECRET, id="hex-upper-case"),
        pytest.param(b"  " + SECRET.hex().encode() + b"\r\n", SECRET, id="hex-with-spaces-and-crlf"),
        pytest.param(base64.b64encode(SECRET) + b"\n", SECRET, id="base64"),
        pytest.param(base64.b64encode(SECRET).rstrip(b"="), SECRET, id="base64-unpadded"),
        pytest.param(base64.urlsafe_b64encode(bytes([251] * 33)), bytes([251] * 33), id="base64-url-safe"),
        pytest.param(base64.encodebytes(bytes(range(64))), bytes(range(64)), id="base64-wrapped-like-openssl"),
        pytest.param(SECRET, SECRET, id="raw-bytes"),
        pytest.param(bytes(range(200, 232)), bytes(range(200, 232)), id="raw-32-bytes"),
    ],
)
def test_when_a_key_file_holds_hex_base64_or_raw_bytes_then_the_secret_is_read(
    tmp_path: Path, content: bytes, expected: bytes
) -> None:
    path = tmp_path / "deid.key"
    path.write_bytes(content)

    assert DeidKey.load(path).secret == expected


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"\n", id="blank-line"),
        pytest.param(bytes(range(200, 231)), id="raw-31-bytes"),
        pytest.param(SECRET[:31].hex().encode(), id="hex-of-31-bytes"),
        pytest.param(SECRET[:16].hex().encode() + b"\n", id="hex-of-16-bytes-is-32-characters"),
        pytest.param(SECRET.hex().encode()[:-1], id="odd-number-of-hex-digits"),
        pytest.param(base64.b64encode(SECRET[:24]) + b"\n", id="base64-of-24-bytes"),
        pytest.param(b"correct-horse-battery-staple", id="short-passphrase"),
        pytest.param(b"a passphrase is not a secret, however long it is!\n", id="long-passphrase"),
        pytest.param(b"my secret key is hunter2 hunter2 hunter2 hunter2", id="passphrase-of-base64-letters"),
    ],
)
def test_when_a_key_file_holds_less_than_32_bytes_of_secret_then_key_required(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "deid.key"
    path.write_bytes(content)

    with pytest.raises(KeyRequired):
        DeidKey.load(path)


def test_when_the_key_file_is_missing_then_key_required_naming_it(tmp_path: Path) -> None:
    with pytest.raises(KeyRequired, match=r"cannot read key file .*absent\.key"):
        DeidKey.load(tmp_path / "absent.key")


def test_when_the_key_file_is_large_then_it_is_refused_as_the_wrong_file(tmp_path: Path) -> None:
    path = tmp_path / "big.key"
    path.write_bytes(b"a" * 5000)

    with pytest.raises(KeyRequired, match="larger than 4096 bytes"):
        DeidKey.load(path)


@pytest.mark.parametrize("length", [0, 1, 16, MIN_SECRET_BYTES - 1])
def test_when_a_secret_is_too_short_then_key_required(length: int) -> None:
    with pytest.raises(KeyRequired, match="at least 32 bytes"):
        DeidKey(bytes(length))


def test_when_keys_are_derived_then_each_purpose_gets_its_own_and_the_same_purpose_the_same() -> None:
    key = DeidKey(SECRET)
    purposes = ["hash", "encrypt", "date_shift", "key-id"]

    derived = {p: key.derive(p) for p in purposes}

    assert len(set(derived.values())) == len(purposes)
    assert all(len(d) == 32 for d in derived.values())
    assert all(d != key.secret[:32] for d in derived.values())
    assert DeidKey(SECRET).derive("hash") == derived["hash"]
    assert len(key.derive("encrypt", 64)) == 64
    assert DeidKey(SECRET[::-1]).derive("hash") != derived["hash"]


@given(secret=st.binary(min_size=32, max_size=64))
def test_key_id_is_stable_short_hex_and_reveals_neither_the_secret_nor_a_derived_key(secret: bytes) -> None:
    key = DeidKey(secret)
    key_id = key.key_id

    assert key_id == DeidKey(secret).key_id
    assert len(key_id) == 16
    assert int(key_id, 16) >= 0
    assert key_id not in secret.hex()
    for purpose in ("hash", "encrypt", "date_shift"):
        assert key_id not in key.derive(purpose).hex()


def test_when_two_secrets_differ_then_their_key_ids_differ() -> None:
    assert DeidKey(SECRET).key_id != DeidKey(SECRET[:-1] + b"\x00").key_id


def test_the_secret_never_appears_in_repr() -> None:
    key = DeidKey(SECRET)

    assert SECRET.hex() not in repr(key)
    assert repr(SECRET) not in repr(key)


def test_generated_keys_are_32_random_bytes() -> None:
    first, second = DeidKey.generate(), DeidKey.generate()

    assert len(first.secret) == 32
    assert first.secret != second.secret


def test_when_a_key_is_saved_then_it_is_hex_readable_by_its_owner_only_and_loads_back(tmp_path: Path) -> None:
    path = tmp_path / "deid.key"
    key = DeidKey.generate()

    key.save(path)

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text(encoding="ascii") == key.secret.hex() + "\n"
    assert DeidKey.load(path) == key
    assert DeidKey.load(path).key_id == key.key_id


def test_when_the_key_file_exists_then_save_refuses_and_leaves_it_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "deid.key"
    path.write_text("precious\n", encoding="ascii")

    with pytest.raises(FileExistsError):
        DeidKey.generate().save(path)

    assert path.read_text(encoding="ascii") == "precious\n"
