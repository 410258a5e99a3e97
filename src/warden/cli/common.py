"""What the administrative commands share: opening the services, output, and the one error mapping.

The administrative commands (``warden init``, ``warden tenant …``, ``warden key …``,
``warden model …``) act on the data directory through the same service objects
the server drives. They touch only the database and the blob store, so they are
safe to run while ``warden serve`` is running.

Every failure is one line on stderr, ``warden: error: <code>: <message>``, and
nothing on stdout. The exit status says what kind of failure it was:

- ``0``: done.
- ``2``: the command line is wrong: a Click usage error, or ``invalid_argument``
  (a bad tenant or model name, scope, alias, canary weight, version, setting, or
  a model PATH that cannot be read).
- ``1``: the command was understood but could not be done: every other domain
  code (``tenant_not_found``, ``key_not_found``, ``model_not_found``, ``conflict``,
  ``invalid_model``, ``unsupported_model``, ``payload_too_large``, …), a deletion
  that was not confirmed (``aborted``), and the two foreign errors translated
  here: ``io_error`` (the data directory cannot be used) and ``database_error``.
"""

from __future__ import annotations

import getpass
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Final, NoReturn

import typer
from rich.console import Console
from sqlalchemy.exc import SQLAlchemyError

from warden.audit import AuditEvent
from warden.errors import InvalidArgument, PayloadTooLarge, WardenError
from warden.services import Services, open_services
from warden.settings import load_settings

EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
ABORTED: Final = "aborted"
IO_ERROR: Final = "io_error"
DATABASE_ERROR: Final = "database_error"
_USAGE_CODES: Final = frozenset({InvalidArgument.code})

AsJson = Annotated[bool, typer.Option("--json", help="Print JSON on stdout instead of a table.")]
"""The ``--json`` flag every administrative command takes."""


def audited(services: Services, action: str, target: str, **details: str | int | float | None) -> None:
    """Record an administrative action done from the command line, and wait until the record is durable.

    The actor is the operating-system user (a command line has no API key); a store that
    cannot take the record ends the command with ``audit_unavailable`` (the change itself is done).
    """
    event = AuditEvent.admin(action, target, authenticator="cli", details={"os_user": os_user(), **details})
    services.audit.record(event).result(timeout=60)


def os_user() -> str:
    """The operating-system user running the command (the actor of CLI admin events; a command line has no key)."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name and no passwd entry (some containers)
        return f"uid:{os.getuid()}"


def exit_code(code: str) -> int:
    """The exit status for an error ``code``: 2 for a wrong command line, 1 for everything else."""
    return EXIT_USAGE if code in _USAGE_CODES else EXIT_FAILED


def fail(code: str, message: str) -> NoReturn:
    """End the command with one error line on stderr and the exit status of ``code``."""
    typer.echo(f"warden: error: {code}: {' '.join(message.split())}", err=True)
    raise typer.Exit(exit_code(code))


def describe(exc: WardenError | OSError | SQLAlchemyError) -> tuple[str, str]:
    """The ``(code, message)`` of an error: a domain error's own, or a translation of a foreign one."""
    if isinstance(exc, WardenError):
        return exc.code, exc.message
    if isinstance(exc, OSError):
        return IO_ERROR, str(exc)
    orig = getattr(exc, "orig", None)  # a DBAPIError's driver error says what went wrong, without the SQL
    cause: BaseException = orig if isinstance(orig, BaseException) else exc
    first = next((line for line in str(cause).splitlines() if line.strip()), type(cause).__name__)
    return DATABASE_ERROR, first


def data_dir(ctx: typer.Context) -> Path | None:
    """The root ``--data-dir`` (or ``WARDEN_DATA_DIR``), ``None`` when not given."""
    value = ctx.find_root().params.get("data_dir")
    return value if isinstance(value, Path) else None


@contextmanager
def opened(ctx: typer.Context) -> Iterator[Services]:
    """The services over the chosen data directory, always closed; errors inside end the command with one line."""
    try:
        services = open_services(load_settings(data_dir=data_dir(ctx)))
    except (WardenError, OSError, SQLAlchemyError) as exc:
        fail(*describe(exc))
    try:
        yield services
    except (WardenError, OSError, SQLAlchemyError) as exc:
        fail(*describe(exc))
    finally:
        services.close()


def confirm(question: str) -> bool:
    """Ask a yes/no question on stderr; no answer (end of input) is no."""
    try:
        return typer.confirm(question, default=False, err=True)
    except typer.Abort:
        typer.echo(err=True)  # end the prompt's line, so the error that follows has its own
        return False


def emit_json(value: object) -> None:
    """Print ``value`` as one line of JSON on stdout."""
    typer.echo(json.dumps(value))


def console() -> Console:
    """A console on stdout for human output (tables and sentences)."""
    return Console(highlight=False, soft_wrap=True)


_DURATION: Final = re.compile(r"(\d+)([smhdw])")
_UNITS: Final = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_moment(option: str, text: str, *, ahead: bool, now: datetime | None = None) -> datetime:
    """An aware UTC instant from ISO 8601 (no offset: UTC) or a duration (``30d``, ``12h``) from ``now``.

    The duration counts ahead of ``now`` (an expiry) or back from it (``--since``), as ``ahead`` says.
    """
    moment = now or datetime.now(UTC)
    duration = _DURATION.fullmatch(text.strip())
    if duration is not None:
        try:
            span = timedelta(**{_UNITS[duration[2]]: int(duration[1])})
            return moment + span if ahead else moment - span
        except OverflowError:
            raise InvalidArgument(f"{option}: the duration {text!r} is too long") from None
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidArgument(
            f"{option}: {text!r} is neither an ISO 8601 time (2026-11-22T10:00:00Z) nor a duration (30d, 12h)"
        ) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def iso(moment: datetime | None) -> str | None:
    """An instant in ISO 8601 (with its UTC offset), or ``None``."""
    return None if moment is None else moment.isoformat()


def short_time(moment: datetime | None) -> str:
    """An instant for a table cell, to the second; ``-`` when absent."""
    return "-" if moment is None else moment.isoformat(sep=" ", timespec="seconds")


def read_bounded(path: Path, limit: int, setting: str, what: str) -> bytes:
    """A file's bytes, refused (``payload_too_large``, naming ``setting``) before reading when over ``limit``."""
    try:
        size = path.stat().st_size
        if size > limit:
            raise PayloadTooLarge(f"{path} has {size} bytes; the limit is {limit} ({setting})")
        return path.read_bytes()
    except OSError as exc:
        raise InvalidArgument(f"cannot read {what} file {path}: {exc.strerror or exc}") from None
