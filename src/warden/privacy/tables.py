"""Reading and writing the files de-identification works on, in chunks of bounded size.

CSV, Parquet, JSON Lines and plain text each stream as :class:`Chunk` objects of
at most ``chunk_rows`` rows (CSV also at most ``block_bytes`` of input), so a file
larger than memory goes through in bounded memory. Row order is kept; CSV cells
are read as text exactly as written (an empty cell is a null), Parquet columns
keep their Arrow types where the operator keeps the type, and JSON values keep
their JSON types.
"""

from __future__ import annotations

import io
import json
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import IO, Any, Final

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from warden.errors import DeidError, UnsupportedFile

DEFAULT_CHUNK_ROWS: Final = 16_384
DEFAULT_BLOCK_BYTES: Final = 1 << 20
TEXT_COLUMN: Final = "text"


class _Absent:
    """The type of :data:`ABSENT`: one instance, which stays the same instance when pickled to a worker and back."""

    def __reduce__(self) -> str:
        return "ABSENT"

    def __repr__(self) -> str:
        return "ABSENT"


#: Marks a JSON Lines record that lacks a key other records have; it is never written back.
ABSENT: Final = _Absent()


class Format(StrEnum):
    """A file format de-identification reads and writes."""

    CSV = "csv"
    PARQUET = "parquet"
    JSONL = "jsonl"
    TEXT = "text"


_SUFFIXES: Final = {
    ".csv": Format.CSV,
    ".parquet": Format.PARQUET,
    ".pq": Format.PARQUET,
    ".jsonl": Format.JSONL,
    ".ndjson": Format.JSONL,
    ".txt": Format.TEXT,
    ".text": Format.TEXT,
    ".log": Format.TEXT,
    ".md": Format.TEXT,
}


def detect_format(path: Path) -> Format:
    """The format a file's suffix names: .csv, .parquet/.pq, .jsonl/.ndjson, .txt/.text/.log/.md."""
    found = _SUFFIXES.get(path.suffix.lower())
    if found is None:
        known = ", ".join(sorted(_SUFFIXES))
        raise UnsupportedFile(f"{path.name}: unknown file type {path.suffix or '(none)'!r}; known: {known}")
    return found


@dataclass
class Chunk:
    """Consecutive rows as columns of Python values; ``arrow`` keeps each column's Arrow type where there is one."""

    columns: Mapping[str, list[Any]]
    rows: int
    arrow_types: dict[str, pa.DataType] = field(default_factory=dict)
    #: Plain text only: each line's ending, written back after the line.
    line_endings: list[str] = field(default_factory=list)


class Reader(ABC):
    """Streams a file as chunks; ``columns`` is known after the first chunk, ``position`` is bytes consumed."""

    def __init__(self, path: Path, chunk_rows: int) -> None:
        self.path = path
        self.chunk_rows = chunk_rows
        self.columns: list[str] = []
        #: The Arrow type of each column where the format has one (CSV: text; Parquet: its schema), once read.
        self.arrow_types: dict[str, pa.DataType] = {}

    @abstractmethod
    def chunks(self) -> Iterator[Chunk]:
        """The file's rows, chunk by chunk, in order."""

    @property
    @abstractmethod
    def position(self) -> int:
        """Bytes of the input consumed so far (for a progress bar)."""


class Writer(ABC):
    """Writes chunks in the reader's format; ``close`` finishes the file."""

    @abstractmethod
    def write(self, chunk: Chunk) -> None:
        """Append a chunk's rows."""

    @abstractmethod
    def close(self) -> None:
        """Flush and close the output."""


class _Counting(io.RawIOBase):
    """A read-only file wrapper that counts the bytes read through it."""

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._raw.read(len(buffer))
        buffer[: len(data)] = data
        self.count += len(data)
        return len(data)


#: A quoted cell may hold line breaks (notes, addresses); without this a block boundary inside one fails.
_CSV_PARSE: Final = pacsv.ParseOptions(newlines_in_values=True)
#: In a one-column file an empty line is a row whose cell is empty (a null), not a line to skip.
_CSV_PARSE_ONE_COLUMN: Final = pacsv.ParseOptions(newlines_in_values=True, ignore_empty_lines=False)


class CsvReader(Reader):
    """CSV with a header row; every cell is read as text, an empty cell as null."""

    def __init__(self, path: Path, chunk_rows: int, block_bytes: int = DEFAULT_BLOCK_BYTES) -> None:
        super().__init__(path, chunk_rows)
        self._block_bytes = block_bytes
        self._counter: _Counting | None = None

    def chunks(self) -> Iterator[Chunk]:
        """The rows in chunks of at most ``chunk_rows``."""
        names = self._header()
        self.columns = names
        self.arrow_types = dict.fromkeys(names, pa.string())
        convert = pacsv.ConvertOptions(
            column_types=dict.fromkeys(names, pa.string()), strings_can_be_null=True, null_values=[""]
        )
        with self.path.open("rb") as raw:
            self._counter = _Counting(raw)
            stream = io.BufferedReader(self._counter, buffer_size=self._block_bytes)
            try:
                reader = pacsv.open_csv(
                    stream,
                    read_options=pacsv.ReadOptions(block_size=self._block_bytes),
                    parse_options=_CSV_PARSE_ONE_COLUMN if len(names) == 1 else _CSV_PARSE,
                    convert_options=convert,
                )
                for batch in reader:
                    yield from _split(batch, self.chunk_rows, self.path)
            except pa.ArrowInvalid as exc:
                raise UnsupportedFile(f"{self.path.name}: not a readable CSV file: {_first_line(exc)}") from None

    def _header(self) -> list[str]:
        try:
            with self.path.open("rb") as raw:
                probe = pacsv.open_csv(
                    raw, read_options=pacsv.ReadOptions(block_size=self._block_bytes), parse_options=_CSV_PARSE
                )
                names = list(probe.schema.names)
        except pa.ArrowInvalid as exc:
            raise UnsupportedFile(f"{self.path.name}: not a readable CSV file: {_first_line(exc)}") from None
        if len(set(names)) != len(names):
            raise UnsupportedFile(f"{self.path.name}: the header names a column twice")
        return names

    @property
    def position(self) -> int:
        """Bytes read so far."""
        return 0 if self._counter is None else self._counter.count


class ArrowColumns(Mapping[str, list[Any]]):
    """A chunk's columns kept as an Arrow batch and turned into Python values column by column, on first use.

    A chunk sent to a worker process travels as Arrow buffers (cheap to pickle) and is converted there.
    """

    def __init__(self, batch: pa.RecordBatch, source: str) -> None:
        self.batch = batch
        self.source = source
        self._values: dict[str, list[Any]] = {}

    def __getitem__(self, name: str) -> list[Any]:
        if name not in self._values:
            try:
                self._values[name] = self.batch.column(name).to_pylist()
            except ValueError:  # nanosecond timestamps that Python's datetime cannot hold
                raise UnsupportedFile(
                    f"{self.source}: column {name!r} holds values Python cannot represent "
                    "(timestamps finer than microseconds, or out of range)"
                ) from None
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.batch.schema.names)

    def __len__(self) -> int:
        return int(self.batch.num_columns)

    def __getstate__(self) -> dict[str, Any]:
        return {"batch": self.batch, "source": self.source, "_values": {}}


def _split(batch: pa.RecordBatch, rows: int, source: Path) -> Iterator[Chunk]:
    for start in range(0, batch.num_rows, rows):
        part = batch.slice(start, rows)
        types = {f.name: f.type for f in part.schema}
        yield Chunk(columns=ArrowColumns(part, source.name), rows=part.num_rows, arrow_types=types)


#: What follows these in an Arrow error is data from the file (a row, a value): it never goes into a message.
_DATA_AFTER: Final = re.compile(r"(got \d+|error to \w+|invalid value|would lose data|value)\b.*", re.IGNORECASE)
_QUOTED: Final = re.compile(r"'[^']*'|\"[^\"]*\"")


def _first_line(exc: Exception) -> str:
    """An Arrow error's first line without the file's data (pyarrow quotes the offending row or value)."""
    line = next(iter(str(exc).splitlines()), type(exc).__name__)
    line = _DATA_AFTER.sub(lambda m: m.group(1), line)
    return _QUOTED.sub("'…'", line)


class ParquetReader(Reader):
    """Parquet, batch by batch (memory is bounded by the file's row-group size)."""

    def __init__(self, path: Path, chunk_rows: int) -> None:
        super().__init__(path, chunk_rows)
        self._done_rows = 0
        self._total_rows = 0
        self._size = 0

    def chunks(self) -> Iterator[Chunk]:
        """The rows in chunks of at most ``chunk_rows``."""
        try:
            parquet = pq.ParquetFile(self.path)
        except (pa.ArrowInvalid, OSError) as exc:
            raise UnsupportedFile(f"{self.path.name}: not a readable Parquet file: {_first_line(exc)}") from None
        with parquet:
            self.columns = list(parquet.schema_arrow.names)
            self.arrow_types = {f.name: f.type for f in parquet.schema_arrow}
            self._total_rows = parquet.metadata.num_rows
            self._size = self.path.stat().st_size
            batches = parquet.iter_batches(batch_size=self.chunk_rows)
            while True:
                try:
                    batch = next(batches, None)
                except (pa.ArrowException, OSError) as exc:  # a corrupt page or column chunk past the footer
                    raise UnsupportedFile(
                        f"{self.path.name}: not a readable Parquet file: {_first_line(exc)}"
                    ) from None
                if batch is None:
                    return
                self._done_rows += batch.num_rows
                yield from _split(batch, self.chunk_rows, self.path)

    @property
    def position(self) -> int:
        """An estimate from the rows read, in bytes of the file."""
        return 0 if not self._total_rows else self._size * self._done_rows // self._total_rows


class _LineReader(Reader):
    """Shared line-by-line reading for JSON Lines and plain text."""

    def __init__(self, path: Path, chunk_rows: int) -> None:
        super().__init__(path, chunk_rows)
        self._handle: IO[str] | None = None
        self._position = 0

    def _lines(self) -> Iterator[list[str]]:
        try:
            with self.path.open("r", encoding="utf-8", newline="") as handle:
                lines: list[str] = []
                for line in handle:
                    lines.append(line)
                    self._position += len(line.encode())
                    if len(lines) >= self.chunk_rows:
                        yield lines
                        lines = []
                if lines:
                    yield lines
        except UnicodeDecodeError as exc:
            raise UnsupportedFile(f"{self.path.name}: not UTF-8 text (byte {exc.start} of a line)") from None

    @property
    def position(self) -> int:
        """Bytes read so far."""
        return self._position


class JsonLinesReader(_LineReader):
    """JSON Lines: one object per line; top-level keys are the columns, in the order they first appear."""

    def chunks(self) -> Iterator[Chunk]:
        """The records in chunks; a key missing from a record is :data:`ABSENT` in its column."""
        row = 0
        for lines in self._lines():
            records = []
            for line in lines:
                row += 1
                if not line.strip():
                    raise UnsupportedFile(f"{self.path.name}: line {row} is empty; JSON Lines has one object per line")
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise UnsupportedFile(f"{self.path.name}: line {row} is not JSON: {exc.msg}") from None
                if not isinstance(record, dict):
                    raise UnsupportedFile(f"{self.path.name}: line {row} is not a JSON object")
                if _SURROGATE_ESCAPE.search(line) and not _encodable(record):
                    raise UnsupportedFile(
                        f"{self.path.name}: line {row} holds an unpaired surrogate escape (\\ud800-\\udfff), "
                        "which is not text"
                    )
                for key in record:
                    if key not in self.columns:
                        self.columns.append(key)
                records.append(record)
            columns = {name: [r.get(name, ABSENT) for r in records] for name in self.columns}
            yield Chunk(columns=columns, rows=len(records))


_SURROGATE_ESCAPE: Final = re.compile(r"\\u[dD][89a-fA-F]")


def _encodable(record: dict[str, Any]) -> bool:
    """Whether a decoded record is valid text throughout (a lone surrogate escape decodes, then cannot be written)."""
    try:
        json.dumps(record, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class TextReader(_LineReader):
    """Plain text, line by line, as one column named ``text``; each line's ending is kept apart and restored."""

    def chunks(self) -> Iterator[Chunk]:
        """The lines in chunks."""
        self.columns = [TEXT_COLUMN]
        for lines in self._lines():
            bodies = [line.rstrip("\r\n") for line in lines]
            endings = [line[len(body) :] for line, body in zip(lines, bodies, strict=True)]
            yield Chunk(columns={TEXT_COLUMN: bodies}, rows=len(lines), line_endings=endings)


def open_reader(path: Path, fmt: Format, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> Reader:
    """A chunked reader for ``path`` in ``fmt``."""
    match fmt:
        case Format.CSV:
            return CsvReader(path, chunk_rows)
        case Format.PARQUET:
            return ParquetReader(path, chunk_rows)
        case Format.JSONL:
            return JsonLinesReader(path, chunk_rows)
        case Format.TEXT:
            return TextReader(path, chunk_rows)


class _ArrowWriter(Writer):
    """CSV and Parquet output: the first chunk fixes the schema; later chunks are cast to it."""

    def __init__(self, path: Path, fmt: Format) -> None:
        self._path = path
        self._fmt = fmt
        self._schema: pa.Schema | None = None
        self._sink: pacsv.CSVWriter | pq.ParquetWriter | None = None

    def write(self, chunk: Chunk) -> None:
        """Append a chunk, converting each column to its Arrow type (text unless the chunk says otherwise)."""
        if self._schema is None:
            fields = [pa.field(n, chunk.arrow_types.get(n, pa.string())) for n in chunk.columns]
            self._schema = pa.schema(fields)
            if self._fmt is Format.CSV:
                self._sink = pacsv.CSVWriter(str(self._path), self._schema)
            else:
                self._sink = pq.ParquetWriter(str(self._path), self._schema)
        assert self._sink is not None  # noqa: S101 - set with the schema above
        self._sink.write_batch(to_batch(chunk, self._schema))

    def close(self) -> None:
        """Finish the file (an empty input still gets a header or a schema)."""
        if self._sink is None:
            self._path.write_bytes(b"")
            return
        self._sink.close()


def to_batch(chunk: Chunk, schema: pa.Schema) -> pa.RecordBatch:
    """A chunk as an Arrow batch of ``schema`` (as it is, when it already is one)."""
    if isinstance(chunk.columns, ArrowColumns) and chunk.columns.batch.schema.equals(schema):
        return chunk.columns.batch
    return pa.RecordBatch.from_arrays([_array(chunk.columns[f.name], f) for f in schema], schema=schema)


def _array(values: list[Any] | pa.Array, column: pa.Field) -> pa.Array:
    """One output column as Arrow: a text column takes other values as text (a number the text operator left)."""
    if isinstance(values, pa.Array) and values.type.equals(column.type):
        return values
    try:
        return pa.array(values, type=column.type)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        if pa.types.is_string(column.type):
            return pa.array([v if v is None or isinstance(v, str) else str(v) for v in values], type=column.type)
        raise DeidError(
            f"column {column.name!r}: a value cannot be written as {column.type} ({_first_line(exc)}); "
            "with on_invalid, choose null rather than redact for a column that keeps its type"
        ) from None


class _JsonLinesWriter(Writer):
    def __init__(self, path: Path) -> None:
        self._out = path.open("w", encoding="utf-8", newline="\n")

    def write(self, chunk: Chunk) -> None:
        names = list(chunk.columns)
        for row in range(chunk.rows):
            record = {n: v for n in names if (v := chunk.columns[n][row]) is not ABSENT}
            self._out.write(json.dumps(record, ensure_ascii=False) + "\n")

    def close(self) -> None:
        self._out.close()


class _TextWriter(Writer):
    def __init__(self, path: Path) -> None:
        self._out = path.open("w", encoding="utf-8", newline="")

    def write(self, chunk: Chunk) -> None:
        lines = chunk.columns.get(TEXT_COLUMN)
        if lines is None:
            return
        self._out.writelines(
            f"{'' if body is None else body}{end}" for body, end in zip(lines, chunk.line_endings, strict=True)
        )

    def close(self) -> None:
        self._out.close()


def open_writer(path: Path, fmt: Format) -> Writer:
    """A writer of ``fmt`` into ``path`` (created or truncated)."""
    match fmt:
        case Format.CSV | Format.PARQUET:
            return _ArrowWriter(path, fmt)
        case Format.JSONL:
            return _JsonLinesWriter(path)
        case Format.TEXT:
            return _TextWriter(path)
