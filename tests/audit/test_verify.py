"""``verify``: intact chains pass; every single tampering is reported at its position with its kind.

The properties run on in-memory streams (the same pure walk the database verify uses);
the database tests tamper with real tables, on SQLite and on PostgreSQL, with SQL.
"""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from tests.audit import chains
from tests.audit.chains import build, check, cut
from warden.audit import CheckpointKind, ProblemKind

MODIFICATIONS = ["body", "rehash", "prev_hash", "hash", "time", "tenant"]
INSERTIONS = ["linked", "linked_bad_hash", "random", "copy"]


@st.composite
def streams(draw: st.DrawFn, minimum: int = 1) -> tuple[list, list, int]:
    """A closed stream (a seal every few records), perhaps pruned behind a cut: (records, checkpoints, cut)."""
    count = draw(st.integers(min_value=minimum, max_value=30))
    every = draw(st.integers(min_value=1, max_value=12))
    rows, marks = build(count, every)
    through = draw(st.integers(min_value=0, max_value=count - minimum))
    rows, marks = cut(rows, marks, through)
    return rows, marks, through


@given(count=st.integers(min_value=0, max_value=40), every=st.integers(min_value=1, max_value=10), close=st.booleans())
def test_an_intact_stream_verifies(count: int, every: int, close: bool) -> None:
    rows, marks = build(count, every, close=close)
    report = check(rows, marks)
    assert report.problem is None
    assert report.records == count
    assert (report.first_seq, report.last_seq) == ((1, count) if count else (None, None))


@given(stream=streams(), data=st.data())
def test_a_stream_pruned_behind_a_signed_cut_verifies(stream: tuple[list, list, int], data: st.DataObject) -> None:
    rows, marks, through = stream
    report = check(rows, marks)
    assert report.problem is None
    assert report.first_seq == through + 1


@given(stream=streams(), data=st.data())
def test_a_modified_record_is_reported_at_its_seq(stream: tuple[list, list, int], data: st.DataObject) -> None:
    rows, marks, _ = stream
    seq = data.draw(st.sampled_from([row.seq for row in rows]))
    what = data.draw(st.sampled_from(MODIFICATIONS))
    problem = check(chains.modify(rows, seq, what), marks).problem
    assert problem is not None
    assert (problem.kind, problem.seq) == (ProblemKind.MODIFIED, seq), (what, problem)


@given(stream=streams(), data=st.data())
def test_a_deleted_record_is_reported_at_its_seq(stream: tuple[list, list, int], data: st.DataObject) -> None:
    rows, marks, _ = stream
    seq = data.draw(st.sampled_from([row.seq for row in rows]))
    renumber = data.draw(st.booleans())
    problem = check(chains.delete(rows, seq, renumber=renumber), marks).problem
    assert problem is not None
    # The last record is covered by the closing checkpoint: its removal shortens the chain.
    expected = ProblemKind.TRUNCATED if seq == rows[-1].seq else ProblemKind.DELETED
    assert (problem.kind, problem.seq) == (expected, seq), (renumber, problem)


@given(stream=streams(), data=st.data())
def test_an_inserted_record_is_reported_at_its_seq(stream: tuple[list, list, int], data: st.DataObject) -> None:
    rows, marks, _ = stream
    seq = data.draw(st.sampled_from([row.seq for row in rows]))
    style = data.draw(st.sampled_from(INSERTIONS))
    copy_of = data.draw(st.sampled_from([row.seq for row in rows])) if style == "copy" else 0
    problem = check(chains.insert(rows, seq, style, copy_of), marks).problem
    assert problem is not None
    # A copy of the very record it is put before is the same record twice: the second one is the extra.
    expected = seq + 1 if style == "copy" and copy_of == seq else seq
    assert (problem.kind, problem.seq) == (ProblemKind.INSERTED, expected), (style, copy_of, problem)


@given(stream=streams(minimum=2), data=st.data())
def test_two_swapped_records_are_reported_at_the_first(stream: tuple[list, list, int], data: st.DataObject) -> None:
    rows, marks, _ = stream
    first, second = sorted(
        data.draw(st.lists(st.sampled_from([r.seq for r in rows]), min_size=2, max_size=2, unique=True))
    )
    problem = check(chains.swap(rows, first, second), marks).problem
    assert problem is not None
    assert (problem.kind, problem.seq) == (ProblemKind.REORDERED, first), problem


@given(stream=streams(), data=st.data())
def test_a_tail_rewritten_and_rehashed_is_caught_by_the_next_signed_checkpoint(
    stream: tuple[list, list, int], data: st.DataObject
) -> None:
    rows, marks, _ = stream
    seq = data.draw(st.sampled_from([row.seq for row in rows]))
    i = chains.at(rows, seq)
    forged = [*rows[:i], chains.changed_body(rows[i]), *rows[i + 1 :]]
    relinked = chains.chain(
        chains.STREAM, [row.body for row in forged[i:]], after_seq=seq - 1, after_hash=rows[i].prev_hash
    )
    forged[i:] = [replace(row, prev_hash=prev, hash=h) for row, (_, prev, h) in zip(forged[i:], relinked, strict=True)]
    problem = check(forged, marks).problem
    covering = min(mark.seq for mark in marks if mark.kind != CheckpointKind.CUT and mark.seq >= seq)
    assert problem is not None
    assert (problem.kind, problem.seq) == (ProblemKind.MODIFIED, covering)
    assert "rewritten" in problem.message


@given(stream=streams(), data=st.data())
def test_a_forged_or_altered_checkpoint_is_a_bad_checkpoint(
    stream: tuple[list, list, int], data: st.DataObject
) -> None:
    rows, marks, _ = stream
    candidates = [i for i, mark in enumerate(marks) if mark.kind != CheckpointKind.CUT]
    index = data.draw(st.sampled_from(candidates))
    field = data.draw(st.sampled_from(["signature", "hash", "seq", "kind"]))
    mark = marks[index]
    forged = {
        "signature": replace(mark, signature="0" * 64),
        "hash": replace(mark, hash="f" * 64),
        "seq": replace(mark, seq=mark.seq + 1),
        "kind": replace(mark, kind=CheckpointKind.CLOSE if mark.kind == CheckpointKind.SEAL else CheckpointKind.SEAL),
    }[field]
    problem = check(rows, [*marks[:index], forged, *marks[index + 1 :]]).problem
    assert problem is not None
    assert (problem.kind, problem.seq) == (ProblemKind.BAD_CHECKPOINT, forged.seq)


def test_a_forged_cut_leaves_the_records_before_the_chain_unaccounted_for() -> None:
    rows, marks = build(10, 4)
    kept, with_cut = cut(rows, marks, 5)
    with_cut[-1] = replace(with_cut[-1], signature="0" * 64)
    problem = check(kept, with_cut).problem
    assert problem is not None
    assert (problem.kind, problem.seq) == (ProblemKind.DELETED, 1)


def test_a_chain_cut_without_a_signed_checkpoint_is_deleted_at_its_start() -> None:
    rows, marks = build(10, 4)
    problem = check(rows[3:], marks).problem
    assert problem is not None
    assert (problem.kind, problem.seq) == (ProblemKind.DELETED, 1)


def test_removing_the_cut_checkpoint_exposes_the_removed_records() -> None:
    rows, marks = build(10, 4)
    kept, with_cut = cut(rows, marks, 5)
    assert check(kept, with_cut).problem is None
    problem = check(kept, marks).problem
    assert problem is not None
    assert (problem.kind, problem.seq) == (ProblemKind.DELETED, 1)


def test_the_tail_after_the_last_checkpoint_is_only_as_safe_as_the_chain() -> None:
    """Documented limit: without a checkpoint after them, removed last records go unnoticed."""
    rows, marks = build(10, 4, close=False)
    assert check(rows[:-1], marks).problem is None
    assert check(rows[:7], marks).problem is not None  # the seal at 8 notices
