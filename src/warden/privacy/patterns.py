"""The pattern detector: regular expressions propose candidates, validators keep only the real ones.

Every candidate is checked before it is reported, so clean text stays clean:

=============  ===========================================================  =====
entity         validation                                                   score
=============  ===========================================================  =====
CREDIT_CARD    Luhn check digit, issuer prefix and a length that issuer     1.0
               uses (12–19 digits, Maestro, 19-digit Visa, 2-series MC...)
IBAN           ISO 7064 mod-97 check digits and the country's BBAN format   1.0
NATIONAL_ID    per scheme, see :mod:`warden.privacy.national_ids`           0.85–1
EMAIL          a dotted domain ending in a 2–63 letter top-level domain     0.9
URL            ``http(s)://``, ``ftp://`` or ``www.`` and a dotted host     0.85
IP_ADDRESS     valid octets; not a version or section (``v1.2.3.4``)      0.85
MAC_ADDRESS    six hex pairs (``:`` or ``-``) or Cisco's ``aabb.ccdd.eeff``  0.85
PHONE          ``phonenumbers`` metadata, see :mod:`warden.privacy.phones`  0.5–0.9
DATE_OF_BIRTH  a real date introduced by a birth word, see :mod:`~.dates`   0.85
=============  ===========================================================  =====

Cheap checks come first: no ``@`` means no e-mail search, too few digits skips every digit-based detector.
Digits already explained are not read twice: a card or identity number inside an IBAN is dropped, and so is
a phone candidate overlapping a card, IBAN, identity number, IP or MAC address or birth date.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Collection, Iterator, Sequence
from functools import lru_cache

import phonenumbers
import stdnum
from stdnum import iban as _iban

from warden.privacy.dates import find_birth_dates, parse_date
from warden.privacy.entities import Entity, Finding
from warden.privacy.national_ids import DEFAULT_NATIONAL_IDS, NationalIdFinder, resolve_national_ids
from warden.privacy.phones import DEFAULT_PHONE_REGIONS, find_phones, resolve_phone_regions

__all__ = [
    "DEFAULT_NATIONAL_IDS",
    "DEFAULT_PHONE_REGIONS",
    "PATTERN_ENTITIES",
    "RULES_VERSION",
    "PatternDetector",
    "card_issuer_ok",
    "luhn_ok",
    "parse_date",
]

#: The version of this module's rules; it changes whenever what they find changes.
RULES_VERSION = "1"

#: Entity types the pattern detector can report.
PATTERN_ENTITIES: frozenset[Entity] = frozenset(
    {
        Entity.EMAIL,
        Entity.PHONE,
        Entity.IP_ADDRESS,
        Entity.IBAN,
        Entity.CREDIT_CARD,
        Entity.NATIONAL_ID,
        Entity.DATE_OF_BIRTH,
        Entity.URL,
        Entity.MAC_ADDRESS,
    }
)

_NAME = "patterns"
_DIGITS = "0123456789"

_EMAIL = re.compile(
    r"[\w!#$%&'*+/=?^`{|}~-]+(?:\.[\w!#$%&'*+/=?^`{|}~-]+)*"
    r"@(?:[^\W_](?:[\w-]{0,61}[^\W_])?\.)+[^\W\d_]{2,63}(?![\w-])"
)
_URL = re.compile(r"(?<![\w@.])(?:(?:https?|ftp)://|www\.)[^\s<>\"'`{}|\\^]+", re.IGNORECASE)
_URL_HOST = re.compile(
    r"(?:(?:https?|ftp)://(?:[^/?#@\s]*@)?|www\.)(?:[^\W_](?:[\w-]*[^\W_])?\.)+[^\W\d_]{2,63}\.?(?::[0-9]{1,5})?(?:[/?#]|$)"
    r"|(?:https?|ftp)://(?:[^/?#@\s]*@)?(?:localhost|[0-9.]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?(?:[/?#]|$)",
    re.IGNORECASE,
)
_URL_TRAILING = ".,;:!?'\"*"
# Several patterns consume their first character before looking behind it: the engine can then skip ahead to
# characters that may start a match instead of trying the look-behinds at every position (twice as fast).
_IPV4 = re.compile(r"[0-9](?<![\w.:].)(?<![0-9]\..)[0-9]{0,2}\.(?:[0-9]{1,3}\.){2}[0-9]{1,3}(?![\w]|\.[0-9]|-[A-Za-z])")
_NOT_AN_IP_BEFORE = re.compile(
    r"(?<![\w])(?:v|version|ver\.?|release|build|rev\.?|section|sect?\.|§|chapter|ch\.|clause|art\.|article|figure"
    r"|fig\.|table|step|item|no\.)[ :]*$",
    re.IGNORECASE,
)
_IPV6 = re.compile(
    r"(?<![\w:.])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}"
    r"(?:(?<=:)[0-9]{1,3}(?:\.[0-9]{1,3}){3})?(?:%[0-9A-Za-z._-]+)?(?![\w:]|\.[0-9])"
)
_MAC = re.compile(
    r"[0-9A-Fa-f](?<![\w:.-].)(?:[0-9A-Fa-f]([:-])(?:[0-9A-Fa-f]{2}\1){4}[0-9A-Fa-f]{2}"
    r"|[0-9A-Fa-f]{3}\.[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4})(?![\w:-]|\.[0-9A-Fa-f])"
)
_IBAN = re.compile(r"[A-Z](?<![\w].)[A-Z][0-9]{2}(?:[ \-]?[A-Z0-9]){11,30}", re.IGNORECASE | re.ASCII)
_IBAN_GROUP_END = re.compile(r"(?=[ \-])")
_CARD_CHAIN = re.compile(r"[0-9](?<![\w+.,/].)(?<![0-9]-.)[0-9]*(?:[ \-][0-9]+)*")

_CARD_LENGTHS_ALL = frozenset(range(12, 20))
_CARD_LENGTHS_16_19 = frozenset(range(16, 20))
_CARD_LENGTHS_14_19 = frozenset(range(14, 20))
# Issuer identification ranges: (prefix length, low, high, card lengths), by first digit. Maestro and the
# UnionPay/Discover/RuPay family share 6 and the 50/56-58 ranges, so those accept every length from 12 to 19.
_ISSUERS: dict[str, tuple[tuple[int, int, int, frozenset[int]], ...]] = {
    "0": ((4, 604, 604, _CARD_LENGTHS_ALL),),  # Maestro 0604
    "1": ((1, 1, 1, frozenset({15})),),  # UATP; old JCB 1800
    "2": (
        (4, 2200, 2205, _CARD_LENGTHS_16_19),  # Mir, Borica
        (4, 2221, 2720, frozenset({16})),  # Mastercard 2-series
        (4, 2131, 2131, frozenset({15})),  # old JCB
    ),
    "3": (
        (2, 34, 34, frozenset({15})),  # American Express
        (2, 37, 37, frozenset({15})),
        (3, 300, 305, _CARD_LENGTHS_14_19),  # Diners Club
        (4, 3095, 3095, _CARD_LENGTHS_14_19),
        (2, 36, 36, _CARD_LENGTHS_14_19),
        (2, 38, 39, _CARD_LENGTHS_14_19),
        (2, 35, 35, _CARD_LENGTHS_16_19),  # JCB, RuPay 353/356, LankaPay
    ),
    "4": ((1, 4, 4, frozenset({13, 16, 19})),),  # Visa (19 digits included)
    "5": (
        (2, 51, 55, frozenset({16})),  # Mastercard
        (2, 50, 50, _CARD_LENGTHS_ALL),  # Maestro, Verve, Dankort, RuPay 508
        (2, 56, 58, _CARD_LENGTHS_ALL),  # Maestro
    ),
    "6": ((1, 6, 6, _CARD_LENGTHS_ALL),),  # Maestro, Discover, UnionPay, RuPay, Troy, InstaPayment
    "8": (
        (2, 81, 82, _CARD_LENGTHS_16_19),  # RuPay, UnionPay
        (4, 8600, 8600, frozenset({16})),  # UzCard
    ),
    "9": (
        (4, 9792, 9792, frozenset({16})),  # Troy
        (4, 9860, 9860, frozenset({16})),  # Humo
    ),
}
_LUHN_DOUBLED = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)

# Which detectors a validated finding silences when a phone candidate overlaps it.
_OUTRANKS_PHONE = frozenset(
    {Entity.CREDIT_CARD, Entity.IBAN, Entity.NATIONAL_ID, Entity.IP_ADDRESS, Entity.MAC_ADDRESS, Entity.DATE_OF_BIRTH}
)


def luhn_ok(digits: str) -> bool:
    """Whether the ASCII digit string ``digits`` ends in a correct Luhn check digit."""
    total = sum(int(d) for d in digits[-1::-2]) + sum(_LUHN_DOUBLED[int(d)] for d in digits[-2::-2])
    return total % 10 == 0


def card_issuer_ok(digits: str) -> bool:
    """Whether ``digits`` starts with a payment card issuer's prefix and has a length that issuer uses."""
    length = len(digits)
    for size, low, high, lengths in _ISSUERS.get(digits[:1], ()):
        if length in lengths and low <= int(digits[:size]) <= high:
            return True
    return False


def _card_shape_ok(groups: Sequence[str]) -> bool:
    # Printed cards group 4-4-4-4(-3), 4-6-5 or 4-6-4; a first group of 1-3 digits is a different number.
    if len(groups) == 1:
        return True
    return 4 <= len(groups[0]) <= 6 and all(3 <= len(g) <= 6 for g in groups[1:-1]) and len(groups[-1]) <= 6


def _find_cards(text: str, taken: Sequence[tuple[int, int]]) -> Iterator[tuple[int, int]]:
    for chain in _CARD_CHAIN.finditer(text):
        value, offset = chain.group(), chain.start()
        if len(value) < 12 or (taken and _overlaps(offset, chain.end(), taken)):
            continue  # fewer than 12 digits, or digits an IBAN explains
        groups = value.replace("-", " ").split(" ")  # separators are single characters
        if chain.end() < len(text) and (text[chain.end()].isalnum() or text[chain.end()] == "_"):
            groups.pop()  # the last group is glued to a word
        starts = [0]
        for group in groups:
            starts.append(starts[-1] + len(group) + 1)
        first = 0
        while first < len(groups):
            if first and _continues(value, groups, starts, first):
                first += 1  # the tail of a longer uniform number ("Serial 1234-5678-9012-3456") is no card
                continue
            # The windows of whole groups starting at `first` that hold 12-19 digits, longest first.
            last, total = first, 0
            while last < len(groups) and total + len(groups[last]) <= 19:
                total += len(groups[last])
                last += 1
            found = False
            while last > first and total >= 12:
                window = groups[first:last]
                if _card_shape_ok(window):
                    digits = "".join(window)
                    if card_issuer_ok(digits) and luhn_ok(digits):
                        yield offset + starts[first], offset + starts[last] - 1
                        first, found = last, True
                        break
                last -= 1
                total -= len(groups[last])
            if not found:
                first += 1


def _continues(value: str, groups: Sequence[str], starts: Sequence[int], index: int) -> bool:
    """Whether group ``index`` continues the one before it: same size, same separator on both sides."""
    if len(groups[index - 1]) != len(groups[index]):
        return False
    after = starts[index + 1] - 1
    return after >= len(value) or value[after] == value[starts[index] - 1]


@lru_cache(maxsize=4096)
def _iban_ok(value: str) -> bool:
    """ISO 13616: the mod-97 check here (cheap, rejects 96 candidates in 97), then stdnum's per-country format."""
    compact = value.replace(" ", "").replace("-", "").upper()
    rearranged = compact[4:] + compact[:4]
    try:
        number = int("".join(str(int(c, 36)) for c in rearranged))
    except ValueError:
        return False
    return number % 97 == 1 and bool(_iban.is_valid(compact))


def _find_ibans(text: str) -> Iterator[tuple[int, int]]:
    for match in _IBAN.finditer(text):
        start, value = match.start(), match.group()
        # Try the whole candidate, then shorter ones ending before a separator ("DE89 … 00 AND more").
        for end in sorted({len(value), *(m.start() for m in _IBAN_GROUP_END.finditer(value))}, reverse=True):
            if end >= 15 and _iban_ok(value[:end]):
                yield start, start + end
                break


def _find_emails(text: str) -> Iterator[tuple[int, int]]:
    # Search only around each '@': a local part is at most 64 characters, a domain at most 255.
    done = 0
    at = text.find("@")
    while at != -1:
        match = _EMAIL.search(text, max(done, at - 64), at + 256)
        while match is not None and match.end() <= at:  # an address that ends before this '@' was judged already
            match = _EMAIL.search(text, match.end(), at + 256)
        if match is not None and match.start() < at < match.end():
            yield match.span()
            done = match.end()
        at = text.find("@", max(at + 1, done))


def _find_urls(text: str) -> Iterator[tuple[int, int]]:
    for match in _URL.finditer(text):
        value = match.group()
        value = value.rstrip(_URL_TRAILING)
        while value and value[-1] in ")]" and value.count("(" if value[-1] == ")" else "[") < value.count(value[-1]):
            value = value[:-1].rstrip(_URL_TRAILING)
        if _URL_HOST.match(value):
            yield match.start(), match.start() + len(value)


def _ipv4_ok(value: str) -> bool:
    return all(int(part) <= 255 and (len(part) == 1 or part[0] != "0") for part in value.split("."))


def _find_ips(text: str) -> Iterator[tuple[int, int, float]]:
    if text.count(".") >= 3:
        for match in _IPV4.finditer(text):
            start = match.start()
            if _ipv4_ok(match.group()) and not _NOT_AN_IP_BEFORE.search(text, max(0, start - 10), start):
                yield start, match.end(), 0.85
    if text.count(":") >= 2:
        for match in _IPV6.finditer(text):
            if _ipv6_ok(match.group()):
                yield match.start(), match.end(), 0.9


def _ipv6_ok(value: str) -> bool:
    groups = [part for part in value.split("%", 1)[0].split(":") if part]
    if len(groups) < 2:
        return False  # "::1", "::" and clock times are not worth reporting
    try:
        ipaddress.IPv6Address(value)
    except ValueError:
        return False
    return True


def _find_macs(text: str) -> Iterator[tuple[int, int, float]]:
    for match in _MAC.finditer(text):
        value = match.group()
        # Six pairs of plain digits joined by '-' or '.' are more often something else; keep them, lower.
        digits_only = match.group(1) != ":" and not any(c.isalpha() for c in value)
        yield match.start(), match.end(), 0.6 if digits_only else 0.85


def _overlaps(start: int, end: int, spans: Sequence[tuple[int, int]]) -> bool:
    return any(start < e and s < end for s, e in spans)


class PatternDetector:
    """Finds e-mails, phones, IPs, IBANs, cards, national ids, birth dates, URLs and MACs by pattern and validator.

    ``national_ids`` names the identity-number schemes to search (see
    :data:`~warden.privacy.national_ids.NATIONAL_ID_SCHEMES`), ``phone_regions`` the regions whose national
    formats are tried, ``entities`` restricts what is reported (types this detector cannot find are ignored,
    so the text analyzer may pass a policy's whole set). Unknown schemes or regions raise ``InvalidPolicy``.
    """

    __slots__ = ("_ids", "_on", "_regions", "_version")

    def __init__(
        self,
        *,
        national_ids: Sequence[str] = DEFAULT_NATIONAL_IDS,
        phone_regions: Sequence[str] = DEFAULT_PHONE_REGIONS,
        entities: Collection[Entity] | None = None,
    ) -> None:
        self._ids = NationalIdFinder(resolve_national_ids(national_ids))
        self._regions = resolve_phone_regions(phone_regions)
        self._on = PATTERN_ENTITIES if entities is None else PATTERN_ENTITIES & frozenset(entities)
        self._version = (
            f"warden-patterns/{RULES_VERSION} phonenumbers/{phonenumbers.__version__} "
            f"python-stdnum/{stdnum.__version__}"
        )

    @property
    def name(self) -> str:
        """``patterns``."""
        return _NAME

    @property
    def version(self) -> str:
        """This module's rules version with the versions of phonenumbers' and stdnum's metadata."""
        return self._version

    @property
    def entities(self) -> frozenset[Entity]:
        """The entity types this instance reports."""
        return self._on

    def find(self, text: str) -> list[Finding]:
        """Every validated finding in ``text``, sorted by position; overlaps are left to the caller."""
        found: list[Finding] = []
        if len(text) < 5:
            return found
        on = self._on
        digits = sum(map(text.count, _DIGITS))
        if "@" in text and Entity.EMAIL in on:
            found.extend(Finding(s, e, Entity.EMAIL, 0.9, _NAME) for s, e in _find_emails(text))
        if Entity.URL in on and ("://" in text or "www." in text or "WWW." in text):
            found.extend(Finding(s, e, Entity.URL, 0.85, _NAME) for s, e in _find_urls(text))
        if Entity.IP_ADDRESS in on and (digits >= 4 or "::" in text):
            found.extend(Finding(s, e, Entity.IP_ADDRESS, p, _NAME) for s, e, p in _find_ips(text))
        if Entity.MAC_ADDRESS in on and (text.count(":") >= 5 or text.count("-") >= 5 or text.count(".") >= 2):
            found.extend(Finding(s, e, Entity.MAC_ADDRESS, p, _NAME) for s, e, p in _find_macs(text))
        if digits < 2:
            return sorted(found) if len(found) > 1 else found
        if Entity.DATE_OF_BIRTH in on:
            found.extend(Finding(s, e, Entity.DATE_OF_BIRTH, 0.85, _NAME) for s, e in find_birth_dates(text))
        ibans = list(_find_ibans(text)) if Entity.IBAN in on and digits >= 6 else []
        found.extend(Finding(s, e, Entity.IBAN, 1.0, _NAME) for s, e in ibans)
        if Entity.CREDIT_CARD in on and digits >= 12:
            found.extend(Finding(s, e, Entity.CREDIT_CARD, 1.0, _NAME) for s, e in _find_cards(text, ibans))
        if Entity.NATIONAL_ID in on:
            ids = self._ids.find(text, digits)
            found.extend(Finding(s, e, Entity.NATIONAL_ID, p, _NAME) for s, e, p in ids if not _overlaps(s, e, ibans))
        if Entity.PHONE in on and digits >= 7:
            taken = [(f.start, f.end) for f in found if f.entity in _OUTRANKS_PHONE]
            found.extend(Finding(s, e, Entity.PHONE, p, _NAME) for s, e, p in find_phones(text, self._regions, taken))
        if len(found) > 1:
            found.sort()
        return found

    def find_many(self, texts: Sequence[str]) -> list[list[Finding]]:
        """``find`` over each text, in order."""
        find = self.find
        return [find(text) for text in texts]
