"""The JSON of an Open Inference Protocol request, bounded before pydantic builds any object from it.

A body of empty lists or one-digit numbers costs pydantic and Python 16-34 times its size, so
the JSON is first counted at C speed (strings, arrays and objects) and walked once over its
strings and brackets; each input's numeric ``data`` array is then read straight into numpy
against its ``shape``, and pydantic parses what is left with those arrays replaced by ``null``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import numpy.typing as npt

from warden.errors import InvalidArgument

if TYPE_CHECKING:
    from warden.api.oip import InferInput

MAX_JSON_STRINGS: Final = 1 << 16
"""The most strings (keys included) the JSON of one inference request may hold."""
MAX_JSON_CONTAINERS: Final = 1 << 18
"""The most arrays and objects the JSON of one inference request may hold (nested ``data`` included)."""
MAX_JSON_VALUES: Final = 1 << 16
"""The most JSON values one request may hold outside its inputs' numeric ``data`` arrays."""
_CHUNK: Final = 64 * 1024
_SKELETON: Final = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]|[^"\[\]{}]+|"')
_BLANK: Final = re.compile(rb"[\s\[\]]*")
_BRACKETS_TO_SPACES: Final = bytes.maketrans(b"[]", b"  ")
_WHITESPACE: Final = b" \t\r\n"
_NUMBER_BYTES: Final = b"0123456789+-.eE,"
_MINUS_MISUSED: Final = (b"-,", b"-.", b"-e", b"-E", b"-+", b"--")


@dataclass
class _Frame:
    """An open array or object of the JSON being scanned."""

    is_object: bool
    key: bytes = b""
    expect_key: bool = True
    index: int = 0
    seen: set[bytes] = field(default_factory=set)


@dataclass
class Skeleton:
    """Where each input's numeric ``data`` array lies in the JSON (``inputs`` index to its byte span)."""

    numbers: dict[int, tuple[int, int]]

    def without_numbers(self, header: bytes) -> bytes:
        """The JSON with each numeric ``data`` array replaced by ``null``, for pydantic to parse."""
        if not self.numbers:
            return header
        view, rest, position = memoryview(header), bytearray(), 0
        for start, end in sorted(self.numbers.values()):
            rest += view[position:start]
            rest += b"null"
            position = end
        rest += view[position:]
        return bytes(rest)


def scan(header: bytes) -> Skeleton:
    """Find the inputs' numeric ``data`` arrays and bound what is left before anything is parsed.

    Parsing JSON builds an object per value (an empty list cost 100 bytes for its 3), so the
    strings and containers are counted first (C-speed ``count``), the structure is walked one
    string or bracket at a time, numeric ``data`` arrays are cut out to be read straight into
    numpy, and at most ``MAX_JSON_VALUES`` values are left for pydantic.
    """
    strings, containers = header.count(b'"') // 2, header.count(b"[") + header.count(b"{")
    if strings > MAX_JSON_STRINGS:
        raise InvalidArgument(f"the request's JSON holds {strings} strings; the limit is {MAX_JSON_STRINGS}")
    if containers > MAX_JSON_CONTAINERS:
        raise InvalidArgument(
            f"the request's JSON holds {containers} arrays and objects; the limit is {MAX_JSON_CONTAINERS} "
            "(send large tensors flat, or in binary)"
        )
    walk = _Walk(header)
    for match in _SKELETON.finditer(header):
        walk.step(*match.span())
    if walk.stack:
        raise InvalidArgument("invalid inference request: malformed JSON: an array or object is not closed")
    if walk.values > MAX_JSON_VALUES:
        raise InvalidArgument(
            f"the request's JSON holds {walk.values} values outside numeric data arrays; the limit is {MAX_JSON_VALUES}"
        )
    return Skeleton(walk.numbers)


class _Walk:
    """The state of a walk over the JSON's strings, brackets and the runs between them."""

    def __init__(self, header: bytes) -> None:
        self.header = header
        self.stack: list[_Frame] = []
        self.numbers: dict[int, tuple[int, int]] = {}
        self.values = 0
        self.inside = 0
        self.candidate: tuple[int, int] | None = None  # (input index, start) of the data array being walked
        self.numeric = False

    def step(self, start: int, end: int) -> None:
        """Take one token: a string, a bracket or brace, or a run of anything else."""
        first = self.header[start]
        if first in b"[{":
            counted = self.open(first, start)
        elif first in b"]}":
            counted = self.close(first, end)
        elif first == ord('"'):
            counted = self.string(start, end)
        else:
            counted = self.header.count(b",", start, end)
            top = self.stack[-1] if self.stack else None
            if top is not None and counted:
                top.index += counted
                top.expect_key = top.is_object
        if self.candidate is None:
            self.values += counted
        else:
            self.inside += counted

    def open(self, first: int, start: int) -> int:
        """An array or object begins; an array at ``inputs[i].data`` may be numeric."""
        if self.candidate is None and first == ord("[") and _at_data(self.stack):
            self.candidate, self.numeric = (self.stack[1].index, start), True
        elif first == ord("{"):
            self.numeric = False
        self.stack.append(_Frame(is_object=first == ord("{")))
        return 1

    def close(self, first: int, end: int) -> int:
        """An array or object ends; a data array that held only numbers is kept aside."""
        if not self.stack or self.stack[-1].is_object != (first == ord("}")):
            raise InvalidArgument("invalid inference request: malformed JSON: its brackets do not match")
        self.stack.pop()
        if self.candidate is not None and len(self.stack) == 3:
            if self.numeric:
                self.numbers[self.candidate[0]] = (self.candidate[1], end)
                self.inside = 0
            self.values, self.inside, self.candidate = self.values + self.inside, 0, None
        return 0

    def string(self, start: int, end: int) -> int:
        """A string: a key (two of ``inputs`` or ``data`` in one object are refused) or a value."""
        if end - start == 1:
            raise InvalidArgument("invalid inference request: malformed JSON: a string is not closed")
        self.numeric = self.numeric and self.candidate is None
        top = self.stack[-1] if self.stack else None
        if top is not None and top.is_object and top.expect_key:
            top.key, top.expect_key = self.header[start:end] if end - start <= 8 else b"", False
            if top.key in (b'"inputs"', b'"data"'):
                if top.key in top.seen:
                    raise InvalidArgument(
                        f"invalid inference request: the key {top.key.decode()} is given twice in one object"
                    )
                top.seen.add(top.key)
        return 1


def _at_data(stack: list[_Frame]) -> bool:
    """Whether the next value is ``inputs[i].data`` of the request object."""
    return (
        len(stack) == 3
        and stack[0].is_object
        and stack[0].key == b'"inputs"'
        and not stack[1].is_object
        and stack[2].is_object
        and stack[2].key == b'"data"'
    )


def from_numbers(
    item: InferInput, dtype: npt.DTypeLike, count: int, header: bytes, start: int, end: int
) -> npt.NDArray[Any]:
    """A numeric ``data`` array read from its bytes into numpy a chunk at a time (no object per value)."""
    if item.datatype == "BYTES":
        raise InvalidArgument(f"input {item.name!r}: BYTES elements must be strings in JSON")
    blank = _BLANK.fullmatch(header, start, end) is not None
    given = 0 if blank else header.count(b",", start, end) + 1
    if given != count:
        raise InvalidArgument(f"input {item.name!r}: {given} values for shape {item.shape}")
    depth = _depth(header, start, end)
    if depth > max(1, len(item.shape)):
        raise InvalidArgument(f"input {item.name!r}: data nested {depth} deep for shape {item.shape}")
    array = np.empty(count, dtype=dtype)
    filled, position = 0, start
    while not blank and position < end:
        stop = min(end, position + _CHUNK)
        if stop < end:
            comma = header.find(b",", stop, end)
            stop = end if comma < 0 else comma
        piece = _read_numbers(item, dtype, header[position:stop].translate(_BRACKETS_TO_SPACES))
        array[filled : filled + len(piece)] = piece
        filled, position = filled + len(piece), stop + 1
    return array


def _depth(header: bytes, start: int, end: int) -> int:
    """How deep the arrays in ``header[start:end]`` nest, counted a chunk at a time."""
    view = np.frombuffer(header, dtype=np.uint8, count=end - start, offset=start)
    level = deepest = 0
    for offset in range(0, len(view), _CHUNK):
        part = view[offset : offset + _CHUNK]
        steps = (part == ord("[")).astype(np.int32) - (part == ord("]"))
        levels = np.cumsum(steps, dtype=np.int32) + level
        deepest, level = max(deepest, int(levels.max())), int(levels[-1])
    return deepest


def _read_numbers(item: InferInput, dtype: npt.DTypeLike, text: bytes) -> npt.NDArray[Any]:
    """The comma-separated JSON numbers (or booleans) of ``text`` as ``dtype``."""
    wrong = InvalidArgument(f"input {item.name!r}: values must be {item.datatype}")
    compact = text.translate(None, _WHITESPACE)
    if item.datatype == "BOOL":
        if compact.translate(None, b"truefals,"):
            raise wrong
        compact = compact.replace(b"true", b"1").replace(b"false", b"0")
        given = compact.count(b",") + 1
        if compact.translate(None, b"01,") or not _separated(compact) or len(compact) != 2 * given - 1:
            raise wrong
        flags: npt.NDArray[np.bool_] = np.frombuffer(compact[::2], dtype=np.uint8) == ord("1")
        return flags
    if compact.translate(None, _NUMBER_BYTES) or not _separated(compact):
        raise wrong
    if compact.count(b"+") != compact.count(b"e+") + compact.count(b"E+") or compact.endswith(b"-"):
        raise wrong
    if any(misuse in compact for misuse in _MINUS_MISUSED):
        raise wrong
    kind = np.dtype(dtype).kind
    if kind == "u" and (compact.startswith(b"-") or b",-" in compact):
        raise InvalidArgument(f"input {item.name!r}: a value does not fit the datatype {item.datatype}")
    try:
        if kind == "f" or (kind in "iu" and any(mark in compact for mark in b".eE")):
            values = np.fromstring(text, dtype=np.float64, sep=",")
        else:
            values = np.fromstring(text, dtype=np.uint64 if kind == "u" else np.int64, sep=",")
    except ValueError:
        raise wrong from None
    if len(values) != compact.count(b",") + 1:
        raise wrong
    if kind in "iu":
        limits = np.iinfo(dtype)
        exact = values.dtype.kind != "f" or bool(np.all(np.mod(values, 1) == 0))
        in_range = len(values) == 0 or (values.min() >= limits.min and values.max() <= limits.max)
        clamped = limits.bits == 64 and re.search(rb"[0-9]{19}", compact) is not None
        if not exact or not in_range or clamped:
            raise InvalidArgument(f"input {item.name!r}: a value does not fit the datatype {item.datatype}")
    return values.astype(dtype, copy=False)


def _separated(compact: bytes) -> bool:
    """No empty element: no leading, trailing or doubled comma."""
    return bool(compact) and not compact.startswith(b",") and not compact.endswith(b",") and b",," not in compact
