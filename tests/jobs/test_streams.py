"""What the operator's terminal receives of a job's output, and the budget that bounds the kept logs."""

from __future__ import annotations

import threading
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from warden.jobs.streams import LogBudget, TerminalEscaper, escape_controls


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("plain text\n\tindented", "plain text\n\tindented"),
        ("\x1b]0;owned\x07", "\\x1b]0;owned\\x07"),  # OSC: retitle the window
        ("\x1b[2J\x1b[H", "\\x1b[2J\\x1b[H"),  # CSI: clear the screen
        ("ok\rFAKE", "ok\\rFAKE"),  # carriage return: overwrite the line
        ("a\bb\0c\x7f", "a\\bb\\0c\\x7f"),
        ("\x9b31m", "\\x9b31m"),  # C1 CSI, one character
        ("safe \u202eexe.txt", "safe \\u202eexe.txt"),  # right-to-left override
        ("café ✓", "café ✓"),
    ],
)
def test_control_sequences_are_shown_not_obeyed(raw: str, shown: str) -> None:
    assert escape_controls(raw) == shown


def test_bytes_that_are_not_utf8_are_shown_as_hex_and_a_split_character_survives_the_chunking() -> None:
    escaper = TerminalEscaper()
    text = escaper.feed(b"\xff caf\xc3") + escaper.feed(b"\xa9 \x1b[31m") + escaper.feed(b"\xe2") + escaper.flush()
    assert text == "\\xff café \\x1b[31m\\xe2"


def _is_control(character: str) -> bool:
    return unicodedata.category(character) == "Cc" and character not in "\n\t"


@given(st.lists(st.binary(max_size=64), max_size=16))
def test_echoed_text_never_holds_a_control_character_but_newline_and_tab(chunks: list[bytes]) -> None:
    escaper = TerminalEscaper()
    text = "".join(escaper.feed(chunk) for chunk in chunks) + escaper.flush()
    assert not any(_is_control(character) for character in text)


BIDI_CONTROLS = {chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F, 0x061C)}


@given(st.text())
def test_text_without_controls_is_echoed_unchanged_and_any_text_comes_out_safe(text: str) -> None:
    safe = "".join(c for c in text if not _is_control(c) and c not in BIDI_CONTROLS)
    assert escape_controls(safe) == safe
    shown = escape_controls(text)
    assert not any(_is_control(c) or c in BIDI_CONTROLS for c in shown)


@given(st.lists(st.binary(max_size=300), max_size=30), st.integers(min_value=1, max_value=2000))
def test_the_budget_passes_exactly_the_first_limit_bytes(chunks: list[bytes], limit: int) -> None:
    budget = LogBudget(limit)
    kept = b"".join(budget.take(chunk) for chunk in chunks)
    everything = b"".join(chunks)
    assert kept == everything[:limit]
    assert budget.exceeded == (len(everything) > limit)


def test_the_budget_is_shared_by_threads_without_passing_its_limit() -> None:
    budget = LogBudget(10_000)
    kept: list[int] = []
    lock = threading.Lock()

    def pump() -> None:
        for _ in range(1000):
            n = len(budget.take(b"z" * 7))
            with lock:
                kept.append(n)

    threads = [threading.Thread(target=pump) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(kept) == 10_000
    assert budget.exceeded


def test_no_budget_passes_everything() -> None:
    budget = LogBudget(None)
    assert budget.take(b"x" * 10**6) == b"x" * 10**6
    assert not budget.exceeded
