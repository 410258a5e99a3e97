"""National identity numbers: each scheme's shapes, its validator, and the context some shapes need."""

from __future__ import annotations

import pytest

from warden.errors import InvalidPolicy
from warden.privacy.entities import Entity
from warden.privacy.national_ids import (
    DEFAULT_NATIONAL_IDS,
    NATIONAL_ID_SCHEMES,
    NationalIdFinder,
    NationalIdScheme,
    resolve_national_ids,
)
from warden.privacy.patterns import PatternDetector

EVERY_SCHEME = PatternDetector(national_ids=list(NATIONAL_ID_SCHEMES), entities={Entity.NATIONAL_ID})
DEFAULT = PatternDetector(entities={Entity.NATIONAL_ID})


def ids(text: str, detector: PatternDetector = EVERY_SCHEME) -> list[tuple[str, float]]:
    return [(text[f.start : f.end], f.score) for f in detector.find(text)]


@pytest.mark.parametrize(
    ("text", "value", "score"),
    [
        # us.ssn: dashed or spaced alone; nine bare digits only after a context word.
        ("SSN 123-45-6789.", "123-45-6789", 0.85),
        ("id 123 45 6789 on file", "123 45 6789", 0.85),
        ("social security number: 123456789", "123456789", 0.85),
        ("SSN#123456789", "123456789", 0.85),
        # gb.nino
        ("NINO AB 12 34 56 C", "AB 12 34 56 C", 0.85),
        ("ni AB123456C.", "AB123456C", 0.85),
        # de.idnr
        ("Steuer-ID 36 574 261 809", "36 574 261 809", 1.0),
        ("IdNr. 36574261809", "36574261809", 1.0),
        # fr.nir, Corsica included
        ("NIR 2 95 10 99 126 111 93", "2 95 10 99 126 111 93", 1.0),
        ("sécu 295109912611193", "295109912611193", 1.0),
        ("NIR 253072B07300470", "253072B07300470", 1.0),
        # es.dni and es.nie
        ("DNI 54362315K", "54362315K", 1.0),
        ("DNI 54362315-K", "54362315-K", 1.0),
        ("NIE X2482300W", "X2482300W", 1.0),
        ("NIE X-2482300-W", "X-2482300-W", 1.0),
        # it.codicefiscale, either case
        ("CF RCCMNL83S18D969H", "RCCMNL83S18D969H", 1.0),
        ("cf rccmnl83s18d969h", "rccmnl83s18d969h", 1.0),
        # cn.ric
        ("身份证 11010519491231002X", "11010519491231002X", 1.0),
        # nl.bsn: the dotted form alone, bare digits after a context word
        ("BSN 1112.22.333", "1112.22.333", 1.0),
        ("burgerservicenummer: 111222333", "111222333", 1.0),
        # in.aadhaar: grouped alone, bare after a context word
        ("2341 2341 2346", "2341 2341 2346", 1.0),
        ("Aadhaar no. 234123412346", "234123412346", 1.0),
        # opt-in schemes
        ("SIN 123-456-782", "123-456-782", 1.0),
        ("social insurance 123456782", "123456782", 1.0),
        ("NHS number 943 476 5919", "943 476 5919", 1.0),
        ("PESEL 44051401359", "44051401359", 1.0),
    ],
)
def test_a_valid_identity_number_is_found_exactly(text: str, value: str, score: float) -> None:
    assert ids(text) == [(value, score)]


@pytest.mark.parametrize(
    "text",
    [
        "SSN 000-12-3456",  # area 000 is never issued
        "SSN 666-12-3456",
        "SSN 912-34-5678",  # 9xx is not issued
        "SSN 123-00-4567",
        "SSN 123-45-0000",
        "SSN 078-05-1120",  # the Woolworth wallet number
        "ref 123456789",  # bare nine digits without context
        "SSN 123-45 6789",  # mixed separators
        "QQ 12 34 56 C",  # Q is never a first letter
        "AO 12 34 56 C",  # O is never a second letter
        "GB 12 34 56 A",  # never allocated
        "AB 12 34 56 E",  # suffix beyond D
        "IdNr 36574261800",  # check digit wrong
        "NIR 295109912611199",
        "DNI 54362315Z",
        "NIE X2482300A",
        "CF RCCMNL83S18D969A",
        "RIC 110105194912310021",
        "BSN 1112.22.334",
        "number 111222333",  # a valid BSN, but nothing says it is one
        "2341 2341 2347",
        "order 234123412346",  # a valid Aadhaar, but nothing says it is one
        "NHS 943 476 5918",
        "ticket 943 476 5919",  # a valid NHS number, but nothing says it is one
        "x123-45-6789",  # glued to a word
        "+123-45-6789",
        "123-45-6789-0",  # part of a longer number
    ],
)
def test_an_invalid_or_unintroduced_number_is_not_reported(text: str) -> None:
    assert ids(text) == []


def test_context_words_count_only_just_before_the_value() -> None:
    far = "SSN " + "x" * 60 + " 123456789"
    assert ids(far) == []
    assert ids("SSN 123456789") == [("123456789", 0.85)]


@pytest.mark.parametrize("text", ["SIN 123-456-782", "NHS number 943 476 5919", "PESEL 44051401359"])
def test_opt_in_schemes_are_not_searched_by_default(text: str) -> None:
    assert ids(text, DEFAULT) == []


def test_defaults_are_known_schemes_and_leave_out_the_opt_in_ones() -> None:
    assert set(DEFAULT_NATIONAL_IDS) <= set(NATIONAL_ID_SCHEMES)
    assert {"ca.sin", "gb.nhs", "pl.pesel"}.isdisjoint(DEFAULT_NATIONAL_IDS)


def test_resolving_keeps_order_and_drops_repeats() -> None:
    assert [s.name for s in resolve_national_ids(["fr.nir", "us.ssn", "fr.nir"])] == ["fr.nir", "us.ssn"]


def test_when_a_name_is_unknown_then_invalid_policy_lists_the_known_names() -> None:
    with pytest.raises(InvalidPolicy) as raised:
        resolve_national_ids(["de.idnr", "de.steuerid", "uk.nino"])
    assert raised.value.where == "national_ids"
    assert "'de.steuerid', 'uk.nino'" in raised.value.message
    assert ", ".join(sorted(NATIONAL_ID_SCHEMES)) in raised.value.message


def test_a_scheme_with_contextual_shapes_needs_context_words() -> None:
    with pytest.raises(ValueError, match="go together"):
        NationalIdScheme(name="xx.id", title="X", is_valid=bool, score=1.0, min_digits=5, contextual=r"[0-9]{5}")


def test_the_finder_reports_every_scheme_that_accepts_a_value() -> None:
    finder = NationalIdFinder(resolve_national_ids(["us.ssn", "ca.sin"]))
    text = "SSN/SIN 123-456-782 and SSN 123-45-6789"
    assert [(text[s:e], p) for s, e, p in finder.find(text, digits=18)] == [
        ("123-45-6789", 0.85),
        ("123-456-782", 1.0),
    ]
    assert list(NationalIdFinder(()).find(text, digits=18)) == []
