"""Postal addresses in free text, found by the shape of a street line in seven European and American styles.

spaCy's small English model rarely marks a street address as one entity (it calls "Gibbs Prairie" an
organisation and "Via Combi" a person), so addresses are found by their form instead:

- English (US, UK): ``753 Padilla Circles``, ``Flat 4, Marian Tunnel``, ``564 Ann Bridge Suite 150`` — a house
  number, capitalised words and a street suffix from the USPS list (Street, Avenue, Prairie, Stravenue…)
  or a British one (Close, Mews, Crescent…); a unit (Apt., Suite, Flat, Studio, Unit, #) before or after;
- German and Dutch: ``Drubinstraße 47-26``, ``Franz-Xaver-Pergande-Weg 38/88``, ``Am Markt 5``,
  ``Ameliasingel 846`` — a name ending in a street word (-straße, -weg, -gasse, -platz, -straat, -laan,
  -singel, -gracht…) and a number;
- French: ``5, avenue Samson``, ``rue de Leblanc`` — an optional number, a street type, a name;
- Spanish and Italian: ``Calle de Alicia Pastor 983 Piso 2``, ``Via Combi, 51 Piano 1`` — a street type, a
  name, a number, then a floor, door or flat;
- boxes: ``PO Box 123``, ``Postfach 12 34``, ``PSC 1609, Box 7535``, ``Unit 2345 Box 6789``, ``USNS Smith``
  with their APO/FPO/DPO line.

After the street line, the locality is taken in as well, as far as it goes: a postcode (US state and ZIP,
UK, Dutch ``1234 AB``, five digits), a town (``North Holly``, ``Saint Éléonore-sur-Mer``, ``Urbino (PU)``),
separated by commas or line breaks, in either order. A town or a postcode alone is not reported: a city
is a quasi-identifier (the scanner counts it), not an address.

Capitalisation is part of the shape: letters with an upper case are those of Latin-1 (``A``–``Z``,
``À``–``Þ``), which covers the seven languages above but not, say, Polish ``Ł`` starting a street name.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

from warden.privacy.entities import Entity, Finding

_VERSION: Final = "1"

# Words: a capitalised one (Latin-1 upper case), any word, a house number.
_UP = "A-ZÀ-ÖØ-Þ"
_CAP = rf"[{_UP}][^\W\d_]*(?:['’-][^\W\d_]+)*\.?"
_ORD = r"\d{1,4}(?:st|nd|rd|th|e|er|ème)"
_NUM = r"\d{1,6}[A-Za-z]?(?:\s?[-/]\s?\d{1,6}[A-Za-z]?)?"


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


def _alternation(words: Sequence[str]) -> str:
    return "|".join(re.escape(word) for word in sorted(set(words), key=len, reverse=True))


# USPS street suffixes (Publication 28, appendix C1) with their common abbreviations, and British ones.
_EN_SUFFIXES = _words(
    """
Alley Aly Annex Arcade Avenue Ave Av Bayou Beach Bend Bluff Bluffs Bottom Boulevard Blvd Branch Bridge Brook
Brooks Burg Burgs Bypass Camp Canyon Cape Causeway Center Centers Centre Circle Circles Cir Cliff Cliffs Club
Common Commons Corner Corners Course Court Courts Ct Cove Coves Creek Crescent Cres Crest Crossing Crossroad
Crossroads Curve Dale Dam Divide Drive Drives Dr Estate Estates Expressway Expy Extension Extensions Fall Falls
Ferry Field Fields Flat Flats Ford Fords Forest Forge Forges Fork Forks Fort Freeway Fwy Garden Gardens Gdns
Gateway Glen Glens Green Greens Grove Groves Harbor Harbors Harbour Haven Heights Hts Highway Hwy Hill Hills
Hollow Inlet Island Islands Isle Junction Junctions Key Keys Knoll Knolls Lake Lakes Land Landing Lane Ln Light
Lights Loaf Lock Locks Lodge Loop Mall Manor Manors Meadow Meadows Mews Mill Mills Mission Motorway Mount Mountain
Mountains Neck Orchard Oval Overpass Park Parks Parkway Parkways Pkwy Pass Passage Path Pike Pine Pines Place Pl
Plain Plains Plaza Point Points Port Ports Prairie Radial Ramp Ranch Rapid Rapids Rest Ridge Ridges River Road
Roads Rd Route Row Rue Run Shoal Shoals Shore Shores Skyway Spring Springs Spur Spurs Square Squares Sq Station
Stravenue Stream Street Streets St Summit Terrace Ter Terr Throughway Trace Track Trafficway Trail Trl Tunnel
Turnpike Underpass Union Unions Valley Valleys Via Viaduct View Views Village Villages Ville Vista Walk Walks
Wall Way Ways Well Wells
Close Rise Parade Wharf Yard Drove Croft Chase Approach Broadway Embankment Gate Grange Hey Quay Wynd
"""
)

# German and Dutch street words, matched at the end of a name (Drubinstraße, Franz-Xaver-Pergande-Weg). The weak
# ones also end English words (string, firewall, horizontal, iPad), so a street with one needs a postcode after it.
_GERMANIC_ENDINGS = _words(
    """
straße strasse str. gasse weg platz allee damm ufer chaussee steig stieg pfad markt graben brücke siedlung
straat laan plein singel gracht kade steeg baan dijk dreef plantsoen burgwal hof
"""
)
_GERMANIC_WEAK_ENDINGS = _words(
    """
ring park wall wal berg feld tor tal pad erf veld hout brink weide garten gärten wiese grund höhe blick winkel
bogen promenade anger zeile kamp steg stätte leite haven boulevard kwartier akker
"""
)

_FR_TYPES = _words(
    "rue avenue av. boulevard bd chemin place impasse allée allee quai route cours square voie passage rond-point "
    "sentier cité villa faubourg hameau lieu-dit résidence esplanade parvis promenade montée traverse ruelle"
)
_ES_TYPES = _words(
    "Calle C/ C. Avenida Avda. Av. Plaza Pl. Paseo Pº Camino Carretera Ctra. Ronda Travesía Glorieta Rambla "
    "Alameda Pasaje Callejón Cuesta Cañada Vía Via Vial Urbanización Urb. Acceso Pasadizo Bulevar Costanilla "
    "Senda Subida Bajada Polígono Carrer Avinguda Passeig Plaça Rúa"
)
_IT_TYPES = _words(
    "Via Viale V.le Piazza P.za Piazzale Corso C.so Largo Vicolo Strada Borgo Contrada Lungomare Lungotevere "
    "Salita Vico Traversa Rotonda Incrocio Canale Stretto Calle Campo Fondamenta Località Loc. Frazione Fraz. "
    "Galleria Circonvallazione Passaggio Rampa Sentiero Piazzetta Molo Rione Giardino Parco"
)
_DE_PREPOSITIONS = (
    r"(?:Am|An\s+der|An\s+den|An\s+dem|Auf\s+der|Auf\s+dem|Im|In\s+der|In\s+den|Zum|Zur|Unter\s+den|Hinter\s+der)"
)
_BOXES = (
    r"P\.?\s?O\.?\s?Box|Post\s+Office\s+Box|PO\s+Box|Postfach|Postbus|Apartado(?:\s+de\s+Correos)?|"
    r"Casella\s+Postale|C\.P\.|Boîte\s+Postale|BP"
)
_PARTICLES = (
    r"(?:de|del|de\s+la|de\s+las|de\s+los|des|du|d['’]|di|da|della|dello|dei|degli|delle|la|le|les|l['’]|et|y|"
    r"van|von|der|den|het|'t|sur|sous|San|Santa|Sant['’]|S\.|St\.?)"
)


_UNIT_AFTER = (
    r"(?:,?\s*(?:(?:Apt|Apartment|Suite|Ste|Unit|Flat|Floor|Fl|Room|Rm|No|Nr|Piso|Puerta|Pta|Planta|Bajo|Esc|"
    r"Escalera|Piano|Appartamento|Interno|Int|Scala|bus|Bus|Stiege|Tür|Top|étage|Bât|Bâtiment|App)\b\.?|\#)"
    r"\s*[\w-]{1,6}\b)"
)
_UNIT_BEFORE = r"(?:(?:Flat|Studio|Apartment|Apt\.?|Unit|Suite|Room|Maisonette)\s+[\w-]{1,6},?\s+)"

_EN_STREET = (
    rf"(?:{_UNIT_BEFORE}(?:{_NUM},?\s+)?|{_NUM},?\s+)"
    rf"(?:(?:[NSEW]\.?|North|South|East|West|Old|Upper|Lower|Great|Little)\s+)?"
    rf"(?:(?:{_CAP}|{_ORD})[ \t]+){{1,4}}(?:{_alternation(_EN_SUFFIXES)})\b\.?"
    rf"(?:[ \t]+(?:[NSEW]|NE|NW|SE|SW)\b\.?)?{_UNIT_AFTER}*"
)
_GERMANIC_NUMBER = (
    r"[ \t]+\d{1,5}(?:\s?[A-Za-z]\b)?(?:\s?[-/]\s?\d{1,5}[A-Za-z]?)?(?:-?(?:hs|bis|I{1,3}|[A-Z])\b)?"
    rf"{_UNIT_AFTER}*"
)


def _germanic(endings: Sequence[str]) -> str:
    """A name ending in one of ``endings`` (as a suffix or a capitalised word of its own), then a number."""
    ending = f"(?i:{_alternation(endings)})"
    return rf"(?:(?:{_CAP}[ \t-])+(?=[{_UP}])[^\W\d_]*?|[{_UP}][^\W\d_]*?[^\W\d_]){ending}"


_GERMANIC_STREET = rf"(?:{_germanic(_GERMANIC_ENDINGS)}|{_DE_PREPOSITIONS}\s+{_CAP}(?:\s+{_CAP})?){_GERMANIC_NUMBER}"
_GERMANIC_WEAK_STREET = rf"{_germanic(_GERMANIC_WEAK_ENDINGS)}{_GERMANIC_NUMBER}"
_FR_STREET = (
    rf"(?:\d{{1,5}}(?:\s?(?:bis|ter|quater|[A-D])\b)?,?\s+)?(?i:{_alternation(_FR_TYPES)})\s+"
    rf"(?:{_PARTICLES}\s*)?{_CAP}(?:[ \t]+(?:{_PARTICLES}\s*)?{_CAP}){{0,3}}"
)
_ES_IT_STREET = (
    rf"(?:{_alternation([*_ES_TYPES, *_IT_TYPES])})\s+(?:{_PARTICLES}\s+)?(?:{_CAP}|{_ORD}|\d{{1,2}}\s+de\s+{_CAP})"
    rf"(?:[ \t]+(?:{_PARTICLES}\s+)?(?:{_CAP}|{_ORD})){{0,4}},?[ \t]+(?:{_NUM}|s/n|S/N)(?:\s*[ºª])?{_UNIT_AFTER}*"
)
_BOX = (
    rf"(?:(?:{_BOXES})\s*\d{{1,6}}(?:[ ]\d{{2,4}}\b)?"
    r"|(?:PSC|CMR|Unit)\s+\d{3,5},?\s+Box\s+\d{1,5}"
    rf"|(?:USNS|USNV|USS|USCGC)\s+{_CAP}(?=\s*(?:,|\n)\s*FPO))"
)
_STREET = re.compile(
    rf"(?<![\w.])(?:(?P<box>{_BOX})|(?P<fr>{_FR_STREET})|(?P<es>{_ES_IT_STREET})"
    rf"|(?P<de>{_GERMANIC_STREET})|(?P<en>{_EN_STREET})|(?P<weak>{_GERMANIC_WEAK_STREET}))"
)

# Locality pieces after a street line, separated by a comma, a line break or a space.
_US_ZIP = r"(?:[A-Z]{2}\s+\d{5}(?:-\d{4})?)"
_MILITARY = r"(?:[AFD]PO\s+A[AEP]\s+\d{5})"
_UK_POSTCODE = r"(?:[A-Z]{1,2}\d[A-Z\d]?\s?\d[A-Z]{2})"
_NL_POSTCODE = r"(?:\d{4}\s?[A-Z]{2})"
_POSTCODE = rf"(?:{_MILITARY}|{_US_ZIP}|{_UK_POSTCODE}|{_NL_POSTCODE}|(?:[A-Z]{{1,2}}-)?\d{{5}}|\d{{4}})(?![\w-])"
_TOWN_WORD = rf"(?:['’]s-|['’]t[ \t]+|\d{{1,2}}e[ \t]+)?[{_UP}][^\W\d_]*(?:\.?['’-][^\W\d_]+)*['’]?"
_TOWN_JOINER = rf"(?:{_PARTICLES}|sur|sous|am|an|ob|vor|vorm|der|im|upon|on|en|aan|op|bij|bei|in|sul|sulla|al|['’]t)"
_TOWN = (
    rf"(?:(?:{_TOWN_JOINER}[ \t]+)?{_TOWN_WORD}(?:[ \t/-]+(?:{_TOWN_JOINER}[ \t-]+){{0,2}}{_TOWN_WORD}){{0,6}}"
    rf"(?:\s+\([A-Z]{{2}}\))?)"
)
_LOCALITY = re.compile(
    rf"(?:,[ \t]*\n?|[ \t]*\n)[ \t]*(?:(?P<postcode>{_POSTCODE}(?:[ \t]+{_TOWN})?)"
    rf"|(?P<town_postcode>{_TOWN}[ \t]+{_POSTCODE})|(?P<town>{_TOWN}))"
)
_ANY_DIGIT = re.compile(r"\d")
_MAX_LOCALITY_PARTS = 3


class AddressDetector:
    """Finds street addresses (street line plus the locality after it) in free text; reports ``ADDRESS``.

    Pure regular expressions, so it needs nothing installed and runs on every text; a text without a digit
    is skipped at once (every pattern needs a house number, a box number or a postcode).
    """

    masked_input = False

    @property
    def name(self) -> str:
        """``addresses``."""
        return "addresses"

    @property
    def version(self) -> str:
        """The version of the address patterns."""
        return _VERSION

    @property
    def entities(self) -> frozenset[Entity]:
        """``ADDRESS`` only."""
        return frozenset({Entity.ADDRESS})

    def find(self, text: str) -> list[Finding]:
        """Every address in ``text``, each from its first street word to its last locality piece."""
        if not _ANY_DIGIT.search(text):
            return []
        found: list[Finding] = []
        position = 0
        while True:
            match = _STREET.search(text, position)
            if match is None:
                break
            start, end = match.span()
            end, postcode = _extend_locality(text, end)
            numbered = _ANY_DIGIT.search(text, start, match.end()) is not None
            if not postcode and (match.lastgroup == "weak" or (match.lastgroup == "fr" and not numbered)):
                # "avenue Samson" or "String 5" alone could be prose; with a postcode after them they are not.
                position = match.start() + 1
                continue
            score = 0.9 if postcode else 0.75
            found.append(Finding(start=start, end=end, entity=Entity.ADDRESS, score=score, detector=self.name))
            position = end
        return found

    def find_many(self, texts: Sequence[str]) -> list[list[Finding]]:
        """:meth:`find` over each text."""
        return [self.find(text) for text in texts]


def _extend_locality(text: str, end: int) -> tuple[int, bool]:
    """The end of the locality after a street line ending at ``end``, and whether it holds a postcode.

    Up to three pieces (postcode, town) are taken; a trailing town without a postcode after it is kept
    only when it directly follows the street line or a postcode (``12 Main St, Springfield``).
    """
    postcode = False
    confirmed = end
    towns_pending = 0
    for _ in range(_MAX_LOCALITY_PARTS):
        match = _LOCALITY.match(text, end)
        if match is None:
            break
        end = match.end()
        if match.lastgroup in ("postcode", "town_postcode"):  # "SW1A 2AA" or "London SW1A 2AA"
            postcode = True
            confirmed = end
            towns_pending = 0
        else:
            towns_pending += 1
            if towns_pending == 1:
                confirmed = end
    return confirmed, postcode
