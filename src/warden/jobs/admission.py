"""Admission: the checks ``warden job run`` makes before it starts anything.

:func:`admit` refuses, with an :class:`~warden.errors.ApprovalRefused` whose ``reason`` is stable,
unless all of these hold, in this order:

1. the approval exists (``not_found``), was approved (``not_approved``: a tenant's request still
   pending, rejected or withdrawn), is not revoked (``revoked``), has not expired (``expired``)
   and has runs left (``exhausted``);
2. every input can be read and hashed, without symbolic links (``input_unreadable``);
3. every input's content hash is one the approval names (``input_not_approved``);
4. unless the approval allows direct identifiers, the scan finds none in any input
   (``identifiers_found``). A directory is scanned file by file; files in a format the scan
   cannot read are not scanned and are listed in :attr:`Admission.not_scanned` for the caller
   to report; a file in a supported format that fails to parse is refused (``input_unreadable``).

Only then is one run of the approval taken, atomically (:meth:`ApprovalService.consume`), which
refuses again if a concurrent admission took the last run or the approval was revoked meanwhile.
Invalid input names and duplicate names are the caller's mistake (``InvalidArgument``), not a refusal.

Inputs here are host paths, compared with the hashes a host approval names. A tenant's approval
names datasets of its dataset service as ``name:version`` instead (its ``dataset_refs``, no
hashes), so no host path is ever admitted under one; the job service resolves each reference to
the content hash of that stored version and checks that instead.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Final

from warden.errors import (
    ApprovalNotFound,
    ApprovalRefusal,
    ApprovalRefused,
    DeidError,
    InvalidArgument,
    UnsupportedFile,
)
from warden.jobs.approvals import ApprovalService, ApprovalState, ApprovalView, content_sha256, refusal

if TYPE_CHECKING:
    from warden.privacy.deid import Deidentifier

INPUT_NAME: Final = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
"""An input's name, its mount point under ``/input``; always used with ``fullmatch``."""

Scan = Callable[[Path], list[str]]
"""A scan hook: the direct-identifier columns found in one file; raises ``UnsupportedFile`` if it cannot read it."""


@dataclass(frozen=True, slots=True)
class Input:
    """An input to a job: a file or directory, and the name it is mounted under."""

    path: Path
    name: str


@dataclass(frozen=True, slots=True)
class AdmittedInput:
    """An input that passed admission: its content hash, and the files the scan could not read."""

    path: Path
    name: str
    sha256: str
    scanned: tuple[str, ...] = ()
    not_scanned: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Admission:
    """A job admitted under ``approval`` (as it is after the run was taken)."""

    approval: ApprovalView
    inputs: tuple[AdmittedInput, ...]
    scanned: bool = True
    """Whether the inputs were scanned (not when the approval allows direct identifiers)."""

    @property
    def purpose(self) -> str:
        """The approval's declared purpose."""
        return self.approval.purpose

    @property
    def not_scanned(self) -> list[str]:
        """Every file the scan skipped as an unsupported format, as ``NAME/relative/path`` (or ``NAME``)."""
        return [item for i in self.inputs for item in i.not_scanned]


def check_input_name(name: str) -> str:
    """Validate an input name: 1-63 of ``a-z 0-9 . _ -``, starting with a letter or digit."""
    if INPUT_NAME.fullmatch(name) is None:
        raise InvalidArgument(
            f"invalid input name {name!r}: use 1-63 lowercase letters, digits, '.', '_' or '-', "
            "starting with a letter or digit (give one as PATH:NAME)"
        )
    return name


def parse_input(spec: str) -> Input:
    """Parse ``PATH[:NAME]``; ``NAME`` defaults to the file or directory name (and must be valid either way)."""
    path_text, colon, name = spec.rpartition(":")
    if not colon:
        path_text, name = spec, ""
    if not path_text:
        raise InvalidArgument(f"input {spec!r} names no path; use PATH[:NAME]")
    path = Path(path_text)
    if colon and not name:
        raise InvalidArgument(f"input {spec!r} has an empty name after ':'; use PATH[:NAME]")
    # The name as written, not where a link leads (links are refused at admission anyway).
    return Input(path, check_input_name(name or Path(os.path.abspath(path)).name))


def check_inputs(inputs: Sequence[Input | tuple[Path, str]]) -> list[Input]:
    """At least one input, every name valid and no name twice."""
    checked = [i if isinstance(i, Input) else Input(Path(i[0]), i[1]) for i in inputs]
    if not checked:
        raise InvalidArgument("a job needs at least one input")
    seen: set[str] = set()
    for item in checked:
        check_input_name(item.name)
        if item.name in seen:
            raise InvalidArgument(f"input name {item.name!r} is given twice; name inputs apart with PATH:NAME")
        seen.add(item.name)
    return checked


@cache
def _deidentifier() -> Deidentifier:
    from warden.privacy.deid import Deidentifier  # noqa: PLC0415 - heavy (Arrow); only when a job is admitted

    return Deidentifier(ner=False)


def default_scan(path: Path) -> list[str]:
    """The direct-identifier columns ``warden deid scan`` (without NER) finds in one file.

    A file whose name gives no format the scan knows, but whose bytes are text, is scanned as text: renaming
    ``people.csv`` to ``people.dat`` must not carry its e-mail addresses past the scan.
    """
    from warden.privacy.tables import Format  # noqa: PLC0415 - heavy (Arrow); only when scanning

    fmt = None if _by_name(path) else Format.TEXT
    return _deidentifier().scan(path, fmt=fmt).direct_identifiers


def _by_name(path: Path) -> bool:
    from warden.privacy.tables import detect_format  # noqa: PLC0415 - heavy (Arrow); only when scanning

    try:
        detect_format(path)
    except UnsupportedFile:
        return False
    return True


_TEXT_PROBE: Final = 64 * 1024


def _looks_like_text(path: Path) -> bool:
    """Whether a file's first 64 KiB are UTF-8 text without NUL bytes (a renamed table or note, not an image)."""
    try:
        with path.open("rb") as handle:
            head = handle.read(_TEXT_PROBE)
    except OSError:
        return True  # let the scan report why it cannot read the file
    if b"\0" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return len(head) == _TEXT_PROBE and exc.start >= len(head) - 4  # cut in the middle of a character
    return True


def _supported(path: Path) -> bool:
    return _by_name(path) or _looks_like_text(path)


def _files(item: Input) -> list[tuple[Path, str]]:
    """The regular files of an input with their names as reported (``NAME`` or ``NAME/relative``), sorted."""
    if not item.path.is_dir():
        return [(item.path, item.name)]
    found: list[tuple[Path, str]] = []
    for root, _dirs, files in os.walk(item.path, onerror=_raise, followlinks=False):
        for name in files:
            full = Path(root) / name
            found.append((full, f"{item.name}/{full.relative_to(item.path).as_posix()}"))
    return sorted(found, key=lambda pair: pair[1])


def _raise(error: OSError) -> None:
    raise error


def _scan_input(item: Input, digest: str, scan: Scan) -> tuple[AdmittedInput, list[str]]:
    """Scan one input; returns it admitted so far and the findings (``file: columns``) that refuse it."""
    scanned: list[str] = []
    skipped: list[str] = []
    findings: list[str] = []
    try:
        files = _files(item)
    except OSError as exc:
        raise ApprovalRefused(
            ApprovalRefusal.INPUT_UNREADABLE, f"input {item.name!r} cannot be listed: {exc.strerror or exc}"
        ) from None
    for path, shown in files:
        if not _supported(path):
            skipped.append(shown)
            continue
        try:
            columns = scan(path)
        except (DeidError, UnsupportedFile, OSError) as exc:
            message = exc.message if isinstance(exc, DeidError | UnsupportedFile) else str(exc)
            raise ApprovalRefused(
                ApprovalRefusal.INPUT_UNREADABLE, f"input {item.name!r}: {shown} could not be scanned: {message}"
            ) from None
        scanned.append(shown)
        if columns:
            findings.append(f"{shown} ({', '.join(columns)})")
    admitted = AdmittedInput(item.path, item.name, digest, scanned=tuple(scanned), not_scanned=tuple(skipped))
    return admitted, findings


def admit(
    approvals: ApprovalService,
    approval_id: str,
    inputs: Sequence[Input | tuple[Path, str]],
    *,
    scan: Scan | None = None,
) -> Admission:
    """Check a job against its approval and inputs, then take one run; see the module docstring.

    ``scan`` defaults to :func:`default_scan`; it is called once per supported file.
    """
    checked = check_inputs(inputs)
    now = approvals.now()
    try:
        approval = approvals.get(approval_id)
    except ApprovalNotFound:
        raise refusal(None, now, approval_id) from None
    if approval.state(now) is not ApprovalState.ACTIVE:
        raise refusal(approval, now, approval_id)
    digests: list[str] = []
    for item in checked:
        try:
            digest = content_sha256(item.path)
        except (OSError, InvalidArgument) as exc:
            message = exc.message if isinstance(exc, InvalidArgument) else (exc.strerror or str(exc))
            raise ApprovalRefused(
                ApprovalRefusal.INPUT_UNREADABLE, f"input {item.name!r} ({item.path}) cannot be read: {message}"
            ) from None
        if digest not in approval.hashes:
            raise ApprovalRefused(
                ApprovalRefusal.INPUT_NOT_APPROVED,
                f"input {item.name!r} ({item.path}, sha256 {digest}) is not among the datasets of approval "
                f"{approval.id}; its content differs from what was approved",
            )
        digests.append(digest)
    admitted: list[AdmittedInput] = []
    if approval.allow_identifiers:
        admitted = [AdmittedInput(i.path, i.name, d) for i, d in zip(checked, digests, strict=True)]
    else:
        findings: list[str] = []
        for item, digest in zip(checked, digests, strict=True):
            one, found = _scan_input(item, digest, scan or default_scan)
            admitted.append(one)
            findings.extend(found)
        if findings:
            raise ApprovalRefused(
                ApprovalRefusal.IDENTIFIERS_FOUND,
                f"direct identifiers found in {'; '.join(findings)}; de-identify the data first "
                f"(warden deid apply), or use an approval created with --allow-identifiers",
            )
    taken = approvals.consume(approval.id)
    return Admission(taken, tuple(admitted), scanned=not approval.allow_identifiers)
