"""National identity numbers: a candidate pattern per scheme, then a validator that must accept the value.

Each scheme is named after its python-stdnum module (``us.ssn``, ``fr.nir``) and validated by it; the UK
National Insurance number, which stdnum lacks, is checked here against HMRC's published prefix and suffix rules.
A checksum-validated hit scores 1.0; a structural check only (SSN, NINO) scores 0.85.

Some schemes are plain digit runs that any order number could be (a bare 9-digit SSN or BSN, a 12-digit
Aadhaar): those shapes are found only when a context word (``SSN``, ``BSN``, ``Aadhaar``) stands within
:data:`CONTEXT_CHARS` characters before the value. Their customary formatted shapes (``123-45-6789``,
``1234.56.789``, ``2345 6789 0123``) need no context.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from stdnum.ca import sin as ca_sin
from stdnum.cn import ric as cn_ric
from stdnum.de import idnr as de_idnr
from stdnum.es import dni as es_dni
from stdnum.es import nie as es_nie
from stdnum.fr import nir as fr_nir
from stdnum.gb import nhs as gb_nhs
from stdnum.in_ import aadhaar as in_aadhaar
from stdnum.it import codicefiscale as it_codicefiscale
from stdnum.nl import bsn as nl_bsn
from stdnum.pl import pesel as pl_pesel
from stdnum.us import ssn as us_ssn

from warden.errors import InvalidPolicy

__all__ = [
    "CONTEXT_CHARS",
    "DEFAULT_NATIONAL_IDS",
    "NATIONAL_ID_SCHEMES",
    "NationalIdFinder",
    "NationalIdScheme",
    "resolve_national_ids",
]

#: How far before a value (in characters) a context word counts for schemes that need one.
CONTEXT_CHARS = 48

#: Score of a value whose check digits matched; structural checks alone score ``_STRUCTURAL``.
_CHECKSUM = 1.0
_STRUCTURAL = 0.85

# A value must not be glued to a longer word or number ("x123-45-6789", "123-45-6789-0", "+34987808566").
_START = r"(?<![\w+-])(?<![0-9][ .])"
_END = r"(?![\w-])(?![ .][0-9])"


def _compile(body: str) -> re.Pattern[str]:
    return re.compile(_START + "(?:" + body + ")" + _END)


@dataclass(frozen=True, slots=True)
class NationalIdScheme:
    """How one identity number is found: shapes that stand alone, shapes that need a context word, a validator.

    ``shapes`` and ``contextual`` are regular-expression bodies without capturing or back-referencing groups,
    so that :class:`NationalIdFinder` can join the bodies of many schemes into one cheap first pass.
    """

    name: str
    title: str
    is_valid: Callable[[str], bool]
    score: float
    min_digits: int
    shapes: str | None = None
    contextual: str | None = None
    context: re.Pattern[str] | None = None
    _pattern: re.Pattern[str] | None = field(init=False, repr=False, compare=False)
    _contextual: re.Pattern[str] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if (self.contextual is None) != (self.context is None):
            raise ValueError(f"{self.name}: contextual shapes and context words go together")
        object.__setattr__(self, "_pattern", None if self.shapes is None else _compile(self.shapes))
        object.__setattr__(self, "_contextual", None if self.contextual is None else _compile(self.contextual))

    def find(self, text: str) -> Iterator[tuple[int, int, float]]:
        """``(start, end, score)`` of every valid value in ``text``, in order of appearance per shape."""
        if self._pattern is not None:
            for match in self._pattern.finditer(text):
                if self.is_valid(match.group()):
                    yield match.start(), match.end(), self.score
        if self._contextual is not None and self.context is not None:
            for match in self._contextual.finditer(text):
                start = match.start()
                if self.context.search(text, max(0, start - CONTEXT_CHARS), start) and self.is_valid(match.group()):
                    yield start, match.end(), self.score


class NationalIdFinder:
    """Several schemes searched together: one joined pattern first, then each scheme only when it hits."""

    __slots__ = ("_gate", "schemes")

    def __init__(self, schemes: Sequence[NationalIdScheme]) -> None:
        self.schemes = tuple(schemes)
        bodies = [body for scheme in self.schemes for body in (scheme.shapes, scheme.contextual) if body]
        self._gate = _compile("|".join(bodies)) if bodies else None

    def find(self, text: str, digits: int) -> Iterator[tuple[int, int, float]]:
        """``(start, end, score)`` of every valid value; ``digits`` is how many ASCII digits ``text`` holds."""
        if self._gate is None or self._gate.search(text) is None:
            return
        for scheme in self.schemes:
            if digits >= scheme.min_digits:
                yield from scheme.find(text)


def _context(words: str) -> re.Pattern[str]:
    return re.compile(r"(?<!\w)(?:" + words + r")(?!\w)", re.IGNORECASE)


# HMRC: the first letter is not D, F, I, Q, U or V; the second not D, F, I, O, Q, U or V; the prefixes
# BG, GB, KN, NK, NT, TN and ZZ are never allocated; the suffix is A, B, C or D.
_NINO = re.compile(r"(?!BG|GB|KN|NK|NT|TN|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z][0-9]{6}[A-D]")


def _nino_is_valid(value: str) -> bool:
    return _NINO.fullmatch(value.replace(" ", "")) is not None


def _ssn_is_valid(value: str) -> bool:
    # stdnum accepts only the dashed or the compact form; a spaced SSN is checked in its dashed form.
    return bool(us_ssn.is_valid(value.replace(" ", "-")))


_SCHEMES: tuple[NationalIdScheme, ...] = (
    NationalIdScheme(
        name="us.ssn",
        title="US Social Security number",
        is_valid=_ssn_is_valid,
        score=_STRUCTURAL,
        min_digits=9,
        shapes=r"[0-9]{3}(?:-[0-9]{2}-| [0-9]{2} )[0-9]{4}",
        contextual=r"[0-9]{9}",
        context=_context(r"ssn|ss#|ss\s?no\.?|social\s+security|soc\.?\s*sec\.?"),
    ),
    NationalIdScheme(
        name="gb.nino",
        title="UK National Insurance number",
        is_valid=_nino_is_valid,
        score=_STRUCTURAL,
        min_digits=6,
        shapes=r"[A-Z]{2} ?[0-9]{2} ?[0-9]{2} ?[0-9]{2} ?[A-D]",
    ),
    NationalIdScheme(
        name="de.idnr",
        title="German tax identification number (IdNr)",
        is_valid=de_idnr.is_valid,
        score=_CHECKSUM,
        min_digits=11,
        shapes=r"[1-9][0-9](?:[0-9]{9}| [0-9]{3} [0-9]{3} [0-9]{3})",
    ),
    NationalIdScheme(
        name="fr.nir",
        title="French social security number (NIR)",
        is_valid=fr_nir.is_valid,
        score=_CHECKSUM,
        min_digits=13,
        shapes=(
            r"[1-478](?:[0-9]{4}(?:[0-9]{2}|2[AB])[0-9]{6}"  # compact
            r"| [0-9]{2} [0-9]{2} (?:[0-9]{2}|2[AB]) [0-9]{3} [0-9]{3}) ?[0-9]{2}"  # 1 84 12 76 451 089 46
        ),
    ),
    NationalIdScheme(
        name="es.dni",
        title="Spanish national identity number (DNI)",
        is_valid=es_dni.is_valid,
        score=_CHECKSUM,
        min_digits=8,
        shapes=r"[0-9]{8}[ -]?[A-Z]",
    ),
    NationalIdScheme(
        name="es.nie",
        title="Spanish foreigner identity number (NIE)",
        is_valid=es_nie.is_valid,
        score=_CHECKSUM,
        min_digits=7,
        shapes=r"[XYZ][ -]?[0-9]{7}[ -]?[A-Z]",
    ),
    NationalIdScheme(
        name="it.codicefiscale",
        title="Italian fiscal code (codice fiscale)",
        is_valid=it_codicefiscale.is_valid,
        score=_CHECKSUM,
        min_digits=0,  # omocodia may replace every digit with a letter
        shapes=r"(?i:[A-Z]{6}[0-9LMNP-V]{2}[ABCDEHLMPRST][0-9LMNP-V]{2}[A-Z][0-9LMNP-V]{3}[A-Z])",
    ),
    NationalIdScheme(
        name="cn.ric",
        title="Chinese resident identity card number",
        is_valid=cn_ric.is_valid,
        score=_CHECKSUM,
        min_digits=17,
        shapes=r"[1-9][0-9]{5}(?:18|19|20)[0-9]{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01])[0-9]{3}[0-9Xx]",
    ),
    NationalIdScheme(
        name="nl.bsn",
        title="Dutch citizen service number (BSN)",
        is_valid=nl_bsn.is_valid,
        score=_CHECKSUM,
        min_digits=9,
        shapes=r"[0-9]{4}\.[0-9]{2}\.[0-9]{3}",
        contextual=r"[0-9]{9}|[0-9]{3} [0-9]{3} [0-9]{3}",
        context=_context(r"bsn|burgerservicenummer|sofi-?nummer|sofi"),
    ),
    NationalIdScheme(
        name="in.aadhaar",
        title="Indian Aadhaar number",
        is_valid=in_aadhaar.is_valid,
        score=_CHECKSUM,
        min_digits=12,
        shapes=r"[2-9][0-9]{3}(?: [0-9]{4} |-[0-9]{4}-)[0-9]{4}",
        contextual=r"[2-9][0-9]{11}",
        context=_context(r"aadhaar|aadhar|uidai|uid|आधार"),
    ),
    NationalIdScheme(
        name="ca.sin",
        title="Canadian Social Insurance number",
        is_valid=ca_sin.is_valid,
        score=_CHECKSUM,
        min_digits=9,
        shapes=r"[0-9]{3}(?: [0-9]{3} |-[0-9]{3}-)[0-9]{3}",
        contextual=r"[0-9]{9}",
        context=_context(r"sin|social\s+insurance|nas|assurance\s+sociale"),
    ),
    NationalIdScheme(
        name="gb.nhs",
        title="UK NHS number",
        is_valid=gb_nhs.is_valid,
        score=_CHECKSUM,
        min_digits=10,
        contextual=r"[0-9]{3}(?:[0-9]{3}| [0-9]{3} |-[0-9]{3}-)[0-9]{4}",
        context=_context(r"nhs"),
    ),
    NationalIdScheme(
        name="pl.pesel",
        title="Polish national identification number (PESEL)",
        is_valid=pl_pesel.is_valid,
        score=_CHECKSUM,
        min_digits=11,
        contextual=r"[0-9]{11}",
        context=_context(r"pesel"),
    ),
)

#: Every scheme Warden can find, by name.
NATIONAL_ID_SCHEMES: Mapping[str, NationalIdScheme] = MappingProxyType({s.name: s for s in _SCHEMES})

#: The schemes searched unless a policy names others. ``ca.sin``, ``gb.nhs`` and ``pl.pesel`` are opt-in: their
#: shapes collide with ordinary phone and account numbers more often.
DEFAULT_NATIONAL_IDS: tuple[str, ...] = (
    "us.ssn",
    "gb.nino",
    "de.idnr",
    "fr.nir",
    "es.dni",
    "es.nie",
    "it.codicefiscale",
    "cn.ric",
    "nl.bsn",
    "in.aadhaar",
)


def resolve_national_ids(names: Sequence[str]) -> tuple[NationalIdScheme, ...]:
    """The schemes for ``names``, in order and without repeats; an unknown name fails loudly."""
    if isinstance(names, str):
        raise InvalidPolicy("national_ids", f"expected a list of scheme names, got the string {names!r}")
    unknown = [name for name in names if name not in NATIONAL_ID_SCHEMES]
    if unknown:
        known = ", ".join(sorted(NATIONAL_ID_SCHEMES))
        raise InvalidPolicy("national_ids", f"unknown national id {', '.join(map(repr, unknown))}; known: {known}")
    return tuple(NATIONAL_ID_SCHEMES[name] for name in dict.fromkeys(names))
