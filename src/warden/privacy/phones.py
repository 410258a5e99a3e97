"""Phone numbers: a fast regex proposes digit chains, the ``phonenumbers`` metadata judges them.

A chain is 7 to 15 digits joined by at most three of `` .-/()`` at a time, optionally led by ``+`` or ``(``
and followed by an extension (``x123``, ``ext. 123``, ``extension 12``, ``#123``) that the span includes.
International chains (``+44…``, ``0044…``, ``011 44…``) are judged for their own country; national chains
in each configured region, written as people write them there: with the trunk prefix (``030 1234567``)
unless the region's own format drops it (Chinese mobiles), North American numbers 3-3-4 or as 10 bare
digits. Without those rules most digit runs would be valid somewhere.

Scores:

* 0.9 — valid (an assigned range) and written like a phone number: grouped, parenthesised, international or
  with an extension;
* 0.7 — valid but one bare run of 8 or more digits (``2025550143``), which an order number could also be;
* 0.6 — only *possible* (right length, unassigned range: test data is full of them) and grouped, or with
  an extension or a phone word; a bare possible run of 9 digits or more scores 0.5;
* 0.5 — neither, but either a phone word (phone, tel, call, fax, mobile, Telefon, téléphone, teléfono…)
  stands within :data:`CONTEXT_CHARS` characters before it, or it is grouped like a national number after a
  trunk ``0`` (``(0161) 496 0066``, ``0047 426840``).

Not phones: IPv4 shapes, dates, decimals, thousands-grouped amounts, SSN shapes, references that start with a
year (``2024-000123``), chains with a lone digit at either end, and bare ``00…`` runs that are not valid
international numbers (zero-padded account numbers). Results are cached per digit string.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from functools import lru_cache
from typing import NamedTuple

import phonenumbers

from warden.errors import InvalidPolicy
from warden.privacy.dates import parse_date

__all__ = ["CONTEXT_CHARS", "DEFAULT_PHONE_REGIONS", "find_phones", "resolve_phone_regions"]

#: Regions whose national formats are tried, in order, for numbers written without a country code.
DEFAULT_PHONE_REGIONS: tuple[str, ...] = ("US", "GB", "DE", "FR", "ES", "IT", "NL", "CN", "IN", "CA", "AU")

#: How far before a chain (in characters) a phone word counts as context.
CONTEXT_CHARS = 40

_VALID = 0.9
_VALID_BARE = 0.7
_POSSIBLE = 0.6
_POSSIBLE_BARE = 0.5
_CONTEXT_ONLY = 0.5

_CHAIN = re.compile(
    # The first character is consumed before the look-behinds, so the engine skips ahead to possible starts.
    r"[+(0-9](?<![\w+#@/].)(?<![0-9][.,].)"  # not glued to a word, a number or a decimal point
    r"(?:(?<=\()\+?[0-9]|(?<=\+)[0-9]|(?<=[0-9]))"  # "(", "(+", "+" or a digit, then digits and separators
    r"(?:[ \u00a0.\-/()]{0,3}[0-9]){6,}"
)
_EXTENSION = re.compile(
    r"[ \u00a0]?,?[ \u00a0]?(?:x|ext\.?|extn\.?|extension|#)[ \u00a0.:]{0,2}[0-9]{1,6}(?![\w])", re.IGNORECASE
)
_PAREN_START = re.compile(r"\(\+?[0-9]{1,6}\)")
_GLUED_AFTER = re.compile(r"[\w@]|[.,/-][0-9]")
_NON_DIGIT = re.compile(r"[^0-9]+")
_DIGIT_RUN = re.compile(r"[0-9]+")
_BLANKS = re.compile(r"[ \u00a0]+")
_CONTEXT = re.compile(
    r"(?<![\w])(?:phone|ph|tel|telephone|mobile|mob|cell|cellphone|call|fax|contact|whatsapp|sms|"
    r"telefon|telefonnummer|rufnummer|handy|mobil|t[ée]l[ée]phone|t[ée]l|portable|tel[ée]fono|m[óo]vil|"
    r"celular|cellulare|telefoon|mobiel|电话|手机)(?![\w])",
    re.IGNORECASE,
)
# Shapes that are something else: an IPv4 address, a decimal, a dated reference, an SSN, a grouped amount.
_NOT_A_PHONE = re.compile(
    r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}"
    r"|[0-9]+[.,][0-9]+|(?:19|20)[0-9]{2}[-/].*|[0-9]{3}-[0-9]{2}-[0-9]{4}"
    r"|[0-9]{1,3}(?:\.[0-9]{3})+|[0-9]{1,2}(?: [0-9]{3})+"
)
# A national number after a trunk 0, grouped: (0161) 496 0066, 030/1234567, 0047 426840.
_TRUNK_SHAPE = re.compile(r"\(?0[0-9]{1,4}\)?[ \u00a0]?[-/]?[ \u00a0]?[0-9]{2,}(?:[ \u00a0-][0-9]{2,})*")
# North American numbers as written at home: (555) 123-4567, 555.123.4567, 1-555-123-4567.
_NANP_DIGITS = re.compile(r"1?[2-9][0-9]{2}[2-9][0-9]{6}")
_NANP = re.compile(r"(?:1[ .-]?)?(?:\([2-9][0-9]{2}\) ?|[2-9][0-9]{2}[ .-])[2-9][0-9]{2}[ .-][0-9]{4}")


def resolve_phone_regions(regions: Sequence[str]) -> tuple[str, ...]:
    """Upper-cased region codes, without repeats; an unknown region fails loudly."""
    if isinstance(regions, str):
        raise InvalidPolicy("phone_regions", f"expected a list of region codes, got the string {regions!r}")
    wanted = tuple(dict.fromkeys(region.upper() for region in regions))
    unknown = [region for region in wanted if phonenumbers.country_code_for_region(region) == 0]
    if unknown:
        raise InvalidPolicy(
            "phone_regions",
            f"unknown region {', '.join(map(repr, unknown))}; use ISO 3166 codes such as 'US', 'GB', 'DE'",
        )
    return wanted


class _Country(NamedTuple):
    """A country code with the configured regions that share it (US and CA share +1) and its trunk prefix."""

    code: int
    regions: tuple[str, ...]
    trunk: str  # "" when there is none, and for +1, whose "1" is optional
    omits_trunk: bool  # the national format leaves it out of some numbers: Chinese mobiles, Brazil


@lru_cache(maxsize=64)
def _prepare(regions: tuple[str, ...]) -> tuple[_Country, ...]:
    by_code: dict[int, list[str]] = {}
    for region in regions:
        by_code.setdefault(phonenumbers.country_code_for_region(region), []).append(region)
    countries = []
    for code, members in by_code.items():
        metadata = phonenumbers.PhoneMetadata.metadata_for_region(members[0])
        trunk = "" if code == 1 or metadata is None else metadata.national_prefix or ""
        example = phonenumbers.example_number_for_type(members[0], phonenumbers.PhoneNumberType.MOBILE)
        omits = bool(trunk) and example is not None and _written_without_trunk(example, trunk)
        countries.append(_Country(code, tuple(members), trunk, omits))
    return tuple(countries)


def _number(code: int, significant: str) -> phonenumbers.PhoneNumber | None:
    """The number ``+code significant``, built directly: ``phonenumbers.parse`` costs ten times as much."""
    if not significant:
        return None
    number = phonenumbers.PhoneNumber(country_code=code, national_number=int(significant))
    zeros = len(significant) - len(significant.lstrip("0"))
    if zeros:  # Italian numbers keep their leading zero
        number.italian_leading_zero = True
        if zeros > 1:
            number.number_of_leading_zeros = zeros
    return number


@lru_cache(maxsize=32_768)
def _judge_national(digits: str, nanp_shaped: bool, countries: tuple[_Country, ...]) -> tuple[bool, bool]:
    """(valid, possible) of ``digits`` written as a national number in one of the configured regions.

    A national number is written with its trunk prefix (``030 …`` in Germany) unless the region's own national
    format leaves it out (Chinese mobiles, ``138 0013 8000``); North American numbers are written 3-3-4 or as
    a bare 10 or 11 digits. Without these rules most digit runs would be valid somewhere. Where there is no
    trunk prefix (Italy, Spain), a number may also start with the country code (``39 06 1234 5678``).
    """
    possible = False
    for code, regions, trunk, omits_trunk in countries:
        if code == 1:
            if not nanp_shaped:
                continue
            candidates = [digits[1:] if len(digits) == 11 and digits[0] == "1" else digits]
        elif not trunk:
            prefix = str(code)
            candidates = [digits, digits[len(prefix) :]] if digits.startswith(prefix) else [digits]
        elif digits.startswith(trunk):
            candidates = [digits[len(trunk) :]]
        elif omits_trunk:
            candidates = [digits]
        else:
            continue
        for significant in candidates:
            number = _number(code, significant)
            if number is None:
                continue
            if any(phonenumbers.is_valid_number_for_region(number, region) for region in regions):
                if not (trunk and omits_trunk and not digits.startswith(trunk)) or _written_without_trunk(
                    number, trunk
                ):
                    return True, True
            elif (trunk and digits.startswith(trunk)) or code == 1:
                # Only a trunk prefix or the NANP shape makes a merely possible number look like one.
                possible = possible or phonenumbers.is_possible_number(number)
    return False, possible


def _written_without_trunk(number: phonenumbers.PhoneNumber, trunk: str) -> bool:
    national = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
    return not _NON_DIGIT.sub("", national).startswith(trunk)


@lru_cache(maxsize=32_768)
def _judge_international(digits: str) -> tuple[bool, bool]:
    """(valid, possible) of ``digits`` read as country code plus national number."""
    try:
        number = phonenumbers.parse("+" + digits, None)
    except phonenumbers.NumberParseException:
        return False, False
    if phonenumbers.is_valid_number(number):
        return True, True
    return False, phonenumbers.is_possible_number(number)


def _something_else(chain: str) -> bool:
    """An IPv4 address, a decimal, an amount, a coordinate pair, a date or a dated reference (``2024-000123``)."""
    if "." in chain and (chain.count(".") < 2 or any(c in chain for c in " -/\u00a0")):
        return True
    return _NOT_A_PHONE.fullmatch(chain) is not None or parse_date(chain) is not None


def _score(chain: str, extended: bool, regions: tuple[_Country, ...], context: bool) -> float | None:
    international = chain[0] == "+" or chain.startswith("(+")
    digits = _NON_DIGIT.sub("", chain.replace("(0)", "") if international else chain)
    dialled_out = False  # an international prefix (00, 011) instead of "+"
    if not international:
        if _something_else(chain):
            return None
        if digits.startswith("00"):
            international, dialled_out, digits = True, True, digits[2:]
        elif digits.startswith("011") and len(digits) >= 13:
            international, dialled_out, digits = True, True, digits[3:]
    if not 7 <= len(digits) <= 15:
        return None
    bare = chain.isdigit()
    groups = _DIGIT_RUN.findall(chain)
    if len(groups[-1]) < 2 or (len(groups[0]) < 2 and not international and groups[0] != "1"):
        return None  # people do not write a lone digit at either end of a phone number ("036-438-7")
    # North American: area code and exchange code both start with 2-9, grouped 3-3-4 unless bare.
    nanp_shaped = (_NANP_DIGITS if bare else _NANP).fullmatch(digits if bare else chain) is not None
    if international:
        valid, possible = _judge_international(digits)
        possible = possible and not (bare and dialled_out)  # "0012345678" is more often a zero-padded number
    else:
        valid, possible = _judge_national(digits, nanp_shaped, regions)
    if valid:
        if not bare or extended:
            return _VALID
        if len(digits) >= 8 or context:
            return _VALID_BARE
        return None
    if possible:
        if not bare or international or extended or context:
            return _POSSIBLE
        if len(digits) >= 9:
            return _POSSIBLE_BARE
    if context or (not bare and 9 <= sum(map(len, groups)) <= 12 and _TRUNK_SHAPE.fullmatch(chain)):
        return _CONTEXT_ONLY
    return None


def find_phones(
    text: str, regions: tuple[str, ...], taken: Sequence[tuple[int, int]] = ()
) -> Iterator[tuple[int, int, float]]:
    """``(start, end, score)`` of each phone number in ``text``; ``regions`` as :func:`resolve_phone_regions` gives.

    Digit chains that overlap a ``taken`` span (digits another validator explained) are not judged.
    """
    countries = _prepare(regions)
    size = len(text)
    for match in _CHAIN.finditer(text):
        start, end = match.span()
        if taken and any(start < e and s < end for s, e in taken):
            continue
        chain = match.group()
        if chain[0] == "(" and _PAREN_START.match(chain) is None:
            start, chain = start + 1, chain[1:]  # a parenthesis around the whole number, not around its area code
        extension = _EXTENSION.match(text, end)
        if extension is None and end < size and _GLUED_AFTER.match(text, end):
            continue
        context = _CONTEXT.search(text, max(0, start - CONTEXT_CHARS), start) is not None
        score = _score(chain, extension is not None, countries, context)
        if score is not None:
            yield start, extension.end() if extension is not None else end, score
            continue
        yield from _split(chain, start, extension, countries, context)


def _split(
    chain: str, start: int, extension: re.Match[str] | None, regions: tuple[_Country, ...], context: bool
) -> Iterator[tuple[int, int, float]]:
    """Numbers inside a chain that is not one as a whole: ``Room 12 030 1234567``, two numbers side by side.

    A piece qualifies only when it is valid, has 9 digits or more, and both of its ends are natural: the chain's
    own end, or a neighbour that starts a new number (``+``, ``(`` or a trunk ``0``).
    """
    blanks = [(m.start(), m.end()) for m in _BLANKS.finditer(chain)]
    if not blanks or len(blanks) > 7:
        return
    edges = [0, *(e for _, e in blanks)]  # where a window may begin
    ends = [*(s for s, _ in blanks), len(chain)]  # where a window may end
    first = 0
    while first < len(edges):
        found = False
        if first == 0 or chain[edges[first]] in "+(0":
            for last in range(first, len(ends)):  # the shortest valid window: two numbers side by side stay two
                if (first == 0 and last == len(ends) - 1) or (
                    last + 1 < len(edges) and chain[edges[last + 1]] not in "+(0"
                ):
                    continue
                window = chain[edges[first] : ends[last]]
                extended = extension is not None and last == len(ends) - 1
                if sum(c.isdigit() for c in window) < 9:
                    continue
                if _score(window, extended, regions, context and first == 0) == _VALID:
                    stop = extension.end() if extension is not None and extended else start + ends[last]
                    yield start + edges[first], stop, _VALID
                    first, found = last + 1, True
                    break
        if not found:
            first += 1
