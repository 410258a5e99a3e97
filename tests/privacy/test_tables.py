"""Chunked readers and writers: every format round-trips, awkward cells survive, broken files are refused."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.privacy.conftest import read_csv, write_csv
from warden.errors import UnsupportedFile
from warden.privacy.tables import (
    ABSENT,
    TEXT_COLUMN,
    Chunk,
    CsvReader,
    Format,
    detect_format,
    open_reader,
    open_writer,
)


def read_all(path: Path, fmt: Format, chunk_rows: int = 2) -> tuple[list[str], dict[str, list[Any]], list[Chunk]]:
    """Every chunk of a file, and its columns joined."""
    reader = open_reader(path, fmt, chunk_rows)
    chunks = list(reader.chunks())
    joined: dict[str, list[Any]] = {name: [] for name in reader.columns}
    for chunk in chunks:
        for name in reader.columns:
            joined[name].extend(chunk.columns.get(name, [ABSENT] * chunk.rows))
    return reader.columns, joined, chunks


def copy(source: Path, target: Path, fmt: Format, chunk_rows: int = 2) -> None:
    """Read ``source`` chunk by chunk and write every chunk unchanged to ``target``."""
    writer = open_writer(target, fmt)
    try:
        for chunk in open_reader(source, fmt, chunk_rows).chunks():
            writer.write(chunk)
    finally:
        writer.close()


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("a.csv", Format.CSV),
        ("A.CSV", Format.CSV),
        ("a.parquet", Format.PARQUET),
        ("a.pq", Format.PARQUET),
        ("a.jsonl", Format.JSONL),
        ("a.ndjson", Format.JSONL),
        ("a.txt", Format.TEXT),
        ("a.log", Format.TEXT),
        ("a.md", Format.TEXT),
        ("a.text", Format.TEXT),
        ("archive.2021.csv", Format.CSV),
    ],
)
def test_the_suffix_names_the_format(name: str, fmt: Format) -> None:
    assert detect_format(Path(name)) is fmt


@pytest.mark.parametrize("name", ["a.xlsx", "a.json", "a", "a.csv.gz", "a.tsv"])
def test_when_the_suffix_is_unknown_then_unsupported_file_lists_the_known_ones(name: str) -> None:
    with pytest.raises(UnsupportedFile, match="unknown file type") as caught:
        detect_format(Path(name))
    assert caught.value.code == "unsupported_file"
    assert ".csv" in str(caught.value)


# --- CSV ----------------------------------------------------------------------------------------------------------

AWKWARD = [
    ["Smith, Ann", 'she said "hi"', "line one\nline two", "Zoë 😀"],
    ["", "  padded  ", "a\r\nb", "x"],
    ["only", None, None, None],
    ["'quote'", ",", '"', "tab\there"],
]


def test_csv_cells_with_quotes_commas_newlines_and_empty_cells_are_read_as_written(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "in.csv", ["name", "said", "notes", "other"], AWKWARD)

    columns, joined, chunks = read_all(path, Format.CSV)

    assert columns == ["name", "said", "notes", "other"]
    assert [c.rows for c in chunks] == [2, 2]
    assert joined["name"] == ["Smith, Ann", None, "only", "'quote'"]
    assert joined["said"] == ['she said "hi"', "  padded  ", None, ","]
    assert joined["notes"] == ["line one\nline two", "a\r\nb", None, '"']
    assert all(t == pa.string() for c in chunks for t in c.arrow_types.values())


def test_csv_round_trips_through_the_writer(tmp_path: Path) -> None:
    source = write_csv(tmp_path / "in.csv", ["name", "said", "notes", "other"], AWKWARD)

    copy(source, tmp_path / "out.csv", Format.CSV)

    header, rows = read_csv(tmp_path / "out.csv")
    assert header == ["name", "said", "notes", "other"]
    assert rows == [["" if v is None else v for v in row] for row in AWKWARD]


def test_csv_values_with_line_breaks_survive_block_boundaries(tmp_path: Path) -> None:
    rows = [[str(n), f"first line {n}\nsecond, line {n}"] for n in range(3000)]
    path = write_csv(tmp_path / "in.csv", ["id", "note"], rows)
    reader = CsvReader(path, chunk_rows=500, block_bytes=4096)

    got = [v for chunk in reader.chunks() for v in chunk.columns["note"]]

    assert got == [r[1] for r in rows]
    assert reader.position == path.stat().st_size


def test_csv_with_a_header_only_has_columns_and_no_rows(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_text("a,b\n", encoding="utf-8")

    columns, joined, chunks = read_all(path, Format.CSV)

    assert columns == ["a", "b"]
    assert chunks == []
    assert joined == {"a": [], "b": []}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "not a readable CSV file"),
        (b"a,b\n1,2\n3,4,5\n", "not a readable CSV file"),
        (b"a,a\n1,2\n", "names a column twice"),
        (b"a,b\n\xff\xfe,1\n", "not a readable CSV file"),
        (b'a,b\n"unclosed,1\n', "not a readable CSV file"),
    ],
)
def test_when_a_csv_file_is_broken_then_unsupported_file(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "broken.csv"
    path.write_bytes(content)

    with pytest.raises(UnsupportedFile, match=message) as caught:
        read_all(path, Format.CSV)
    assert caught.value.code == "unsupported_file"
    assert "broken.csv" in str(caught.value)


@pytest.mark.parametrize(
    "content",
    [b"name,phone\nAnn Lee\n", b"name,phone\nA,1\nBob Smith,555-0100,bob@example.com\n"],
)
def test_a_broken_csv_row_is_never_quoted_in_the_error(tmp_path: Path, content: bytes) -> None:
    # pyarrow quotes the offending row; that is personal data and must not reach a message or a log.
    path = tmp_path / "broken.csv"
    path.write_bytes(content)

    with pytest.raises(UnsupportedFile) as caught:
        read_all(path, Format.CSV)
    for secret in ("Ann Lee", "Bob Smith", "555-0100", "bob@example.com"):
        assert secret not in str(caught.value)


@pytest.mark.parametrize("escape", ["\\ud800", "\\udfff"])
def test_a_json_lines_record_with_a_lone_surrogate_is_refused_naming_its_line(tmp_path: Path, escape: str) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text('{"a": "fine \\ud83d\\ude00"}\n{"a": "' + escape + 'ann@example.com"}\n', encoding="utf-8")

    with pytest.raises(UnsupportedFile, match="line 2 holds an unpaired surrogate"):
        read_all(path, Format.JSONL)


# --- Parquet ------------------------------------------------------------------------------------------------------

TYPED = pa.table(
    {
        "id": pa.array([1, 2, None, 4], pa.int64()),
        "score": pa.array([1.5, None, -0.25, 1e300], pa.float64()),
        "born": pa.array([date(1984, 3, 1), date(2001, 12, 31), None, date(1, 1, 1)], pa.date32()),
        "seen": pa.array(
            [datetime(2021, 1, 2, 3, 4, 5, 6, tzinfo=UTC), None, datetime(1999, 12, 31, tzinfo=UTC), None],
            pa.timestamp("us", tz="UTC"),
        ),
        "local": pa.array([datetime(2021, 1, 2, 3, 4), None, None, None], pa.timestamp("ms")),
        "name": pa.array(["Ann", None, "Zoë", ""], pa.string()),
        "flag": pa.array([True, False, None, True], pa.bool_()),
        "nothing": pa.array([None, None, None, None], pa.null()),
    }
)


def test_parquet_columns_keep_their_types_and_values_through_reader_and_writer(tmp_path: Path) -> None:
    source = tmp_path / "in.parquet"
    pq.write_table(TYPED, source, row_group_size=3)

    columns, joined, chunks = read_all(source, Format.PARQUET, chunk_rows=2)
    copy(source, tmp_path / "out.parquet", Format.PARQUET)

    assert columns == TYPED.column_names
    assert sum(c.rows for c in chunks) == 4
    assert all(c.rows <= 2 for c in chunks)
    assert chunks[0].arrow_types["born"] == pa.date32()
    assert joined["born"][0] == date(1984, 3, 1)
    assert joined["seen"][0] == datetime(2021, 1, 2, 3, 4, 5, 6, tzinfo=UTC)
    written = pq.read_table(tmp_path / "out.parquet")
    assert written.schema.equals(TYPED.schema)
    assert written.to_pylist() == TYPED.to_pylist()


def test_an_empty_parquet_file_has_its_columns_and_types_and_no_rows(tmp_path: Path) -> None:
    source = tmp_path / "empty.parquet"
    pq.write_table(TYPED.slice(0, 0), source)
    reader = open_reader(source, Format.PARQUET)

    assert list(reader.chunks()) == []
    assert reader.columns == TYPED.column_names
    assert reader.arrow_types["seen"] == pa.timestamp("us", tz="UTC")


def test_parquet_nested_columns_read_as_python_lists_and_dicts(tmp_path: Path) -> None:
    source = tmp_path / "nested.parquet"
    pq.write_table(pa.table({"tags": [["a", "b"], []], "where": [{"x": 1}, None]}), source)

    _, joined, _ = read_all(source, Format.PARQUET)

    assert joined == {"tags": [["a", "b"], []], "where": [{"x": 1}, None]}


def corrupt_middle(path: Path) -> None:
    data = bytearray(path.read_bytes())
    for i in range(100, len(data) - 2000, 7):
        data[i] = 0
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "spoil",
    [
        pytest.param(lambda p: p.write_bytes(b"not parquet at all"), id="not-parquet"),
        pytest.param(lambda p: p.write_bytes(p.read_bytes()[:-20]), id="truncated-footer"),
        pytest.param(lambda p: p.write_bytes(b""), id="empty"),
        pytest.param(corrupt_middle, id="corrupt-pages"),
    ],
)
def test_when_a_parquet_file_is_broken_then_unsupported_file(tmp_path: Path, spoil: Any) -> None:
    path = tmp_path / "broken.parquet"
    pq.write_table(
        pa.table({"a": list(range(20_000)), "s": [f"value {n}" for n in range(20_000)]}), path, row_group_size=5000
    )
    spoil(path)

    with pytest.raises(UnsupportedFile, match=r"broken\.parquet: not a readable Parquet file"):
        read_all(path, Format.PARQUET, chunk_rows=1000)


def test_when_parquet_timestamps_need_nanoseconds_then_unsupported_file_names_the_column(tmp_path: Path) -> None:
    path = tmp_path / "ns.parquet"
    pq.write_table(pa.table({"t": pa.array([1_000_000_001], pa.timestamp("ns"))}), path)

    with pytest.raises(UnsupportedFile, match="column 't'"):
        read_all(path, Format.PARQUET)


# --- JSON Lines ---------------------------------------------------------------------------------------------------

RECORDS: list[dict[str, Any]] = [
    {"id": 1, "name": "Ann", "tags": ["a", "b"]},
    {"id": 2, "where": {"city": "Zürich", "geo": [47.3, 8.5]}},
    {"name": "東京 😀", "id": 3, "empty": None, "deep": {"a": {"b": [1, {"c": True}]}}},
    {"id": 4.5, "name": "", "big": 12345678901234567890},
]


def test_jsonl_keys_are_columns_in_first_seen_order_and_missing_ones_are_absent(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in RECORDS), encoding="utf-8")

    columns, joined, _ = read_all(path, Format.JSONL)

    assert columns == ["id", "name", "tags", "where", "empty", "deep", "big"]
    assert joined["id"] == [1, 2, 3, 4.5]
    assert joined["name"] == ["Ann", ABSENT, "東京 😀", ""]
    assert joined["empty"] == [ABSENT, ABSENT, None, ABSENT]
    assert joined["where"][1] == {"city": "Zürich", "geo": [47.3, 8.5]}
    assert joined["big"][3] == 12345678901234567890


def test_jsonl_round_trips_values_types_and_missing_keys(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(r) + "\r\n" for r in RECORDS), encoding="utf-8")

    copy(source, tmp_path / "out.jsonl", Format.JSONL)

    lines = (tmp_path / "out.jsonl").read_text(encoding="utf-8").split("\n")
    assert lines[-1] == ""
    assert [json.loads(line) for line in lines[:-1]] == RECORDS
    assert "東京" in lines[2]  # written as UTF-8, not escaped


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"a": 1}\n{"a": \n', "line 2 is not JSON"),
        (b'{"a": 1}\n[1, 2]\n', "line 2 is not a JSON object"),
        (b'{"a": 1}\n"text"\n', "line 2 is not a JSON object"),
        (b'{"a": 1}\n\n{"a": 2}\n', "line 2 is empty"),
        (b'{"a": "\xff"}\n', "not UTF-8"),
    ],
)
def test_when_a_jsonl_line_is_broken_then_unsupported_file_names_the_line(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "broken.jsonl"
    path.write_bytes(content)

    with pytest.raises(UnsupportedFile, match=message):
        read_all(path, Format.JSONL)


# --- plain text ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [
        "first\nsecond\r\nthird",
        "one\r\n\r\ntwo\n\nthree\n",
        "no newline at all",
        "\n\n",
        "",
        "trailing spaces   \r\n\ttabbed\n",
        "old mac\rline endings\r",
        "ünïcödé 😀\nšecond\r\n",
    ],
)
def test_text_round_trips_byte_for_byte_whatever_the_line_endings(tmp_path: Path, content: str) -> None:
    source = tmp_path / "in.txt"
    source.write_bytes(content.encode())

    copy(source, tmp_path / "out.txt", Format.TEXT)

    assert (tmp_path / "out.txt").read_bytes() == content.encode()


def test_text_lines_are_one_column_without_their_endings(tmp_path: Path) -> None:
    path = tmp_path / "in.txt"
    path.write_bytes(b"first\nsecond\r\nthird")

    columns, joined, chunks = read_all(path, Format.TEXT)

    assert columns == [TEXT_COLUMN]
    assert joined[TEXT_COLUMN] == ["first", "second", "third"]
    assert [e for c in chunks for e in c.line_endings] == ["\n", "\r\n", ""]


def test_text_that_is_not_utf8_is_unsupported(tmp_path: Path) -> None:
    path = tmp_path / "latin1.txt"
    path.write_bytes("café\n".encode("latin-1"))

    with pytest.raises(UnsupportedFile, match="not UTF-8"):
        read_all(path, Format.TEXT)


@pytest.mark.parametrize("fmt", [Format.CSV, Format.JSONL, Format.TEXT])
def test_position_counts_up_to_the_file_size(tmp_path: Path, fmt: Format) -> None:
    path = tmp_path / "in.file"
    lines = [json.dumps({"n": n, "v": "x" * n}) for n in range(50)]
    path.write_text("n\n" + "\n".join(str(n) for n in range(50)) + "\n" if fmt is Format.CSV else "\n".join(lines))
    reader = open_reader(path, fmt, chunk_rows=7)

    seen = [reader.position for _ in reader.chunks()]

    assert seen == sorted(seen)
    assert reader.position == path.stat().st_size
