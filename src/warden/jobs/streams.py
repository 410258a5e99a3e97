"""A job's stdout and stderr on their way out: a size budget for what is kept, and text safe for a terminal.

:class:`LogBudget` counts both streams of one job together as the sandbox copies them to the sinks: the first
``limit`` bytes pass, the rest is dropped, and the sandbox stops the job once the budget is spent (the run ends
``limit_exceeded`` with ``log_bytes``). The stored logs keep the raw bytes the job wrote, up to the budget: they
are the record of the run and are hashed as written.

:class:`TerminalEscaper` is for the copy echoed to the operator's terminal: a job that prints ``ESC ]`` or
``ESC [`` sequences could retitle the window, rewrite earlier lines, hide text or (on some terminals) have
answers typed back into the operator's shell. Every C0 and C1 control character except newline and tab, DEL,
and the Unicode bidirectional overrides are shown as visible escapes (``\\x1b``, ``\\r``, ``\\u202e``), and bytes
that are not UTF-8 as ``\\xNN``.
"""

from __future__ import annotations

import codecs
import threading
from typing import Final

__all__ = ["LogBudget", "TerminalEscaper", "escape_controls"]

_KEPT: Final = frozenset("\n\t")
_BIDI: Final = frozenset(chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F, 0x061C))
_NAMED: Final = {"\r": "\\r", "\b": "\\b", "\f": "\\f", "\v": "\\v", "\0": "\\0"}


def _visible(character: str) -> str:
    code = ord(character)
    if character in _NAMED:
        return _NAMED[character]
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def _unsafe(character: str) -> bool:
    code = ord(character)
    return (code < 0x20 and character not in _KEPT) or 0x7F <= code <= 0x9F or character in _BIDI


def escape_controls(text: str) -> str:
    """``text`` with every control character but newline and tab, and every bidi override, written visibly."""
    if not any(_unsafe(character) for character in text):
        return text
    return "".join(_visible(character) if _unsafe(character) else character for character in text)


class TerminalEscaper:
    """Turns a stream of raw bytes into terminal-safe text, chunk by chunk (a character may span two chunks)."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="backslashreplace")

    def feed(self, chunk: bytes) -> str:
        """The safe text for ``chunk``; an incomplete UTF-8 sequence at its end waits for the next chunk."""
        return escape_controls(self._decoder.decode(chunk))

    def flush(self) -> str:
        """What is left at the end of the stream (an incomplete UTF-8 sequence, escaped)."""
        return escape_controls(self._decoder.decode(b"", final=True))


class LogBudget:
    """At most ``limit`` bytes of a job's stdout and stderr together (None: no limit); safe across threads."""

    def __init__(self, limit: int | None) -> None:
        if limit is not None and limit <= 0:
            raise ValueError("the log limit must be positive")
        self.limit = limit
        self.kept = 0
        self.exceeded = False
        self._lock = threading.Lock()

    def take(self, chunk: bytes) -> bytes:
        """The part of ``chunk`` that fits; once a chunk does not fit, ``exceeded`` is set and nothing more passes."""
        with self._lock:
            if self.limit is None:
                self.kept += len(chunk)
                return chunk
            room = self.limit - self.kept
            if len(chunk) > room:
                self.exceeded = True
            kept = chunk[: max(room, 0)]
            self.kept += len(kept)
            return kept
