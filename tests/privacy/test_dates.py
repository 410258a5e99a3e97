"""Dates: ``parse_date`` on a value, and birth dates in free text found by their context word."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from warden.privacy.dates import BIRTH_GAP, find_birth_dates, parse_date
from warden.privacy.entities import Entity
from warden.privacy.patterns import PatternDetector

DETECTOR = PatternDetector(entities={Entity.DATE_OF_BIRTH})


def births(text: str) -> list[str]:
    return [text[f.start : f.end] for f in DETECTOR.find(text)]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1984-03-12", dt.date(1984, 3, 12)),
        ("1984/3/12", dt.date(1984, 3, 12)),
        ("12.03.1984", dt.date(1984, 3, 12)),
        ("12.3.1984", dt.date(1984, 3, 12)),
        ("12/03/1984", dt.date(1984, 3, 12)),  # day first by default
        ("03/31/1984", dt.date(1984, 3, 31)),  # no month 31: the other reading
        ("12-03-84", dt.date(1984, 3, 12)),
        ("12-03-05", dt.date(2005, 3, 12)),  # two-digit years below 69 are 20yy
        ("12 March 1984", dt.date(1984, 3, 12)),
        ("12th of March 1984", dt.date(1984, 3, 12)),
        ("March 12, 1984", dt.date(1984, 3, 12)),
        ("Sept. 3, 1984", dt.date(1984, 9, 3)),
        ("12. März 1984", dt.date(1984, 3, 12)),
        ("1er mars 1984", dt.date(1984, 3, 1)),
        ("12 de marzo de 1984", dt.date(1984, 3, 12)),
        ("12 marzo 1984", dt.date(1984, 3, 12)),
        ("12 maart 1984", dt.date(1984, 3, 12)),
        ("  1984-03-12  ", dt.date(1984, 3, 12)),
        ("1984-03-12T10:00:00Z", dt.date(1984, 3, 12)),
        ("1984-03-12 10:00:00.123+01:00", dt.date(1984, 3, 12)),
    ],
)
def test_parse_date_reads_a_value_that_is_a_date(value: str, expected: dt.date) -> None:
    assert parse_date(value) == expected


def test_parse_date_can_read_month_first() -> None:
    assert parse_date("03/04/1984", day_first=False) == dt.date(1984, 3, 4)
    assert parse_date("03/04/1984") == dt.date(1984, 4, 3)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "1984",
        "March 1984",
        "31/02/1984",
        "13/13/1984",
        "1984-13-01",
        "12.03.1984 and more",
        "12/03/1984/5",
        "hello",
        "12:30",
        "3.14",
        "1.2.3",
        "12 Marchx 1984",
        "12.03.1750",
        "12.03.2150",
        "x" * 100,
    ],
)
def test_parse_date_refuses_anything_else(value: str) -> None:
    assert parse_date(value) is None


@given(st.dates(min_value=dt.date(1800, 1, 1), max_value=dt.date(2099, 12, 31)))
def test_parse_date_reads_back_what_strftime_writes(day: dt.date) -> None:
    assert parse_date(day.isoformat()) == day
    assert parse_date(f"{day.day:02d}.{day.month:02d}.{day.year}") == day
    assert parse_date(f"{day.day} {day.strftime('%B')} {day.year}") == day
    assert parse_date(f"{day.strftime('%b')} {day.day}, {day.year}") == day


@pytest.mark.parametrize(
    ("text", "date"),
    [
        ("Patient born on 12 March 1984, no allergies.", "12 March 1984"),
        ("DOB: 03/12/84", "03/12/84"),
        ("D.O.B. 1984-03-12", "1984-03-12"),
        ("date of birth 12.03.1984", "12.03.1984"),
        ("Birthdate: March 12, 1984", "March 12, 1984"),
        ("birthday is on 12/03/1984", "12/03/1984"),
        ("Jane Roe (b. 12 March 1984)", "12 March 1984"),
        ("Max Muster, geb. 12.03.1984", "12.03.1984"),
        ("Geburtsdatum: 12. März 1984", "12. März 1984"),
        ("née le 1er mars 1984 à Lyon", "1er mars 1984"),
        ("nacido el 12 de marzo de 1984", "12 de marzo de 1984"),
        ("nato a Roma il 12/03/1984", "12/03/1984"),
        ("geboortedatum 12-03-1984", "12-03-1984"),
    ],
)
def test_a_date_after_a_birth_word_is_a_date_of_birth(text: str, date: str) -> None:
    assert births(text) == [date]


@pytest.mark.parametrize(
    "text",
    [
        "Seen on 12 March 1984 and 2024-05-02.",  # no birth word
        "NATO summit on 12 March 1984",  # "nato" is Italian only in lower case
        "born 31/02/1984",  # no such day
        "born in 1984",  # a year is not a date
        "born " + "x" * BIRTH_GAP + " 12.03.1984",  # too far away
        "reborn 12.03.1984",
        "DOB: 12.03.1750",
    ],
)
def test_other_dates_are_not_dates_of_birth(text: str) -> None:
    assert births(text) == []


def test_find_birth_dates_gives_spans() -> None:
    text = "DOB 1984-03-12; brother born 1986-07-01."
    assert [text[s:e] for s, e in find_birth_dates(text)] == ["1984-03-12", "1986-07-01"]
