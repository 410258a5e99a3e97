"""Apply a policy to a file: stream it through the column operators into a new file and a manifest.

The output appears only when the whole run succeeded: it is written to a hidden
temporary file beside the target and renamed at the end, so a failure (a policy
error found mid-file, an unreadable value, a crash) leaves no partial output.
The manifest (``OUT.manifest.json``) records what was done without recording
any personal data: file hashes, the policy and its hash, the key's public id,
per-column counts, detector versions.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import multiprocessing
import os
import secrets
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

import pyarrow as pa

from warden import __version__
from warden.errors import InvalidArgument, InvalidPolicy
from warden.privacy.entities import Entity
from warden.privacy.kanon import KAnonymity, KReport, count_groups, plan_from_counts
from warden.privacy.keys import DeidKey
from warden.privacy.operators import ColumnStats, GeneralizeDate, InvalidValue, Keep, Operator, Rows
from warden.privacy.policy import DateShiftSpec, EncryptSpec, HashSpec, KeepSpec, Policy, TextSpec, build_operator
from warden.privacy.tables import (
    ABSENT,
    DEFAULT_CHUNK_ROWS,
    ArrowColumns,
    Chunk,
    Format,
    Reader,
    detect_format,
    open_reader,
    open_writer,
    to_batch,
)

MANIFEST_SUFFIX: Final = ".manifest.json"
_SCALARS: Final = (str, int, float, bool, date, Decimal)

TextFactory = Callable[[TextSpec, dict[Entity, Operator]], Operator]
"""Builds the ``text`` operator for a spec (it owns the NER pipeline, loaded once per run)."""


@dataclass
class ColumnResult:
    """One input column: its operator and what it did."""

    op: str
    stats: ColumnStats = field(default_factory=ColumnStats)


@dataclass
class ApplyReport:
    """What a run did: files, rows, per-column results, the policy and key used; ``manifest`` is its JSON form."""

    input: Path
    output: Path
    format: Format
    rows: int
    columns: dict[str, ColumnResult]
    policy_sha256: str
    key_id: str | None
    detectors: dict[str, str]
    input_sha256: str
    output_sha256: str
    started: datetime
    finished: datetime
    k_anonymity: KReport | None = None
    manifest_path: Path | None = None

    def manifest(self, policy: Policy) -> dict[str, Any]:
        """The manifest document: no personal data, only hashes, counts and settings."""
        return {
            "warden_deid": 1,
            "warden_version": __version__,
            "input": {"name": self.input.name, "sha256": self.input_sha256, "format": self.format.value},
            "output": {"name": self.output.name, "sha256": self.output_sha256},
            "rows": self.rows,
            "policy_sha256": self.policy_sha256,
            "policy": policy.model_dump(mode="json"),
            "key_id": self.key_id,
            "columns": {name: {"op": r.op, **r.stats.to_dict()} for name, r in self.columns.items()},
            "entities": self.entity_counts(),
            "k_anonymity": None if self.k_anonymity is None else self.k_anonymity.to_dict(),
            "detectors": self.detectors,
            "started": self.started.isoformat(),
            "finished": self.finished.isoformat(),
        }

    def entity_counts(self) -> dict[str, int]:
        """Entities found in free text, summed over columns."""
        totals: dict[str, int] = {}
        for result in self.columns.values():
            for entity, n in result.stats.entities.items():
                totals[entity] = totals.get(entity, 0) + n
        return dict(sorted(totals.items()))


Progress = Callable[[int, int], None]
"""Called with (bytes consumed, total bytes) after each chunk."""


def apply_policy(
    source: Path,
    output: Path,
    policy: Policy,
    *,
    key: DeidKey | None = None,
    text_factory: TextFactory | None = None,
    detectors: Callable[[], dict[str, str]] | None = None,
    fmt: Format | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    progress: Progress | None = None,
    overwrite: bool = False,
    workers: int = 1,
) -> ApplyReport:
    """De-identify ``source`` into ``output`` by ``policy``; write ``output``'s manifest; return the report.

    With ``workers`` above 1, chunks are de-identified in that many worker processes (started fresh, so
    ``text_factory`` must pickle) and written in their original order; at most two chunks per worker are
    in flight, so memory stays bounded. A k-anonymity policy runs in this process only.
    """
    fmt = fmt or detect_format(source)
    _check_paths(source, output, overwrite)
    if detect_format(output) is not fmt:
        raise InvalidArgument(f"the output {output.name} must have the input's format ({fmt.value})")
    if policy.needs_key() and key is None:
        where, spec = next(_keyed_specs(policy))
        build_operator(spec, None, where=where)  # raises KeyRequired, naming the column
    started = datetime.now(UTC)
    plan = _plan_k(source, fmt, policy, chunk_rows) if policy.k_anonymity else None
    run = _Run(_Blueprint(policy, key, text_factory, plan, source.name, fmt is not Format.JSONL))
    total = source.stat().st_size
    temp = output.with_name(f".{output.name}.{secrets.token_hex(4)}.partial")
    try:
        reader = open_reader(source, fmt, chunk_rows)
        writer = open_writer(temp, fmt)
        try:
            parallel = workers > 1 and plan is None
            for done in _in_workers(run, reader, workers) if parallel else _here(run, reader):
                writer.write(done)
                if progress is not None:
                    progress(reader.position, total)
            run.finish(reader.columns)
            if run.rows == 0 and reader.columns:  # no rows: still a header (CSV) or a schema (Parquet)
                empty = Chunk({c: [] for c in reader.columns}, 0, dict(reader.arrow_types))
                writer.write(run.transform(empty, reader.columns))
        finally:
            writer.close()
        report = ApplyReport(
            input=source,
            output=output,
            format=fmt,
            rows=run.rows,
            columns=run.results,
            policy_sha256=policy.sha256,
            key_id=None if key is None else key.key_id,
            detectors=detectors() if detectors is not None and run.uses_text else {},
            input_sha256=file_sha256(source),
            output_sha256=file_sha256(temp),
            started=started,
            finished=datetime.now(UTC),
            k_anonymity=None if plan is None else plan.report,
        )
        manifest = output.with_name(output.name + MANIFEST_SUFFIX)
        os.replace(temp, output)  # the output first: a manifest never describes an output that is not there
        _write_atomic(manifest, json.dumps(report.manifest(policy), indent=2, sort_keys=True) + "\n")
        report.manifest_path = manifest
        return report
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()


def _here(run: _Run, reader: Reader) -> Iterator[Chunk]:
    for chunk in reader.chunks():
        yield run.transform(chunk, reader.columns)


def _in_workers(run: _Run, reader: Reader, workers: int) -> Iterator[Chunk]:
    """Chunks de-identified by worker processes, in input order; this process checks the policy as it reads."""
    context = multiprocessing.get_context("spawn")  # no fork: the caller may run threads (a progress bar)
    with ProcessPoolExecutor(
        workers, mp_context=context, initializer=_start_worker, initargs=(run.blueprint(),)
    ) as pool:
        pending: deque[Future[tuple[Chunk, dict[str, ColumnStats]]]] = deque()
        try:
            for chunk in reader.chunks():
                run.prepare(chunk, reader.columns)
                pending.append(pool.submit(_work, chunk, list(reader.columns), run.rows))
                run.rows += chunk.rows
                while len(pending) >= 2 * workers:
                    yield run.merge(*pending.popleft().result())
            while pending:
                yield run.merge(*pending.popleft().result())
        finally:
            for future in pending:
                future.cancel()


_worker_run: _Run | None = None


def _start_worker(blueprint: _Blueprint) -> None:
    global _worker_run  # noqa: PLW0603 - one run per worker process, built once when it starts
    _worker_run = _Run(blueprint)


def _work(chunk: Chunk, columns: list[str], first_row: int) -> tuple[Chunk, dict[str, ColumnStats]]:
    """In a worker: one chunk through the run's operators, with the statistics of this chunk alone."""
    run = _worker_run
    if run is None:  # pragma: no cover - the pool's initializer always ran first
        raise RuntimeError("worker process not initialised")
    run.rows = first_row
    for result in run.results.values():
        result.stats = ColumnStats()
    done = run.transform(chunk, columns)
    if isinstance(chunk.columns, ArrowColumns) and set(done.arrow_types) == set(done.columns):
        # Send CSV and Parquet results back as Arrow: cheaper to pickle, and written as they are.
        schema = pa.schema([pa.field(name, done.arrow_types[name]) for name in done.columns])
        done = Chunk(ArrowColumns(to_batch(done, schema), chunk.columns.source), done.rows, done.arrow_types)
    return done, {name: result.stats for name, result in run.results.items()}


def _keyed_specs(policy: Policy) -> Iterator[tuple[str, HashSpec | EncryptSpec | DateShiftSpec]]:
    """Each keyed operator of the policy with its place (``columns.email``, ``columns.notes.entities.PERSON``)."""
    for name, spec in policy.columns.items():
        if isinstance(spec, HashSpec | EncryptSpec | DateShiftSpec):
            yield f"columns.{name}", spec
        if isinstance(spec, TextSpec):
            for entity, inner in spec.entities.items():
                if isinstance(inner, HashSpec | EncryptSpec):
                    yield f"columns.{name}.entities.{entity.value}", inner


def _check_paths(source: Path, output: Path, overwrite: bool) -> None:
    if not source.is_file():
        raise InvalidArgument(f"{source} is not a readable file")
    if output.exists():
        if output.resolve() == source.resolve() or output.samefile(source):
            raise InvalidArgument("the output must not be the input: de-identification never edits in place")
        if not overwrite:
            raise InvalidArgument(f"{output} exists; choose another name or pass --overwrite")
    if not output.parent.is_dir():
        raise InvalidArgument(f"the output's directory {output.parent} does not exist")


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _write_atomic(path: Path, text: str) -> None:
    temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.partial")
    try:
        temp.write_text(text, encoding="utf-8")
        os.replace(temp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()


def _plan_k(source: Path, fmt: Format, policy: Policy, chunk_rows: int) -> KAnonymity:
    spec = policy.k_anonymity
    assert spec is not None  # noqa: S101 - checked by the caller
    for name in spec.quasi_identifiers:
        if not isinstance(policy.spec_for(name), KeepSpec):
            raise InvalidPolicy(
                f"columns.{name}",
                "a quasi-identifier under k_anonymity is generalised by the k procedure itself; give it 'keep'",
            )
    reader = open_reader(source, fmt, chunk_rows)
    counts = count_groups(reader, spec.quasi_identifiers)
    policy.check_columns(reader.columns, source.name)  # a missing quasi-identifier is the policy's fault
    return plan_from_counts(counts, spec.quasi_identifiers, spec.k, spec.max_suppressed)


@dataclass(frozen=True)
class _Blueprint:
    """What a run is built from; it pickles, so worker processes build the same run."""

    policy: Policy
    key: DeidKey | None
    text_factory: TextFactory | None
    plan: KAnonymity | None
    source: str
    #: Whether the first chunk shows every column (false for JSON Lines, whose keys may first appear late).
    complete: bool


class _Run:
    """The state of one apply run: operators per column (built on first sight), results, rows done."""

    def __init__(self, blueprint: _Blueprint) -> None:
        self._blueprint = blueprint
        self._policy = blueprint.policy
        self._key = blueprint.key
        self._text_factory = blueprint.text_factory
        self._plan = blueprint.plan
        self._source = blueprint.source
        self._complete = blueprint.complete
        self._operators: dict[str, Operator | None] = {}
        self.results: dict[str, ColumnResult] = {}
        self.rows = 0
        self.uses_text = False

    def _operator(self, column: str, columns: list[str]) -> Operator | None:
        if column not in self._operators:
            if not self._operators:
                self._policy.check_columns(columns, self._source, complete=self._complete)
            elif column not in self._policy.columns and self._policy.unlisted == "error":
                self._policy.check_columns(columns, self._source, complete=False)  # a JSON Lines key seen late
            spec = self._policy.spec_for(column)
            self.uses_text = self.uses_text or isinstance(spec, TextSpec)
            op = build_operator(spec, self._key, self._text_factory, where=f"columns.{column}")
            self._operators[column] = op
            self.results[column] = ColumnResult(spec.op)
        return self._operators[column]

    def blueprint(self) -> _Blueprint:
        """What a worker process needs to build the same run (a k-anonymity plan never goes to workers)."""
        return replace(self._blueprint, plan=None)

    def prepare(self, chunk: Chunk, columns: list[str]) -> None:
        """Check the policy against a chunk's columns and build their operators, without running them."""
        for name in chunk.columns:
            self._operator(name, columns)

    def merge(self, done: Chunk, stats: dict[str, ColumnStats]) -> Chunk:
        """Add a worker's statistics for one chunk to this run's; return the chunk."""
        for name, delta in stats.items():
            total = self.results[name].stats
            total.cells += delta.cells
            total.changed += delta.changed
            total.invalid += delta.invalid
            for entity, n in delta.entities.items():
                total.entities[entity] = total.entities.get(entity, 0) + n
        return done

    def transform(self, chunk: Chunk, columns: list[str]) -> Chunk:
        """One chunk de-identified: dropped columns gone, the others through their operators."""
        rows = Rows(_present(chunk.columns), self.rows)
        arrow = chunk.columns if isinstance(chunk.columns, ArrowColumns) else None
        out: dict[str, Any] = {}
        types: dict[str, pa.DataType] = {}
        for name in list(chunk.columns):
            op = self._operator(name, columns)
            if op is None:
                continue
            result = self.results[name]
            arrow_type = chunk.arrow_types.get(name)
            if self._plan is not None and name in self._plan.columns:
                out[name] = self._plan.generalize(name, chunk.columns[name], chunk.columns, result.stats)
                types[name] = pa.string()
                continue
            if arrow is not None and isinstance(op, Keep):  # kept Arrow columns are written as they were read
                out[name] = arrow.batch.column(name)
                result.stats.cells += chunk.rows
            else:
                scalar = arrow_type is not None and not pa.types.is_nested(arrow_type)
                out[name] = self._through(op, name, chunk.columns[name], rows, result.stats, scalar=scalar)
            if arrow_type is not None:
                types[name] = arrow_type if _keeps(op, arrow_type) else pa.string()
        self.rows += chunk.rows
        return Chunk(out, chunk.rows, types, chunk.line_endings)

    def _through(
        self, op: Operator, name: str, values: list[Any], rows: Rows, stats: ColumnStats, *, scalar: bool
    ) -> list[Any]:
        if op.name == "keep" or scalar:  # an Arrow column of plain type has no absent keys and no nested values
            return op.apply(values, rows, stats)
        present = [i for i, v in enumerate(values) if v is not ABSENT]
        if len(present) == len(values):
            self._check_scalars(op, name, values, rows.first_row)
            return op.apply(values, rows, stats)
        subset = [values[i] for i in present]
        try:  # the subset's row numbers are mapped back to the file's
            self._check_scalars(op, name, subset, 0)
            done = op.apply(subset, Rows({k: [v[i] for i in present] for k, v in rows.columns.items()}, 0), stats)
        except InvalidValue as exc:
            raise InvalidValue(rows.first_row + present[exc.row], exc.detail) from None
        out = list(values)
        for index, value in zip(present, done, strict=True):
            out[index] = value
        return out

    @staticmethod
    def _check_scalars(op: Operator, name: str, values: list[Any], first_row: int) -> None:
        for index, value in enumerate(values):
            if value is not None and not isinstance(value, _SCALARS):
                raise InvalidValue(
                    first_row + index,
                    f"column {name!r} holds a {type(value).__name__} value; only keep or drop apply to it",
                )

    def finish(self, columns: list[str]) -> None:
        """Check the policy against every column the file had (JSON Lines: only known now), rows or none."""
        self._policy.check_columns(columns, self._source)
        for column in columns:
            if column not in self.results:
                self.results[column] = ColumnResult(self._policy.spec_for(column).op)


def _present(columns: Mapping[str, list[Any]]) -> Mapping[str, list[Any]]:
    """The chunk's columns with JSON Lines' absent keys read as nulls (what a date shift's subject sees)."""
    if isinstance(columns, ArrowColumns):  # CSV and Parquet have no absent keys; convert only what is used
        return columns
    return {
        name: [None if v is ABSENT else v for v in values] if ABSENT in values else values
        for name, values in columns.items()
    }


def _keeps(op: Operator, arrow: pa.DataType) -> bool:
    if op.keeps_type:
        return True
    temporal = pa.types.is_date(arrow) or pa.types.is_timestamp(arrow)
    return isinstance(op, GeneralizeDate) and temporal
