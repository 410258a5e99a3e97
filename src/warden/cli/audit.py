"""``warden audit …``: verify the audit trail, query it, export it for a SIEM, ship it continuously, and prune it.

``verify`` prints its report (``--json``: one line) and, when a stream does not verify,
ends with the error line ``warden: error: storage_corrupt: …`` and exit status 1. A stream
that verifies is ``sealed`` when a clean shutdown's signed checkpoint states its last record,
else ``unsealed`` (its writer is still running, or stopped without a clean shutdown: records
after its last signed checkpoint could have been removed undetected); unsealed streams get
the warning line ``warden: warning: audit_unsealed: …`` and exit status 0, or with
``--require-sealed`` the error line ``warden: error: audit_unsealed: …`` and exit status 1.
A stream whose writer was restarted after a crash records an ``audit.resumed`` record (what
the restarted writer found: the last seq, the last seq a signature vouched for); each is
listed, sealed since or not, with the warning line ``warden: warning: audit_resumed: …``
and exit status 0, or with ``--require-no-crash`` the error line ``warden: error:
audit_resumed: …`` and exit status 1. The two flags are separate: ``--require-sealed`` says
every writer has stopped cleanly now, ``--require-no-crash`` that none ever stopped
otherwise (for the window since the last prune); a full check passes both.
``ship`` delivers the trail to a syslog receiver (RFC 5424 over TCP or TLS) or a file and
resumes where it stopped (see :mod:`warden.audit.ship` for the delivery guarantee); it
follows new records until SIGTERM or SIGINT, or with ``--once`` ships what is there and
exits. A delivery that keeps failing under ``--once`` ends with ``delivery_failed``
(exit 1); while following, the shipper waits and retries instead, with a warning line.
Times are ISO 8601 (``2026-11-22``, ``2026-11-22T10:00:00+01:00``; no offset means UTC)
or a duration back from now (``90s``, ``15m``, ``12h``, ``30d``, ``2w``).
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Annotated, Final

import typer
from rich.table import Table

from warden.audit import AuditEntry, AuditFilter, ExportFormat, VerifyReport
from warden.audit.resume import Resumption
from warden.audit.ship import DEFAULT_NAME, Shipper, ShipReport, Target, open_sink
from warden.audit.ship import check_format as check_ship_format
from warden.audit.ship import check_name as check_shipper_name
from warden.cli.common import ABORTED, AsJson, confirm, console, emit_json, fail, opened, parse_moment
from warden.errors import AuditResumed, AuditUnsealed, DeliveryFailed, InvalidArgument, StorageCorrupt

audit_app = typer.Typer(help="Verify, query, export, ship and prune the audit trail.", no_args_is_help=True)

_ONCE_ATTEMPTS: Final = 3

Since = Annotated[
    str | None, typer.Option("--since", help="Only events at or after this time (ISO 8601, or a duration ago: 30d).")
]
Until = Annotated[str | None, typer.Option("--until", help="Only events before this time (ISO 8601 or duration ago).")]
TenantOption = Annotated[str | None, typer.Option("--tenant", help="Only this tenant's events.")]


def parse_instant(option: str, text: str, now: datetime | None = None) -> datetime:
    """An aware instant from ISO 8601 (no offset: UTC) or a duration back from ``now`` (``30d``)."""
    return parse_moment(option, text, ahead=False, now=now)


def _instant(option: str, text: str) -> datetime:
    try:
        return parse_instant(option, text)
    except InvalidArgument as exc:
        fail(exc.code, exc.message)


def _filter(
    *,
    tenant: str | None = None,
    since: str | None = None,
    until: str | None = None,
    request_id: str | None = None,
    kind: str | None = None,
) -> AuditFilter:
    try:
        return AuditFilter(
            tenant=tenant,
            since=None if since is None else parse_instant("--since", since),
            until=None if until is None else parse_instant("--until", until),
            request_id=request_id,
            kind=kind,
        )
    except InvalidArgument as exc:
        fail(exc.code, exc.message)


RequireSealed = Annotated[
    bool,
    typer.Option(
        "--require-sealed",
        help="Exit 1 (audit_unsealed) when a stream is unsealed too: for a check after every replica has stopped.",
    ),
]

RequireNoCrash = Annotated[
    bool,
    typer.Option(
        "--require-no-crash",
        help="Exit 1 (audit_resumed) when a stream records a restart after a crash, even one sealed since: "
        "records between the crash's last signed checkpoint and the restart could have been removed. "
        "Separate from --require-sealed; a full check passes both.",
    ),
]


@audit_app.command("verify")
def verify(
    ctx: typer.Context,
    require_sealed: RequireSealed = False,
    require_no_crash: RequireNoCrash = False,
    as_json: AsJson = False,
) -> None:
    """Walk every stream's hash chain and signed checkpoints; report the first problem of each (exit 1).

    Each stream is broken (a problem: exit 1), sealed (intact up to a clean shutdown's signed
    checkpoint) or unsealed (intact, but with no clean close at its end: its replica is still
    running, or crashed, and records after its last signed checkpoint could have been removed
    undetected): a warning, exit 0, or exit 1 with --require-sealed. Every restart after a
    crash (an audit.resumed record) is listed too, sealed since or not: a warning, exit 0, or
    exit 1 with --require-no-crash. --json adds per stream status, sealed, signed_through and
    resumed_after_crash, and sealed and resumed_after_crash for the whole trail.
    """
    with opened(ctx) as services:
        report = services.audit.verify()
    if as_json:
        emit_json(report.to_dict())
    else:
        _print_report(report)
    if not report.ok:
        broken = sum(1 for stream in report.streams if not stream.ok)
        fail(StorageCorrupt.code, f"the audit trail does not verify: {broken} of {len(report.streams)} streams")
    unsealed = report.unsealed
    if unsealed:
        names = ", ".join(stream.stream for stream in unsealed)
        message = (
            f"{len(unsealed)} of {len(report.streams)} streams end unsealed ({names}): a replica still running, "
            "or one stopped without a clean shutdown; records after a stream's last signed checkpoint could have "
            "been removed undetected"
        )
        if require_sealed:
            fail(AuditUnsealed.code, message)
        typer.echo(f"warden: warning: {AuditUnsealed.code}: {message}", err=True)
    resumed = report.resumed
    if resumed:
        count = sum(len(stream.resumed) for stream in resumed)
        names = ", ".join(stream.stream for stream in resumed)
        message = (
            f"{len(resumed)} of {len(report.streams)} streams record {count} restarts after a writer that did not "
            f"close ({names}): records after each crash's last signed checkpoint were never signed, and a deletion "
            "before the restart cannot be excluded"
        )
        if require_no_crash:
            fail(AuditResumed.code, message)
        typer.echo(f"warden: warning: {AuditResumed.code}: {message}", err=True)


def _print_report(report: VerifyReport) -> None:
    out = console()
    if not report.streams:
        out.print("No audit records.", markup=False)
    for stream in report.streams:
        span = "" if stream.first_seq is None else f" (seq {stream.first_seq}-{stream.last_seq})"
        head = f"stream {stream.stream}: {stream.records} records{span}, {stream.checkpoints} checkpoints"
        if stream.problem is None and stream.sealed:
            out.print(f"{head}: intact, sealed by a clean close", markup=False)
        elif stream.problem is None:
            tail = f"records after seq {stream.signed_through}" if stream.signed_through else "every record"
            out.print(
                f"{head}: intact, UNSEALED: no clean close at its end; {tail} rest on the chain alone", markup=False
            )
        else:
            problem = stream.problem
            out.print(f"{head}: FIRST PROBLEM at seq {problem.seq}: {problem.kind}: {problem.message}", markup=False)
        for resumption in stream.resumed:
            out.print(f"  {_resumption_line(resumption)}", markup=False)


def _resumption_line(resumption: Resumption) -> str:
    after = resumption.signed_through
    line = f"resumed after a crash at seq {resumption.seq}: the previous writer did not close"
    line += f" (last seq found {resumption.found_last_seq}, signed through {after}); UNVOUCHED: "
    gap = resumption.unvouched
    if gap is not None:
        line += f"records {gap[0]}-{gap[1]} were never signed, "
    return line + f"and a deletion of records after seq {after} before the restart cannot be excluded"


@audit_app.command("query")
def query(
    ctx: typer.Context,
    tenant: TenantOption = None,
    since: Since = None,
    until: Until = None,
    request_id: Annotated[str | None, typer.Option("--request-id", help="Only this request's events.")] = None,
    kind: Annotated[
        str | None, typer.Option("--kind", metavar="request|admin", help="Only events of this kind.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10_000, help="At most this many events.")] = 100,
    as_json: AsJson = False,
) -> None:
    """List audit events by time, oldest first, filtered by tenant, time, request id or kind."""
    where = _filter(tenant=tenant, since=since, until=until, request_id=request_id, kind=kind)
    with opened(ctx) as services:
        entries = services.audit.query(where, limit=limit).entries
    if as_json:
        emit_json([entry.to_dict() for entry in entries])
        return
    _print_entries(entries)


def _print_entries(entries: Iterable[AuditEntry]) -> None:
    table = Table(title="audit events", title_justify="left")
    for column in ("time", "stream:seq", "kind", "tenant", "key", "what", "outcome"):
        table.add_column(column)
    for entry in entries:
        event = entry.event
        what = event.action or event.route or "-"
        if event.model is not None:
            what += f" {event.model}" + ("" if event.model_version is None else f" v{event.model_version}")
        if event.target is not None:
            what += f" {event.target}"
        outcome = "-" if event.status is None else str(event.status)
        if event.error_code is not None:
            outcome += f" {event.error_code}"
        table.add_row(
            event.time.isoformat(sep=" ", timespec="milliseconds"),
            f"{entry.stream}:{entry.seq}",
            event.kind.value,
            event.tenant or "-",
            event.key_id or "-",
            what,
            outcome,
        )
    console().print(table)


@audit_app.command("export")
def export(
    ctx: typer.Context,
    format_: Annotated[str, typer.Option("--format", metavar="jsonl|syslog|cef", help="Output format.")],
    since: Since = None,
    until: Until = None,
    tenant: TenantOption = None,
    out: Annotated[Path | None, typer.Option("--out", help="Write to this file (mode 0600) instead of stdout.")] = None,
) -> None:
    """Export audit events, oldest first, one line each: JSON lines, RFC 5424 syslog or ArcSight CEF."""
    if format_ not in {f.value for f in ExportFormat}:
        fail(InvalidArgument.code, f"--format: unknown format {format_!r}; use jsonl, syslog or cef")
    where = _filter(tenant=tenant, since=since, until=until)
    with opened(ctx) as services:
        lines = services.audit.export(format_, where)
        if out is None:
            for line in lines:
                typer.echo(line)
            return
        count = _write_private(out, lines)
    console().print(f"Exported {count} events to {out}.", markup=False)


def _write_private(path: Path, lines: Iterable[str]) -> int:
    """Write ``lines`` to a fresh file beside ``path`` (0600), then move it into place; how many lines."""
    scratch = path.with_name(f".{path.name}.partial")
    fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    count = 0
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            for line in lines:
                handle.write(line + "\n")
                count += 1
            handle.flush()
            os.fsync(handle.fileno())
        scratch.replace(path)
    finally:
        scratch.unlink(missing_ok=True)
    return count


@audit_app.command("prune")
def prune(
    ctx: typer.Context,
    older_than: Annotated[
        str, typer.Option("--older-than", help="Remove events before this time (ISO 8601, or a duration ago: 30d).")
    ],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Prune without asking for confirmation.")] = False,
    as_json: AsJson = False,
) -> None:
    """Remove old audit events; a signed checkpoint marks each cut, so the rest still verifies."""
    limit = _instant("--older-than", older_than)
    with opened(ctx) as services:
        question = f"Remove every audit event before {limit.isoformat()}? This cannot be undone."
        if not yes and not confirm(question):
            fail(ABORTED, "no audit events were removed (confirm, or pass --yes)")
        report = services.audit.prune(limit)
    if as_json:
        emit_json(report.to_dict())
        return
    out = console()
    out.print(f"Removed {report.removed} audit events before {limit.isoformat()}.", markup=False)
    for cut in report.cuts:
        out.print(f"stream {cut.stream}: {cut.removed} removed, signed cut at seq {cut.cut_seq}", markup=False)


@audit_app.command("ship")
def ship(
    ctx: typer.Context,
    to: Annotated[
        str,
        typer.Option(
            "--to",
            metavar="URL",
            help="syslog+tcp://HOST:PORT, syslog+tls://HOST:PORT (RFC 5424, octet-counted) or file:///PATH.",
        ),
    ],
    format_: Annotated[
        str | None,
        typer.Option(
            "--format", metavar="syslog|jsonl|cef", help="Line format: syslog for syslog targets; any for a file."
        ),
    ] = None,
    ca_file: Annotated[
        Path | None,
        typer.Option("--ca-file", help="CA certificates (PEM) of a syslog+tls receiver (default: the system's)."),
    ] = None,
    name: Annotated[
        str, typer.Option("--name", help="This shipper's name; its position in each stream is kept under it.")
    ] = DEFAULT_NAME,
    once: Annotated[bool, typer.Option("--once", help="Ship what is there, then exit (instead of following).")] = False,
    poll: Annotated[
        float,
        typer.Option("--poll", min=0.01, help="Seconds between looks for new records; first retry delay (max 1)."),
    ] = 1.0,
    batch: Annotated[int, typer.Option("--batch", min=1, max=10_000, help="At most this many records a batch.")] = 500,
    timeout: Annotated[
        float, typer.Option("--timeout", min=0.1, help="Seconds a receiver may take to connect, read and close.")
    ] = 30.0,
    as_json: AsJson = False,
) -> None:
    """Ship the audit trail in chain order to a syslog receiver or a file, resuming after the last delivered record."""
    try:
        target = Target.parse(to)
        chosen = check_ship_format(target, format_)
        shipper_name = check_shipper_name(name)
        sink = open_sink(target, ca_file=ca_file, timeout=timeout)
    except InvalidArgument as exc:
        fail(exc.code, exc.message)
    stop = threading.Event()
    with opened(ctx) as services, _stop_on_signals(stop):
        shipper = Shipper(
            services.db,
            sink,
            name=shipper_name,
            format_=chosen,
            batch=batch,
            attempts=_ONCE_ATTEMPTS if once else None,
            first_delay=min(poll, 1.0),
            on_retry=_quiet if once else _warn,
        )
        report = shipper.run(follow=not once, poll=poll, stop=stop)
    if as_json:
        emit_json(report.to_dict())
    else:
        _print_shipped(report)


def _quiet(_error: DeliveryFailed, _delay: float) -> None:
    """Under ``--once`` a retry says nothing: the command ends with one error line if it keeps failing."""


def _warn(error: DeliveryFailed, delay: float) -> None:
    typer.echo(f"warden: warning: {error.code}: {error.message}; retrying in {delay:.3g}s", err=True)


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGTERM and SIGINT set ``stop`` (the batch in flight is finished and committed); a second one acts as usual."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous: dict[int, Callable[[int, FrameType | None], object] | int] = {}

    def restore() -> None:
        for number, handler in previous.items():
            signal.signal(number, handler)

    def on_signal(_number: int, _frame: FrameType | None) -> None:
        stop.set()
        restore()

    for number in (signal.SIGTERM, signal.SIGINT):
        handler = signal.signal(number, on_signal)
        previous[number] = signal.SIG_DFL if handler is None else handler  # None: set outside Python
    try:
        yield
    finally:
        restore()


def _print_shipped(report: ShipReport) -> None:
    out = console()
    if report.recovered:
        out.print(f"{report.recovered} records were already in {report.target} from an interrupted run.", markup=False)
    for stream, first, last in report.pruned:
        out.print(f"stream {stream}: records {first}-{last} were pruned before they could be shipped", markup=False)
    if not report.shipped:
        out.print(f"Nothing new to ship to {report.target}.", markup=False)
    else:
        out.print(
            f"Shipped {report.shipped} audit records to {report.target} in {report.batches} batches"
            + (f" ({report.retries} retries)." if report.retries else "."),
            markup=False,
        )
    for stream, shipped in sorted(report.streams.items()):
        out.print(f"stream {stream}: seq {shipped.first_seq}-{shipped.last_seq}", markup=False)
