"""``--auto``: a safe policy derived from a scan, written out in full so the manifest shows every decision.

- A direct identifier filling its cells (or named so, with nothing found in longer
  text) is pseudonymised with ``hash`` when a key is given (joins survive), else
  redacted with its typed placeholder; dates of birth are generalised to the year.
- Any other column in which the scan found an entity, however rarely, goes through
  ``text`` (numbers and bytes are read as text); a column of nested JSON values
  holding personal data is dropped, as no other operator applies to them.
- Quasi-identifiers are generalised (age to decades with 90+, postal codes to 3
  characters, dates to the year); with ``k`` they are left to the k procedure.
- Everything else is kept, explicitly.
"""

from __future__ import annotations

from typing import Final

from warden.privacy.entities import Entity
from warden.privacy.operators import DatePart, OnInvalid
from warden.privacy.policy import (
    ColumnSpec,
    DropSpec,
    GeneralizeSpec,
    HashSpec,
    KAnonymitySpec,
    KeepSpec,
    Policy,
    RedactSpec,
    TextSpec,
)
from warden.privacy.scan import ColumnProfile, QuasiKind, ScanReport

#: Mean length from which a column counts as free text for ``--auto`` even with a single finding.
_TEXT_CHARS: Final = 20
#: Share of the scanned cells an entity must fill for its column to be that entity (pseudonymised whole).
_WHOLE: Final = 0.8


def auto_policy(
    report: ScanReport, *, keyed: bool, k: int | None = None, max_suppressed: float = 0.05, ner: bool = True
) -> Policy:
    """The policy ``--auto`` applies to the scanned file (``ner``: whether its ``text`` operators use NER)."""
    k_columns = frozenset(report.quasi_identifiers if k is not None else ())
    columns: dict[str, ColumnSpec] = {
        profile.name: _spec(profile, keyed, profile.name in k_columns, ner) for profile in report.columns
    }
    k_spec = None
    if k is not None and report.quasi_identifiers:
        k_spec = KAnonymitySpec(k=k, quasi_identifiers=report.quasi_identifiers, max_suppressed=max_suppressed)
    return Policy(unlisted="error", columns=columns, k_anonymity=k_spec)


def _spec(profile: ColumnProfile, keyed: bool, k_owns: bool, ner: bool) -> ColumnSpec:
    """One column's operator; ``k_owns``: the column is a quasi-identifier the k procedure generalises."""
    found = any(p.findings for p in profile.entities.values())
    if profile.nested and (found or profile.direct is not None):
        return DropSpec(op="drop")  # nested values take no operator but keep or drop; personal data is inside
    long_text = profile.scanned and profile.text_chars / profile.scanned >= _TEXT_CHARS
    if profile.direct is not None and (_fills(profile) or not (profile.free_text or long_text)):
        return _direct(profile.direct, keyed)
    if profile.direct is None and profile.quasi is not None and k_owns:
        return KeepSpec(op="keep")  # the k procedure generalises it; it must reach it unchanged
    if found and (profile.free_text or long_text or profile.direct is None):
        return TextSpec(op="text", ner=ner)  # any finding at all: never kept as it is
    if profile.direct is not None:
        return _direct(profile.direct, keyed)
    if profile.quasi is not None and not k_owns:
        return _quasi(profile.quasi)
    return KeepSpec(op="keep")


def _fills(profile: ColumnProfile) -> bool:
    """Whether the column's direct-identifier entity fills most of its cells (an e-mail column, however long)."""
    entity = profile.entities.get(profile.direct) if profile.direct is not None else None
    return entity is not None and profile.scanned > 0 and entity.whole_cells >= _WHOLE * profile.scanned


def _direct(entity: Entity, keyed: bool) -> ColumnSpec:
    if entity is Entity.DATE_OF_BIRTH:
        return GeneralizeSpec(op="generalize", date=DatePart.YEAR, on_invalid=OnInvalid.REDACT)
    if keyed:
        return HashSpec(op="hash")
    return RedactSpec(op="redact", entity=entity)


def _quasi(kind: QuasiKind) -> ColumnSpec:
    match kind:
        case QuasiKind.AGE:
            return GeneralizeSpec(op="generalize", bucket=10, top=90, on_invalid=OnInvalid.REDACT)
        case QuasiKind.POSTAL_CODE:
            return GeneralizeSpec(op="generalize", prefix=3, on_invalid=OnInvalid.REDACT)
        case QuasiKind.DATE:
            return GeneralizeSpec(op="generalize", date=DatePart.YEAR, on_invalid=OnInvalid.REDACT)
        case QuasiKind.GENDER | QuasiKind.LOCATION:
            return KeepSpec(op="keep")
