"""Operators: what happens to one column's values (drop, keep, redact, mask, hash, encrypt, generalize, date_shift).

Each operator turns a chunk of values into a chunk of the same length; ``None``
(a null cell) stays ``None``, so missingness is kept and never invented. Keyed
operators take their key in the constructor (from :class:`~warden.privacy.keys.DeidKey`),
which keeps them deterministic for a given key, and useless without it.

The free-text operator lives in :mod:`warden.privacy.textop`; it applies these
same operators to the entities it finds inside a value.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import math
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any, ClassVar, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESSIV

from warden.errors import DeidError, InvalidArgument
from warden.privacy.dates import parse_date
from warden.privacy.keys import DeidKey

ENCRYPTED_PREFIX: Final = "enc:"
#: The calendar date at the start of an ISO 8601 text (``2021-03-04``, ``2021-03-04T05:06``), spaces around allowed.
_ISO_DATE: Final = re.compile(r"\s*(\d{4}-\d{2}-\d{2})")
REDACTED: Final = "<REDACTED>"


class OnInvalid(StrEnum):
    """What an operator does with a value it cannot read (a date that does not parse, a word in a number column)."""

    ERROR = "error"
    NULL = "null"
    REDACT = "redact"


class InvalidValue(DeidError):
    """A cell an operator cannot read, under ``on_invalid: error``; ``row`` is 0-based over the whole file."""

    code = "invalid_value"

    def __init__(self, row: int, message: str) -> None:
        super().__init__(f"row {row}: {message}")
        self.row = row
        self.detail = message


@dataclass
class ColumnStats:
    """What an operator did to a column: cells changed, cells it could not read, entities found (free text)."""

    cells: int = 0
    changed: int = 0
    invalid: int = 0
    entities: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form for the manifest."""
        return {"cells": self.cells, "changed": self.changed, "invalid": self.invalid, "entities": dict(self.entities)}


@dataclass(frozen=True)
class Rows:
    """The chunk an operator works in: the original values of every column, and the chunk's first row number."""

    columns: Mapping[str, list[Any]]
    first_row: int


class Operator(ABC):
    """Turns one column's values into their de-identified form; subclasses own one transformation each."""

    name: ClassVar[str]
    #: True when the output keeps the input's type (a date stays a date); False when it becomes text.
    keeps_type: ClassVar[bool] = False

    @abstractmethod
    def apply(self, values: list[Any], rows: Rows, stats: ColumnStats) -> list[Any]:
        """The de-identified values, same length and order; ``None`` stays ``None``."""

    def value(self, value: str) -> str:
        """The operator applied to one string found inside free text (the ``text`` operator's per-entity use)."""
        return str(self.apply([value], Rows({}, 0), ColumnStats())[0])


def count_changes(stats: ColumnStats, before: list[Any], after: list[Any]) -> None:
    """Add a chunk's cells, and those an operator changed, to ``stats``."""
    stats.cells += len(before)
    stats.changed += sum(1 for a, b in zip(before, after, strict=True) if a != b)


def as_text(value: Any) -> str:
    """A cell as text: strings as they are, bytes as UTF-8 (never their ``repr``), anything else by ``str``."""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", errors="replace")
    return str(value)


_SHA256_BLOCK: Final = 64

#: A letter or digit in any script (``str.isalnum``, found by the regex engine at C speed): what ``mask`` hides.
_ALNUM: Final = re.compile(r"[^\W_]")


@dataclass(frozen=True)
class Keep(Operator):
    """Leaves the column as it is (an explicit decision, recorded in the manifest)."""

    name: ClassVar[str] = "keep"
    keeps_type: ClassVar[bool] = True

    def apply(self, values: list[Any], rows: Rows, stats: ColumnStats) -> list[Any]:
        """The values unchanged."""
        stats.cells += len(values)
        return values


@dataclass(frozen=True)
class Redact(Operator):
    """Replaces every value by a typed placeholder such as ``<EMAIL>``."""

    placeholder: str = REDACTED
    name: ClassVar[str] = "redact"

    def apply(self, values: list[Any], rows: Rows, stats: ColumnStats) -> list[Any]:
        """The placeholder in every non-null cell."""
        out = [None if v is None else self.placeholder for v in values]
        count_changes(stats, values, out)
        return out


@dataclass(frozen=True)
class Mask(Operator):
    """Hides every letter and digit but the last ``keep_last``, keeping separators (``****-****-****-1234``).

    Never more than half of a value's letters and digits stay in the clear, so a short value (a first
    name, a four-digit code) is not left whole by a ``keep_last`` meant for long ones.
    """

    keep_last: int = 4
    char: str = "*"
    name: ClassVar[str] = "mask"

    def __post_init__(self) -> None:
        if self.keep_last < 0:
            raise InvalidArgument("mask keep_last must be 0 or more")
        if len(self.char) != 1 or self.char.isalnum():
            raise InvalidArgument("mask char must be one character that is not a letter or digit")

    def apply(self, values: list[Any], rows: Rows, stats: ColumnStats) -> list[Any]:
        """Each value with its letters and digits masked but the last ``keep_last``."""
        out = [None if v is None else self.mask(as_text(v)) for v in values]
        count_changes(stats, values, out)
        return out

    def mask(self, text: str) -> str:
        """One value masked."""
        hidden, count = _ALNUM.subn(self.char, text)  # one character for one: offsets stay the same
        clear = min(self.keep_last, count // 2)
        split, kept = len(text), 0
        while kept < clear:  # walk back over the characters left in the clear
            split -= 1
            kept += text[split].isalnum()
        return hidden[:split] + text[split:]


@dataclass(frozen=True)
class Hash(Operator):
    """A keyed pseudonym: HMAC-SHA256 of the value, as hex; the same value and key always give the same pseudonym."""

    key: bytes = field(repr=False)
    length: int = 16
    case_insensitive: bool = False
    prefix: str = ""
    _inner: hashlib._Hash = field(init=False, repr=False, compare=False)
    _outer: hashlib._Hash = field(init=False, repr=False, compare=False)
    name: ClassVar[str] = "hash"

    def __post_init__(self) -> None:
        if not 8 <= self.length <= 64:
            raise InvalidArgument("hash length must be between 8 and 64 hex digits")
        # HMAC (RFC 2104) with its two keyed SHA-256 states computed once and copied per value: the same
        # digest as hmac.digest, without re-keying for every cell (2.3 times faster on short values).
        key = hashlib.sha256(self.key).digest() if len(self.key) > _SHA256_BLOCK else self.key
        padded = key.ljust(_SHA256_BLOCK, b"\0")
        object.__setattr__(self, "_inner", hashlib.sha256(bytes(b ^ 0x36 for b in padded)))
        object.__setattr__(self, "_outer", hashlib.sha256(bytes(b ^ 0x5C for b in padded)))

    @classmethod
    def from_key(cls, key: DeidKey, **options: Any) -> Hash:
        """The hash operator keyed for pseudonyms from ``key``."""
        return cls(key=key.derive("hash"), **options)

    def apply(self, values: list[Any], rows: Rows, stats: ColumnStats) -> list[Any]:
        """The pseudonym of each non-null value."""
        out = [None if v is None else self.pseudonym(as_text(v)) for v in values]
        count_changes(stats, values, out)
        return out

    def pseudonym(self, text: str) -> str:
        """One value's pseudonym."""
        if self.case_insensitive:
            text = text.casefold()
        inner = self._inner.copy()
        inner.update(text.encode())
        outer = self._outer.copy()
        outer.update(inner.digest())
        return self.prefix + outer.hexdigest()[: self.length]


@dataclass(frozen=True)
class Encrypt(Operator):
    """Deterministic AES-SIV encryption: equal values give equal tokens (joins survive); only the key reverses it."""

    key: bytes = field(repr=False)
    context: str = ""
    name: ClassVar[str] = "encrypt"

    @classmethod
    def from_key(cls, key: DeidKey, **options: Any) -> Encrypt:
        """The encrypt operator keyed from ``key`` (AES-256-SIV, a 64-byte derived key)."""
        return cls(key=key.derive("encrypt", 64), **options)

    def apply(self, values: list[Any], rows: Rows, stats: ColumnStats) -> list[Any]:
        """The token of each non-null value: ``enc:`` and the base64url ciphertext."""
        siv = AESSIV(self.key)
        ad = [self.context.encode()] if self.context else None
        out = [None if v is None else self._token(siv, as_text(v), ad) for v in values]
        count_changes(stats, values, out)
        return out

    @staticmethod
    def _token(siv: AESSIV, text: str, ad: list[bytes] | None) -> str:
        sealed = siv.encrypt(text.encode(), ad)
        return ENCRYPTED_PREFIX + base64.urlsafe_b64encode(sealed).rstrip(b"=").decode("ascii")

    def decrypt(self, token: str) -> str:
        """The original value of a token this operator (same key and context) produced."""
        if not token.startswith(ENCRYPTED_PREFIX):
            raise InvalidArgument("not an encrypted value (it does not start with 'enc:')")
        body = token[len(ENCRYPTED_PREFIX) :]
        try:
            sealed = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            plain = AESSIV(self.key).decrypt(sealed, [self.context.encode()] if self.context else None)
        except (binascii.Error, ValueError, InvalidTag) as exc:
            raise InvalidArgument("the value does not decrypt with this key and context") from exc
        return plain.decode()


class DatePart(StrEnum):
    """How far ``generalize`` coarsens a date."""

    YEAR = "year"
    MONTH = "month"


def parse_when(value: Any) -> date | datetime | None:
    """A date or date-time from a cell: a ``date``/``datetime`` as is, ISO 8601 text, or a written date.

    Written dates are those :func:`warden.privacy.dates.parse_date` reads (``12.03.1984``, ``March 12, 1984``,
    ``12/03/1984`` day first); ``None`` when the value is none of these.
    """
    if isinstance(value, date):
        return value
    if not isinstance(value, str):
        return None
    text = value.strip()
    if len(text) >= 10 and text[4:5] == "-" and text[:4].isdigit():  # ISO 8601 first: the common, fast case
        with contextlib.suppress(ValueError):  # not ISO after all: read it as a written date below
            return date.fromisoformat(text) if len(text) == 10 else datetime.fromisoformat(text)
    return parse_date(text)


@dataclass(frozen=True)
class _Fallible(Operator):
    """An operator that may meet unreadable values; ``on_invalid`` says what happens to them."""

    on_invalid: OnInvalid = OnInvalid.ERROR

    def _each(self, values: list[Any], rows: Rows, stats: ColumnStats, one: Callable[[Any, int], Any]) -> list[Any]:
        out: list[Any] = []
        for index, v in enumerate(values):
            if v is None:
                out.append(None)
                continue
            result = one(v, index)
            if result is None:
                stats.invalid += 1
                result = self._invalid(rows.first_row + index, v)
            out.append(result)
        count_changes(stats, values, out)
        return out

    def _invalid(self, row: int, value: Any) -> Any:
        if self.on_invalid is OnInvalid.ERROR:
            raise InvalidValue(
                row, f"{self.name} cannot read the value ({type(value).__name__}, {len(as_text(value))} chars)"
            )
        return None if self.on_invalid is OnInvalid.NULL else REDACTED


@dataclass(frozen=True)
class GeneralizeDate(_Fallible):
    """Coarsens dates to their year or month: text becomes ``1984`` or ``1984-03``, a date its period's first day."""

    part: DatePart = DatePart.YEAR
    name: ClassVar[str] = "generalize"

    def apply(self, values: list[Any], rows: Rows, stats: ColumnStats) -> list[Any]:
        """Each date coarsened."""
        return self._each(values, rows, stats, lambda v, _i: self._one(v))

    def _one(self, value: Any) -> Any:
        when = parse_when(value)
        if when is None:
            return None
        month = 1 if self.part is DatePart.YEAR else when.month
        if not isinstance(value, str):  # a date or datetime keeps its type (and a datetime its time zone)
            if isinstance(when, datetime):
                return when.replace(month=month, day=1, hour=0, minute=0, second=0, microsecond=0)
            return when.replace(month=month, day=1)
        return f"{when.year:04d}" if self.part is DatePart.YEAR else f"{when.year:04d}-{when.month:02d}"


@dataclass(frozen=True)
class GeneralizeNumber(_Fallible):
    """Puts numbers into buckets of ``width`` (``30-39``); at or over ``top`` they become one open bucket (``90+``)."""

    width: float = 10
    top: float | None = None
    name: ClassVar[str] = "generalize"

    def __post_init__(self) -> None:
        if self.width <= 0:
            raise InvalidArgument("generalize bucket must be positive")

    def apply(self, values: list[Any], rows: Rows, stats: ColumnStats) -> list[Any]:
        """Each number replaced by its bucket's label."""
        return self._each(values, rows, stats, lambda v, _i: self.bucket(v))

    def bucket(self, value: Any) -> str | None:
        """The bucket label of one number, ``None`` when the value is not a number."""
        number = as_number(value)
        if number is None:
            return None
        if self.top is not None and number >= self.top:
            return f"{_fmt(self.top)}+"
        low = (number // self.width) * self.width
        if float(self.width).is_integer() and float(number).is_integer():
            return f"{_fmt(low)}-{_fmt(low + self.width - 1)}"
        return f"[{_fmt(low)}, {_fmt(low + self.width)})"


def as_number(value: Any) -> float | None:
    """A cell as a finite number (an int, a float, or numeric text), ``None`` when it is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float | Decimal):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def _fmt(number: float) -> str:
    """A bucket bound as short exact text: ``30``, ``2.5`` (``repr``'s shortest round trip, never rounded)."""
    return str(int(number)) if float(number).is_integer() else repr(float(number))


@dataclass(frozen=True)
class GeneralizePrefix(_Fallible):
    """Keeps the first ``length`` characters (postal codes to their area: ``SW1A 1AA`` → ``SW1``)."""

    length: int = 3
    name: ClassVar[str] = "generalize"

    def __post_init__(self) -> None:
        if self.length < 0:
            raise InvalidArgument("generalize prefix must be 0 or more")

    def apply(self, values: list[Any], rows: Rows, stats: ColumnStats) -> list[Any]:
        """Each value cut to its prefix."""
        return self._each(values, rows, stats, lambda v, _i: as_text(v).strip()[: self.length])


@dataclass(frozen=True)
class DateShift(_Fallible):
    """Moves every date of one subject by the same secret number of days (1 to ``max_days``, either way).

    The shift is derived from the key and the row's ``subject`` column, so intervals within a
    subject's history survive while the real dates do not.
    """

    key: bytes = field(default=b"", repr=False)
    subject: str = ""
    max_days: int = 365
    name: ClassVar[str] = "date_shift"
    keeps_type: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if not 1 <= self.max_days <= 36500:
            raise InvalidArgument("date_shift max_days must be between 1 and 36500")

    @classmethod
    def from_key(cls, key: DeidKey, **options: Any) -> DateShift:
        """The date_shift operator keyed from ``key``."""
        return cls(key=key.derive("date_shift"), **options)

    def shift(self, subject: Any) -> timedelta:
        """The shift for one subject: never zero, at most ``max_days`` either way."""
        digest = hmac.digest(self.key, as_text("" if subject is None else subject).encode(), "sha256")
        magnitude = int.from_bytes(digest[:8], "big") % self.max_days + 1
        return timedelta(days=magnitude if digest[8] & 1 else -magnitude)

    def apply(self, values: list[Any], rows: Rows, stats: ColumnStats) -> list[Any]:
        """Each date moved by its subject's shift, in the format it came in."""
        subjects = rows.columns.get(self.subject) or [None] * len(values)  # JSON Lines: a key not seen yet
        return self._each(values, rows, stats, lambda v, i: self._one(v, subjects[i]))

    def _one(self, value: Any, subject: Any) -> Any:
        when = parse_when(value)
        if when is None:
            return None
        try:
            moved = when + self.shift(subject)
        except OverflowError:  # the shift leaves years 1 to 9999: the value cannot be moved, so it is invalid
            return None
        if not isinstance(value, str):
            return moved
        # A whole-day shift leaves the time of day alone: replace only the date, keep the rest as written.
        match = _ISO_DATE.match(value)
        if match is not None:
            return value[: match.start(1)] + moved.isoformat()[:10] + value[match.end(1) :]
        return moved.isoformat()


def placeholder(entity: str | None) -> str:
    """The typed placeholder for an entity name (``<EMAIL>``), or ``<REDACTED>`` when the type is unknown."""
    return f"<{entity}>" if entity else REDACTED
