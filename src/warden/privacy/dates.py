"""Dates: :func:`parse_date` for a value that is a date, and birth dates in free text, found by context.

Recognised shapes: ISO (``1984-03-12``, ``1984/03/12``), numeric day/month/year in either order with ``.``,
``/`` or ``-`` (``12.03.1984``, ``03/12/84``), and month names in English, German, French, Spanish, Italian and
Dutch (``12 March 1984``, ``March 12, 1984``, ``12. März 1984``, ``12 de marzo de 1984``). Four-digit years run
from 1800 to 2099; a two-digit year ``yy`` is 20yy when below 69 and 19yy otherwise (as C's ``strptime``), a
fixed rule so that results never depend on the day a run happens.

A date in free text is a birth date only when a context word (born, DOB, date of birth, geb., né le, nacido,
nato...) ends at most :data:`BIRTH_GAP` characters before it; other dates are not personal on their own.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator

__all__ = ["BIRTH_GAP", "date_after", "find_birth_dates", "parse_date"]

#: The most characters allowed between a birth context word and the date it introduces.
BIRTH_GAP = 24

_MONTH_NAMES: tuple[tuple[int, str], ...] = (
    (1, "january jan januar jänner janvier janv enero ene gennaio gen januari"),
    (2, "february feb februar février fevrier févr fevr febrero febbraio febr februari"),
    (3, "march mar märz maerz mär mars marzo maart mrt"),
    (4, "april apr avril avr abril abr aprile"),
    (5, "may mai mayo maggio mag mei"),
    (6, "june jun juni juin junio giugno giu"),
    (7, "july jul juli juillet juil julio luglio lug"),
    (8, "august aug août aout agosto ago augustus"),
    (9, "september sep sept septembre septiembre setiembre settembre set"),
    (10, "october oct oktober okt octobre octubre ottobre ott"),
    (11, "november nov novembre noviembre"),
    (12, "december dec dezember dez décembre decembre déc diciembre dic dicembre"),
)
_MONTHS: dict[str, int] = {word: number for number, words in _MONTH_NAMES for word in words.split()}
_MONTH = "|".join(sorted(map(re.escape, _MONTHS), key=len, reverse=True))

_DATE = re.compile(
    rf"""(?<![\w])(?<![0-9][./-])(?:
        (?P<iy>[0-9]{{4}})(?P<isep>[-/.])(?P<im>[0-9]{{1,2}})(?P=isep)(?P<id>[0-9]{{1,2}})
      | (?P<na>[0-9]{{1,2}})(?P<nsep>[-/.])(?P<nb>[0-9]{{1,2}})(?P=nsep)(?P<ny>[0-9]{{4}}|[0-9]{{2}})
      | (?P<dd>[0-9]{{1,2}})(?:st|nd|rd|th|er|º|\.)?[ ]?(?:de[ ]|of[ ])?
        (?P<dm>{_MONTH})\.?,?[ ](?:de[ ]|del[ ])?(?P<dy>[0-9]{{4}})
      | (?P<mm>{_MONTH})\.?[ ](?P<md>[0-9]{{1,2}})(?:st|nd|rd|th)?,?[ ](?P<my>[0-9]{{4}})
    )(?![\w])(?![./-][0-9])""",
    re.IGNORECASE | re.VERBOSE,
)

_BIRTH = re.compile(  # the lookahead lets the engine skip ahead to a possible first letter
    r"""(?=[bdgnf])(?<![\w])(?:
        born(?:[ ]on)? | b\. | d\.?[ ]?o\.?[ ]?b\.? | date[ ]of[ ]birth | birth[ ]?date | birthday
      | geb\. | geboren(?:[ ]am)? | geburtsdatum | geburtstag
      | née?(?:[ ]le)? | date[ ]de[ ]naissance
      | nacid[oa](?:[ ]el)? | fecha[ ]de[ ]nacimiento
      | (?-i:nat[oa][ ](?:il|a[ ]\w+(?:[ ]\w+)?[ ]il)) | data[ ]di[ ]nascita
      | geboortedatum
    )(?![\w])""",
    re.IGNORECASE | re.VERBOSE,
)

_DIGIT = re.compile(r"[0-9]")
_ISO_DATETIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]{1,6})?)?(?:Z|[+-][0-9]{2}:?[0-9]{2})?"
)


def _year(text: str) -> int:
    year = int(text)
    if len(text) == 2:
        return year + (2000 if year < 69 else 1900)
    return year


def _make(year: int, month: int, day: int) -> dt.date | None:
    if not 1800 <= year <= 2099:
        return None
    try:
        return dt.date(year, month, day)
    except ValueError:
        return None


def _to_date(match: re.Match[str], day_first: bool) -> dt.date | None:
    groups = match.groupdict()
    if groups["iy"] is not None:
        return _make(int(groups["iy"]), int(groups["im"]), int(groups["id"]))
    if groups["na"] is not None:
        first, second, year = int(groups["na"]), int(groups["nb"]), _year(groups["ny"])
        if day_first:
            return _make(year, second, first) or _make(year, first, second)
        return _make(year, first, second) or _make(year, second, first)
    if groups["dd"] is not None:
        return _make(int(groups["dy"]), _MONTHS[groups["dm"].lower()], int(groups["dd"]))
    return _make(int(groups["my"]), _MONTHS[groups["mm"].lower()], int(groups["md"]))


def parse_date(value: str, *, day_first: bool = True) -> dt.date | None:
    """The date ``value`` is (surrounding blanks aside), or None when it is not one of the shapes above.

    An ISO date-time (``1984-03-12T10:00:00Z``) gives its date. For ``03/04/1984``, ``day_first`` picks
    the reading (3 April when true); a reading that is not a real date falls back to the other one.
    """
    value = value.strip()
    if not 6 <= len(value) <= 32 or _DIGIT.search(value) is None:
        return None
    match = _DATE.fullmatch(value)
    if match is not None:
        return _to_date(match, day_first)
    if _ISO_DATETIME.fullmatch(value):
        return _make(int(value[:4]), int(value[5:7]), int(value[8:10]))
    return None


def find_birth_dates(text: str) -> Iterator[tuple[int, int]]:
    """``(start, end)`` of each real date in ``text`` that a birth context word introduces."""
    for word in _BIRTH.finditer(text):
        after = word.end()
        match = _DATE.search(text, after, after + BIRTH_GAP + 32)
        if match is not None and match.start() - after <= BIRTH_GAP and _to_date(match, day_first=True) is not None:
            yield match.start(), match.end()


#: What may stand between a person's name and the birth date written beside it: ``Ann Lee (1983-07-13)``.
_BESIDE = re.compile(r"[ ]?[(,][ ]?|[ ]")


def date_after(text: str, position: int) -> tuple[int, int] | None:
    """``(start, end)`` of a real date written right after ``position`` (after a space, ``(`` or a comma), if any.

    A name followed by a bare date in a record is how birth dates are commonly written (``Ann Lee
    (1983-07-13)``, ``Ann Lee, 13.07.1983``); the analyzer reports such dates as dates of birth.
    """
    gap = _BESIDE.match(text, position)
    if gap is None:
        return None
    match = _DATE.match(text, gap.end())
    if match is None or _to_date(match, day_first=True) is None:
        return None
    return match.start(), match.end()
