"""Phone numbers: international and national formats, extensions inside the span, and what is not a phone."""

from __future__ import annotations

import pytest

from warden.errors import InvalidPolicy
from warden.privacy.entities import Entity
from warden.privacy.patterns import PatternDetector
from warden.privacy.phones import DEFAULT_PHONE_REGIONS, find_phones, resolve_phone_regions

DETECTOR = PatternDetector()


def phones(text: str, detector: PatternDetector = DETECTOR) -> list[tuple[str, float]]:
    return [(text[f.start : f.end], f.score) for f in detector.find(text) if f.entity is Entity.PHONE]


@pytest.mark.parametrize(
    "value",
    [
        # international, with + or an international prefix
        "+44 20 7946 0958",
        "0044 20 7946 0958",
        "011 44 20 7946 0958",
        "+44(0)20 7946 0958",
        "+49 (0) 30 1234567",
        "+1 (202) 555-0143",
        "+12025550143",
        "+33 1 23 45 67 89",
        "+31 6 12345678",
        "+34 912 345 678",
        "+39 06 1234 5678",
        "+86 138 0013 8000",
        "+91 98765 43210",
        "+61 412 345 678",
        # national formats of the default regions
        "(202) 555-0143",
        "202.555.0143",
        "202-555-0143",
        "1-800-555-0199",
        "020 7946 0958",
        "(0161) 496 0066",
        "030 1234567",
        "030/1234567",
        "01 23 45 67 89",
        "06.12.34.56.78",
        "06 12345678",
        "091 234 56 78",
        "912 345 678",
        "06 1234 5678",
        "347 123 4567",
        "138 0013 8000",
        "010 1234 5678",
        "022 2345 6789",
        "(02) 9876 5432",
        "0412 345 678",
    ],
)
def test_a_phone_number_is_found_exactly(value: str) -> None:
    for text in (f"Call {value} today.", f"({value})", value):
        assert [v for v, _ in phones(text)] == [value], text


@pytest.mark.parametrize(
    "value",
    [
        "(555) 123-4567 x123",
        "206.269.0743x9150",
        "+1-780-563-6083x7783",
        "202-555-0143 ext. 123",
        "202-555-0143 ext 1234",
        "202-555-0143, ext. 12",
        "202-555-0143 #123",
        "+44 20 7946 0958 extension 12",
        "030 1234567 x 12",
    ],
)
def test_an_extension_is_inside_the_span(value: str) -> None:
    assert [v for v, _ in phones(f"Reach me at {value}, thanks")] == [value]


@pytest.mark.parametrize(
    ("text", "score"),
    [
        ("+44 20 7946 0958", 0.9),  # valid, international
        ("030 1234567", 0.9),  # valid, grouped
        ("2025550143", 0.7),  # valid, one bare run
        ("+1-962-945-9571", 0.6),  # possible only: area code 962 is unassigned
        ("(00326) 37931", 0.5),  # neither, but a trunk-prefixed area code in parentheses
        ("Tel: 00008063608", 0.5),  # neither, but a phone word right before it
    ],
)
def test_scores_tell_how_sure_the_reading_is(text: str, score: float) -> None:
    assert [s for _, s in phones(text)] == [score]


@pytest.mark.parametrize(
    "text",
    [
        "in 2024",
        "Order #12345678",
        "Order 12345678 shipped",
        "total 1.234.567 EUR",
        "pop. 1 234 567",
        "pi is 3.14159265358979",
        "on 12.03.1984 and 2024-03-12 and 12/03/1984",
        "host 192.168.100.200",
        "SSN 123-45-6789",
        "ISBN 978-3-16-148410-0",
        "invoice 2024-000123",
        "lot 2023/04/15-001",
        "at 40.7128 -74.0060",
        "account 0012345678",
        "036-438-7",
        "ID12345678901",
        "12345678901abc",
        "5551234567@txt.example.com",
        "Ref 1234 5678 90",
        "Serial 5454 0611 4307 0",
        "call me later",
    ],
)
def test_numbers_that_are_something_else_are_not_phones(text: str) -> None:
    assert phones(text) == []


def test_two_numbers_side_by_side_are_two_findings() -> None:
    assert [v for v, _ in phones("Tel 030 1234567 0171 2345678")] == ["030 1234567", "0171 2345678"]


def test_a_number_after_a_short_label_is_found_alone() -> None:
    assert [v for v, _ in phones("Room 12 030 1234567")] == ["030 1234567"]


def test_digits_explained_by_a_card_are_not_read_again_as_a_phone() -> None:
    text = "card 4111 1111 1111 1111"
    assert phones(text) == []
    assert list(find_phones("x 030 1234567", DEFAULT_PHONE_REGIONS, taken=[(2, 5)])) == []


def test_national_formats_are_read_only_in_configured_regions() -> None:
    us_only = PatternDetector(phone_regions=["US"])
    assert phones("Ref 030 1234567", PatternDetector(phone_regions=["DE"])) == [("030 1234567", 0.9)]
    assert phones("Ref 030 1234567", us_only) == [("030 1234567", 0.5)]  # phone-shaped, not validated
    assert [v for v, _ in phones("Tel +49 30 1234567", us_only)] == ["+49 30 1234567"]  # international still
    assert [v for v, _ in phones("Tel (202) 555-0143", us_only)] == ["(202) 555-0143"]


def test_region_codes_are_upper_cased_and_deduplicated() -> None:
    assert resolve_phone_regions(["us", "US", "de"]) == ("US", "DE")


@pytest.mark.parametrize("regions", [["UK"], ["US", "XX"], "US"])
def test_when_a_region_is_unknown_then_invalid_policy(regions: list[str] | str) -> None:
    with pytest.raises(InvalidPolicy) as raised:
        resolve_phone_regions(regions)
    assert raised.value.where == "phone_regions"


@pytest.mark.parametrize("locale", ["en_US", "en_GB", "de_DE", "fr_FR", "es_ES", "it_IT", "nl_NL"])
def test_faker_phone_numbers_are_found_whole(locale: str) -> None:
    faker = pytest.importorskip("faker")
    fake = faker.Faker(locale)
    fake.seed_instance(20240501)
    values = [fake.phone_number() for _ in range(300)]

    def covered(template: str, value: str, entities: set[Entity]) -> bool:
        text = template.format(value)
        start = text.index(value)
        end = start + len(value)
        return any(f.start <= start and end <= f.end for f in DETECTOR.find(text) if f.entity in entities)

    # With a phone word before it, every number is found as a phone.
    assert [v for v in values if not covered("Please call me on {} tomorrow.", v, {Entity.PHONE})] == []
    # Without one, Faker's bare "00…" runs ("00008063608", under 2% of de_DE) read as zero-padded numbers.
    missed = [v for v in values if not covered("Reference: {}.", v, set(Entity))]
    assert len(missed) <= 6, missed
