"""Street addresses in free text: one case table per style, on one line and over several lines."""

from __future__ import annotations

import pytest

from warden.privacy.addresses import AddressDetector
from warden.privacy.entities import Entity

DETECTOR = AddressDetector()

# (locale, address as written on an envelope); each must be found whole, on one line or on several.
ADDRESSES = [
    ("en_US", "1777 Kramer Court\nJohnsonfurt, NE 80119"),
    ("en_US", "37406 Jacob Stream Suite 158\nRomeroborough, ME 37746"),
    ("en_US", "890 Bowers View Apt. 883\nHerringfort, VI 48307"),
    ("en_US", "04135 Marvin Via\nNorth Kristabury, AZ 75718"),
    ("en_US", "PSC 1609, Box 7535\nAPO AP 08756"),
    ("en_US", "Unit 2345 Box 6789\nDPO AE 12345"),
    ("en_US", "USNS Smith\nFPO AA 34021"),
    ("en_US", "PO Box 1234\nSpringfield, IL 62704"),
    ("en_GB", "17 Jones Light\nNorth Holly\nS6 7LJ"),
    ("en_GB", "Flat 98m\nJones Knolls\nWardside\nN7K 3GX"),
    ("en_GB", "Studio 25J\nHopkins Shore\nPort Benhaven\nIG70 0NZ"),
    ("en_GB", "4 Brett Stravenue\nBuckleyborough\nGL9 8RY"),
    ("de_DE", "Drubinstraße 47-26\n06690 Groß-Gerau"),
    ("de_DE", "Franz-Xaver-Pergande-Weg 38/88\n85955 Ebersberg"),
    ("de_DE", "Röhrichtweg 52\n58683 Güstrow"),
    ("de_DE", "Berliner Straße 12a\n10115 Berlin"),
    ("de_DE", "Am Markt 5\n53111 Bonn"),
    ("de_DE", "Linkeweg 7\n67360 Rothenburg ob der Tauber"),
    ("fr_FR", "5, avenue Samson\n57583 LacroixBourg"),
    ("fr_FR", "3, chemin de Mathieu\n95440 Briand-sur-Mer"),
    ("fr_FR", "boulevard Lévy\n29514 Barreboeuf"),
    ("fr_FR", "458, rue Laurence Chevalier\n06945 Saint Eugène-sur-Mer"),
    ("es_ES", "Via de Ana Sofía Sancho 46\nMadrid, 02857"),
    ("es_ES", "Paseo de Joan Ojeda 83 Piso 0\nNavarra, 43093"),
    ("es_ES", "Calle de Alicia Pastor 983\nMadrid, 24382"),
    ("es_ES", "C. Morena Jáuregui 9\nCáceres, 50237"),
    ("it_IT", "Strada Taliercio, 47\n56011, Gabella (PI)"),
    ("it_IT", "Vicolo Claudio, 0 Appartamento 6\n07044, Ittiri (SS)"),
    ("it_IT", "Borgo Galiazzo, 94\n47023, Sant'Egidio (FC)"),
    ("it_IT", "Viale Orazio, 51\n43043, Ostia Di Borgo Val Di Taro (PR)"),
    ("nl_NL", "Gerritsingel 7\n1317 YB\n's-Heer Hendrikskinderen"),
    ("nl_NL", "Ayoubweg 06\n4608WC\nUffelte"),
    ("nl_NL", "Emmabaan 293\n7941 NS\nTull en 't Waal"),
    ("nl_NL", "Suzering 46\n7151 LU\n2e Valthermond"),
]

# Street lines without a locality, inside sentences.
STREET_LINES = [
    ("Please ship it to 753 Padilla Circles tomorrow.", "753 Padilla Circles"),
    ("She moved to Flat 4, Marian Tunnel last year.", "Flat 4, Marian Tunnel"),
    ("Er wohnt in der Kobeltgasse 69 seit Mai.", "Kobeltgasse 69"),
    ("Lieferung an Am Markt 5 bitte.", "Am Markt 5"),
    ("Il habite au 12, rue de la Paix depuis 2019.", "12, rue de la Paix"),
    ("Vive en Calle Mayor 7 Puerta 2 con su hermana.", "Calle Mayor 7 Puerta 2"),
    ("Abita in Via Roma, 15 Piano 3 dal 2010.", "Via Roma, 15 Piano 3"),
    ("Hij woont op de Ameliasingel 846 in het centrum.", "Ameliasingel 846"),
    ("Send the cheque to P.O. Box 42 please.", "P.O. Box 42"),
    ("Schreiben Sie an Postfach 1234.", "Postfach 1234"),
]

# Prose with numbers and capitalised words that is not an address.
NOT_ADDRESSES = [
    "Order 48213 shipped in 12 boxes; 7 items were back-ordered.",
    "Version 2.4.1 fixes 37 issues in the Payment module.",
    "Room 204 is booked from 9:00 to 12:30 for the review.",
    "Revenue grew 12% to $3.4 million in Q3 2023.",
    "String 5 is loose and the Firewall 2 rules need review.",
    "Horizontal 5thgeneration ability now ships with a 6-month warranty.",
    "This opens a new avenue for growth in 2024.",
    "Jurassic Park 3 was on TV at 8 pm.",
    "Spring 2023 sales beat Winter 2022 by 4 points.",
    "We need 3 Green Apples and 2 Red Onions.",
    "Meet me at Gate 12 before 10:15.",
    "Via email, 3 customers asked about the price.",
]


def spans(text: str) -> list[str]:
    return [text[f.start : f.end] for f in DETECTOR.find(text)]


@pytest.mark.parametrize(("locale", "address"), ADDRESSES, ids=[f"{loc}-{a.split()[0]}" for loc, a in ADDRESSES])
def test_when_an_address_is_written_on_several_lines_then_it_is_found_whole(locale: str, address: str) -> None:
    assert spans(address) == [address], locale


@pytest.mark.parametrize(("locale", "address"), ADDRESSES, ids=[f"{loc}-{a.split()[0]}" for loc, a in ADDRESSES])
def test_when_an_address_is_written_on_one_line_inside_a_sentence_then_it_is_found_whole(
    locale: str, address: str
) -> None:
    one_line = ", ".join(address.splitlines())
    text = f"Please update the address to {one_line}. Thanks!"
    assert spans(text) == [one_line], locale


@pytest.mark.parametrize(("text", "street"), STREET_LINES)
def test_when_a_street_line_stands_alone_in_a_sentence_then_only_it_is_found(text: str, street: str) -> None:
    assert spans(text) == [street]


@pytest.mark.parametrize("text", NOT_ADDRESSES)
def test_when_prose_has_numbers_and_capitals_then_no_address_is_found(text: str) -> None:
    assert spans(text) == []


@pytest.mark.parametrize(
    "address",
    ["12 Baker Street, London NW1 6XE", "10 Downing Street, London SW1A 2AA", "1 Infinite Loop, Cupertino CA 95014"],
)
def test_when_the_postcode_follows_the_town_after_a_space_then_it_is_part_of_the_address(address: str) -> None:
    # The town once took the postcode's letters as a word ("London NW") and left "1 6XE" in the clear.
    assert spans(f"Visit {address}.") == [address]


def test_when_a_street_word_also_ends_english_words_then_a_postcode_is_needed() -> None:
    assert spans("Roggering 93 is where we met.") == []
    assert spans("Roggering 93, 66057 Stadtroda") == ["Roggering 93, 66057 Stadtroda"]


def test_when_a_french_street_has_no_number_then_a_postcode_is_needed() -> None:
    assert spans("A walk down avenue Victor Hugo in 2 hours.") == []
    assert spans("boulevard Lévy, 29514 Barreboeuf") == ["boulevard Lévy, 29514 Barreboeuf"]


def test_when_an_address_has_a_postcode_then_it_scores_higher_than_a_street_alone() -> None:
    (full,) = DETECTOR.find("1777 Kramer Court, Johnsonfurt, NE 80119")
    (street,) = DETECTOR.find("Ship it to 1777 Kramer Court today.")
    assert full.score > street.score >= 0.5
    assert full.entity is street.entity is Entity.ADDRESS
    assert full.detector == "addresses"


def test_when_a_text_has_no_digit_then_nothing_is_searched() -> None:
    assert DETECTOR.find("Kramer Court, Johnsonfurt") == []


def test_when_many_texts_are_given_then_each_gets_its_own_findings() -> None:
    texts = ["Röhrichtweg 52, 58683 Güstrow", "no address here", "753 Padilla Circles"]
    assert [len(found) for found in DETECTOR.find_many(texts)] == [1, 0, 1]


def test_the_detector_reports_addresses_under_a_stable_name_and_version() -> None:
    assert DETECTOR.name == "addresses"
    assert DETECTOR.entities == frozenset({Entity.ADDRESS})
    assert DETECTOR.version
