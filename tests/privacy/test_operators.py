"""Column operators as properties: pseudonyms, encryption, masking, generalisation, date shifts, nulls, bad cells."""

from __future__ import annotations

import hmac
import re
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.privacy.conftest import KEY, OTHER_KEY
from warden.errors import InvalidArgument
from warden.privacy.keys import DeidKey
from warden.privacy.operators import (
    REDACTED,
    ColumnStats,
    DatePart,
    DateShift,
    Encrypt,
    GeneralizeDate,
    GeneralizeNumber,
    GeneralizePrefix,
    Hash,
    InvalidValue,
    Keep,
    Mask,
    OnInvalid,
    Operator,
    Redact,
    Rows,
    as_number,
    parse_when,
    placeholder,
)
from warden.privacy.operators import (
    DatePart as Part,
)

keys = st.binary(min_size=32, max_size=48).map(DeidKey)
cells = st.text(max_size=40)
NO_ROWS = Rows({}, 0)


def run(op: Operator, values: list[Any], rows: Rows = NO_ROWS) -> list[Any]:
    """Apply ``op`` to one chunk with fresh stats."""
    return op.apply(values, rows, ColumnStats())


def alnum(text: str) -> list[str]:
    return [c for c in text if c.isalnum()]


# --- keep, redact -------------------------------------------------------------------------------------------------


def test_when_keep_applies_then_values_nulls_and_types_are_unchanged_and_counted() -> None:
    stats = ColumnStats()
    values: list[Any] = ["a", None, 3, date(2020, 1, 2)]

    assert Keep().apply(values, NO_ROWS, stats) == ["a", None, 3, date(2020, 1, 2)]
    assert (stats.cells, stats.changed) == (4, 0)


@pytest.mark.parametrize(
    ("op", "expected"),
    [
        (Redact(), REDACTED),
        (Redact("<EMAIL>"), "<EMAIL>"),
        (Redact(placeholder("PHONE")), "<PHONE>"),
        (Redact(placeholder(None)), "<REDACTED>"),
    ],
)
def test_when_redact_applies_then_every_non_null_cell_is_the_placeholder(op: Redact, expected: str) -> None:
    stats = ColumnStats()

    assert op.apply(["x", None, 7], NO_ROWS, stats) == [expected, None, expected]
    assert (stats.cells, stats.changed) == (3, 2)


# --- hash ---------------------------------------------------------------------------------------------------------


@given(key=keys, value=cells)
def test_hash_is_deterministic_per_key_and_hex_of_its_length(key: DeidKey, value: str) -> None:
    op = Hash.from_key(key)

    first = op.pseudonym(value)

    assert first == Hash.from_key(key).pseudonym(value)
    assert re.fullmatch(r"[0-9a-f]{16}", first)
    assert first != value


@given(secret=st.binary(min_size=1, max_size=200), value=cells)
def test_hash_is_hmac_sha256_of_the_value_under_the_key(secret: bytes, value: str) -> None:
    # The operator keeps HMAC's two keyed states and copies them per value; the digest must be HMAC's own.
    expected = hmac.digest(secret, value.encode(), "sha256").hex()

    assert Hash(key=secret, length=64).pseudonym(value) == expected


@given(value=cells)
def test_hash_differs_across_keys(value: str) -> None:
    assert Hash.from_key(KEY).pseudonym(value) != Hash.from_key(OTHER_KEY).pseudonym(value)


@given(values=st.lists(cells, min_size=2, max_size=2, unique=True))
def test_hash_gives_different_values_different_pseudonyms(values: list[str]) -> None:
    op = Hash.from_key(KEY, length=32)

    assert op.pseudonym(values[0]) != op.pseudonym(values[1])


@given(value=cells, length=st.integers(8, 64), prefix=st.text(max_size=5))
def test_hash_pseudonyms_all_have_the_same_length(value: str, length: int, prefix: str) -> None:
    assert len(Hash.from_key(KEY, length=length, prefix=prefix).pseudonym(value)) == len(prefix) + length


@given(value=st.text(max_size=20))
def test_hash_case_insensitive_gives_every_case_folding_of_a_value_the_same_pseudonym(value: str) -> None:
    insensitive = Hash.from_key(KEY, case_insensitive=True)

    assert insensitive.pseudonym(value) == insensitive.pseudonym(value.casefold())
    if value.upper().casefold() == value.lower().casefold():
        assert insensitive.pseudonym(value.upper()) == insensitive.pseudonym(value.lower())


@given(value=st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ@.", min_size=1, max_size=20))
def test_hash_is_case_sensitive_unless_asked_otherwise(value: str) -> None:
    insensitive = Hash.from_key(KEY, case_insensitive=True)

    assert insensitive.pseudonym(value.upper()) == insensitive.pseudonym(value.lower())
    if value.upper() != value.lower():
        assert Hash.from_key(KEY).pseudonym(value.upper()) != Hash.from_key(KEY).pseudonym(value.lower())


def test_hash_keys_only_from_the_hash_purpose_and_keeps_nulls() -> None:
    op = Hash.from_key(KEY)

    assert op.key == KEY.derive("hash")
    assert run(op, ["ada@example.org", None, 42]) == [op.pseudonym("ada@example.org"), None, op.pseudonym("42")]
    assert "key" not in repr(op).replace("Hash(", "").split("length")[0]


@pytest.mark.parametrize("length", [0, 7, 65])
def test_when_the_hash_length_is_out_of_range_then_invalid_argument(length: int) -> None:
    with pytest.raises(InvalidArgument, match="between 8 and 64"):
        Hash.from_key(KEY, length=length)


# --- encrypt ------------------------------------------------------------------------------------------------------


@given(value=st.text(max_size=200), context=st.text(max_size=10))
def test_encrypt_round_trips_through_decrypt_and_is_deterministic(value: str, context: str) -> None:
    op = Encrypt.from_key(KEY, context=context)

    [token] = run(op, [value])

    assert token.startswith("enc:")
    assert op.decrypt(token) == value
    assert run(Encrypt.from_key(KEY, context=context), [value]) == [token]


@given(value=st.text(min_size=1, max_size=50))
def test_encrypt_tokens_do_not_decrypt_with_another_key_or_context(value: str) -> None:
    [token] = run(Encrypt.from_key(KEY, context="visits"), [value])

    with pytest.raises(InvalidArgument, match="does not decrypt"):
        Encrypt.from_key(OTHER_KEY, context="visits").decrypt(token)
    with pytest.raises(InvalidArgument, match="does not decrypt"):
        Encrypt.from_key(KEY, context="claims").decrypt(token)
    with pytest.raises(InvalidArgument, match="does not decrypt"):
        Encrypt.from_key(KEY).decrypt(token)


@pytest.mark.parametrize(
    ("token", "message"),
    [
        ("plain text", "not an encrypted value"),
        ("enc:", "does not decrypt"),
        ("enc:!!!!", "does not decrypt"),
        ("enc:AAAAAAAAAAAAAAAAAAAAAAAAAAAA", "does not decrypt"),
    ],
)
def test_when_a_token_is_not_one_of_ours_then_decrypt_refuses(token: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        Encrypt.from_key(KEY).decrypt(token)


def test_encrypt_keeps_nulls_gives_equal_values_equal_tokens_and_reads_numbers_as_text() -> None:
    op = Encrypt.from_key(KEY)

    out = run(op, ["x", None, "x", 12])

    assert out[0] == out[2]
    assert out[1] is None
    assert op.decrypt(out[3]) == "12"
    assert op.key == KEY.derive("encrypt", 64)


# --- mask ---------------------------------------------------------------------------------------------------------


@given(value=st.text(max_size=60), keep_last=st.integers(0, 8))
def test_mask_keeps_length_and_separators_and_reveals_at_most_the_last_n_alphanumerics(
    value: str, keep_last: int
) -> None:
    masked = Mask(keep_last).mask(value)

    assert len(masked) == len(value)
    revealed = [m for m, c in zip(masked, value, strict=True) if c.isalnum() and m == c]
    assert len(revealed) <= keep_last
    assert len(revealed) <= len(alnum(value)) // 2
    if keep_last:
        assert alnum(masked)[len(alnum(masked)) - len(revealed) :] == alnum(value)[len(alnum(value)) - len(revealed) :]
    assert all(m == c for m, c in zip(masked, value, strict=True) if not c.isalnum())
    assert all(m in {c, "*"} for m, c in zip(masked, value, strict=True))


@pytest.mark.parametrize(
    ("value", "keep_last", "char", "expected"),
    [
        ("4111-1111-1111-1234", 4, "*", "****-****-****-1234"),
        ("+44 20 7946 0958", 2, "#", "+## ## #### ##58"),
        ("abc", 4, "*", "**c"),  # never more than half in the clear: "Ann" under keep_last 4 was left whole
        ("1234", 4, "*", "**34"),
        ("Li", 2, "*", "*i"),
        ("abc", 0, "*", "***"),
        ("", 4, "*", ""),
    ],
)
def test_mask_cases(value: str, keep_last: int, char: str, expected: str) -> None:
    assert run(Mask(keep_last, char), [value, None]) == [expected, None]


@pytest.mark.parametrize(("keep_last", "char"), [(-1, "*"), (4, "x"), (4, "7"), (4, "**"), (4, "")])
def test_when_mask_options_are_bad_then_invalid_argument(keep_last: int, char: str) -> None:
    with pytest.raises(InvalidArgument):
        Mask(keep_last, char)


# --- generalize: numbers ------------------------------------------------------------------------------------------


def bounds(label: str) -> tuple[float, float, bool]:
    """The (low, high, high_inclusive) of a bucket label ``30-39`` or ``[30, 40)``."""
    if label.startswith("["):
        low, high = label[1:-1].split(", ")
        return float(low), float(high), False
    low, high = re.fullmatch(r"(-?[\d.e+]+)-(-?[\d.e+]+)", label).groups()  # type: ignore[union-attr]
    return float(low), float(high), True


numbers = st.one_of(
    st.integers(-(10**12), 10**12),
    st.floats(-1e12, 1e12, allow_nan=False, allow_infinity=False),
)


@given(number=numbers, width=st.sampled_from([1, 2, 5, 10, 0.5, 2.5, 100, 1000]))
def test_generalize_number_puts_every_number_inside_its_bucket(number: float, width: float) -> None:
    label = GeneralizeNumber(width=width).bucket(number)

    assert label is not None
    low, high, inclusive = bounds(label)
    assert low <= number
    assert number <= high if inclusive else number < high
    assert high - low <= width


@given(number=numbers, top=st.integers(0, 120))
def test_generalize_number_at_or_over_top_is_one_open_bucket(number: float, top: int) -> None:
    label = GeneralizeNumber(width=10, top=top).bucket(number)

    assert label is not None
    if number >= top:
        assert label == f"{top}+"
    else:
        low, high, inclusive = bounds(label)
        assert low <= number
        assert number <= high if inclusive else number < high


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (34, "30-39"),
        ("34", "30-39"),
        (" 40 ", "40-49"),
        (39.5, "[30, 40)"),
        (0, "0-9"),
        (-1, "-10--1"),
        (95, "90+"),
        (90, "90+"),
        (89, "80-89"),
    ],
)
def test_generalize_number_cases(value: Any, expected: str) -> None:
    assert run(GeneralizeNumber(width=10, top=90), [value]) == [expected]


@pytest.mark.parametrize("value", ["thirty", "", True, float("nan"), float("inf"), "1e999", [1], {"a": 1}])
def test_generalize_number_refuses_what_is_not_a_finite_number(value: Any) -> None:
    assert GeneralizeNumber().bucket(value) is None
    assert as_number(value) is None


@pytest.mark.parametrize("width", [0, -5])
def test_when_the_bucket_is_not_positive_then_invalid_argument(width: float) -> None:
    with pytest.raises(InvalidArgument):
        GeneralizeNumber(width=width)


# --- generalize: dates --------------------------------------------------------------------------------------------

dates = st.dates(min_value=date(1, 1, 1), max_value=date(9999, 12, 31))
datetimes = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30))


@given(when=dates, part=st.sampled_from(DatePart))
def test_generalize_date_keeps_the_year_and_month_prefix_of_date_objects_and_text(when: date, part: DatePart) -> None:
    op = GeneralizeDate(part=part)
    prefix = 4 if part is DatePart.YEAR else 7

    [as_text, as_date] = run(op, [when.isoformat(), when])

    assert as_text == when.isoformat()[:prefix]
    assert type(as_date) is date
    assert as_date.isoformat()[:prefix] == when.isoformat()[:prefix]
    assert as_date.day == 1
    assert as_date <= when


@given(when=datetimes, part=st.sampled_from(DatePart), sep=st.sampled_from(["T", " "]))
def test_generalize_date_coarsens_date_times_too(when: datetime, part: DatePart, sep: str) -> None:
    prefix = 4 if part is DatePart.YEAR else 7

    [as_text, as_datetime] = run(GeneralizeDate(part=part), [when.isoformat(sep=sep), when])

    assert as_text == when.isoformat()[:prefix]
    assert type(as_datetime) is datetime
    assert as_datetime.isoformat()[:prefix] == when.isoformat()[:prefix]
    assert as_datetime <= when


def test_generalize_date_keeps_a_date_time_s_time_zone() -> None:
    when = datetime(2021, 7, 14, 9, 30, tzinfo=timezone(timedelta(hours=2)))

    [month] = run(GeneralizeDate(part=Part.MONTH), [when])

    assert month == datetime(2021, 7, 1, tzinfo=timezone(timedelta(hours=2)))


@pytest.mark.parametrize(
    ("value", "part", "expected"),
    [
        ("March 12, 1984", Part.YEAR, "1984"),
        ("12.03.1984", Part.MONTH, "1984-03"),
        ("12/03/1984", Part.MONTH, "1984-03"),  # day first, as in most of the world
        ("28 September 1987", Part.MONTH, "1987-09"),
    ],
)
def test_generalize_date_reads_written_dates(value: str, part: Part, expected: str) -> None:
    assert run(GeneralizeDate(part=part), [value]) == [expected]


@pytest.mark.parametrize("value", ["yesterday", "2021-13-01", "", "31/31/2021", 20210101, 3.5])
def test_generalize_date_treats_what_does_not_parse_as_invalid(value: Any) -> None:
    with pytest.raises(InvalidValue, match="row 7"):
        run(GeneralizeDate(), [value], Rows({}, 7))


# --- generalize: prefix -------------------------------------------------------------------------------------------


@given(value=st.text(max_size=20), length=st.integers(0, 8))
def test_generalize_prefix_is_a_prefix_of_the_value_and_never_longer(value: str, length: int) -> None:
    [out] = run(GeneralizePrefix(length=length), [value])

    assert value.strip().startswith(out)
    assert len(out) <= length


def test_generalize_prefix_cases() -> None:
    assert run(GeneralizePrefix(length=3), ["SW1A 1AA", " 10115", 2139, None]) == ["SW1", "101", "213", None]
    with pytest.raises(InvalidArgument):
        GeneralizePrefix(length=-1)


# --- date shift ---------------------------------------------------------------------------------------------------


def shift_one(op: DateShift, value: Any, subject: Any) -> Any:
    return run(op, [value], Rows({"patient": [subject]}, 0))[0]


subjects = st.one_of(st.text(max_size=12), st.integers())
max_days = st.integers(1, 3650)


@given(subject=subjects, limit=max_days)
def test_date_shift_is_never_zero_and_at_most_max_days_either_way(subject: Any, limit: int) -> None:
    shift = DateShift.from_key(KEY, subject="patient", max_days=limit).shift(subject)

    assert shift != timedelta(0)
    assert abs(shift.days) <= limit
    assert shift.seconds == shift.microseconds == 0


@given(subject=subjects, first=dates, second=dates)
def test_date_shift_moves_one_subject_s_dates_together_so_intervals_survive(
    subject: Any, first: date, second: date
) -> None:
    op = DateShift.from_key(KEY, subject="patient", on_invalid=OnInvalid.NULL)

    out = run(op, [first, second], Rows({"patient": [subject, subject]}, 0))

    if None not in out:  # both stay within year 1 to 9999
        assert out[1] - out[0] == second - first
        assert out[0] - first == op.shift(subject)


def test_date_shift_gives_the_same_subject_the_same_shift_across_chunks_and_runs() -> None:
    first = DateShift.from_key(KEY, subject="patient")
    second = DateShift.from_key(KEY, subject="patient")

    assert first.shift("p-17") == second.shift("p-17")
    assert first.shift(17) == first.shift("17")
    shifts = {first.shift(f"p-{n}") for n in range(50)}
    assert len(shifts) > 10
    assert DateShift.from_key(OTHER_KEY, subject="patient").shift("p-17") != first.shift("p-17") or (
        DateShift.from_key(OTHER_KEY, subject="patient").shift("p-18") != first.shift("p-18")
    )


@given(
    when=st.datetimes(min_value=datetime(1000, 1, 1), max_value=datetime(9000, 1, 1)),
    form=st.sampled_from(["date", "T", " ", "T-minutes", " -micro", "Z"]),
    subject=subjects,
)
def test_date_shift_keeps_the_format_of_text_dates(when: datetime, form: str, subject: Any) -> None:
    text = {
        "date": when.date().isoformat(),
        "T": when.isoformat(sep="T", timespec="seconds"),
        " ": when.isoformat(sep=" ", timespec="seconds"),
        "T-minutes": when.isoformat(sep="T", timespec="minutes"),
        " -micro": when.isoformat(sep=" ", timespec="microseconds"),
        "Z": when.isoformat(timespec="seconds") + "Z",
    }[form]
    op = DateShift.from_key(KEY, subject="patient")

    shifted = shift_one(op, text, subject)

    assert isinstance(shifted, str)
    assert len(shifted) == len(text)
    assert shifted[10:] == text[10:]
    assert date.fromisoformat(shifted[:10]) == when.date() + op.shift(subject)


@given(when=st.one_of(dates, datetimes), subject=subjects)
def test_date_shift_keeps_date_and_datetime_objects_as_they_are(when: date, subject: Any) -> None:
    op = DateShift.from_key(KEY, subject="patient", on_invalid=OnInvalid.NULL)

    shifted = shift_one(op, when, subject)

    if shifted is not None:
        assert type(shifted) is type(when)
        assert shifted - when == op.shift(subject)


def test_date_shift_keeps_time_zones() -> None:
    when = datetime(2021, 7, 14, 9, 30, tzinfo=UTC)
    op = DateShift.from_key(KEY, subject="patient")

    assert shift_one(op, when, "a") == when + op.shift("a")
    assert shift_one(op, "2021-07-14T09:30:00+02:00", "a").endswith("T09:30:00+02:00")


@pytest.mark.parametrize(("value", "subject"), [(date(1, 1, 1), "s"), (date(9999, 12, 31), "s")])
def test_when_a_shift_leaves_the_calendar_then_the_value_is_invalid_not_a_crash(value: date, subject: str) -> None:
    for candidate in (subject, *(f"{subject}{n}" for n in range(20))):
        op = DateShift.from_key(KEY, subject="patient")
        if (op.shift(candidate).days < 0) == (value.year == 1):
            break
    with pytest.raises(InvalidValue, match="row 0"):
        shift_one(op, value, candidate)
    assert shift_one(DateShift.from_key(KEY, subject="patient", on_invalid=OnInvalid.NULL), value, candidate) is None


@pytest.mark.parametrize("days", [0, 36501, -3])
def test_when_max_days_is_out_of_range_then_invalid_argument(days: int) -> None:
    with pytest.raises(InvalidArgument):
        DateShift.from_key(KEY, subject="patient", max_days=days)


def test_date_shift_derives_its_own_key() -> None:
    assert DateShift.from_key(KEY, subject="p").key == KEY.derive("date_shift")


# --- nulls and unreadable values ----------------------------------------------------------------------------------

EVERY_OPERATOR: list[Operator] = [
    Keep(),
    Redact(),
    Mask(),
    Hash.from_key(KEY),
    Encrypt.from_key(KEY),
    GeneralizeDate(),
    GeneralizeNumber(),
    GeneralizePrefix(),
    DateShift.from_key(KEY, subject="patient"),
]


@pytest.mark.parametrize("op", EVERY_OPERATOR, ids=lambda op: type(op).__name__)
def test_nulls_stay_null_under_every_operator(op: Operator) -> None:
    stats = ColumnStats()

    out = op.apply([None, None], Rows({"patient": ["a", None]}, 0), stats)

    assert out == [None, None]
    assert (stats.cells, stats.changed, stats.invalid) == (2, 0, 0)


@pytest.mark.parametrize(
    ("op", "good"),
    [
        (GeneralizeDate(), "2020-01-01"),
        (GeneralizeNumber(), "12"),
        (DateShift.from_key(KEY, subject="patient"), "2020-01-01"),
    ],
    ids=lambda op: type(op).__name__,
)
def test_on_invalid_error_names_the_row_over_the_whole_file(op: Operator, good: str) -> None:
    rows = Rows({"patient": ["a", "b", "c"]}, first_row=1000)

    with pytest.raises(InvalidValue, match=r"^row 1002: ") as caught:
        op.apply([good, None, "not a value"], rows, ColumnStats())

    assert caught.value.row == 1002
    assert caught.value.code == "invalid_value"
    assert "not a value" not in str(caught.value)  # the message never repeats the cell


@pytest.mark.parametrize(("on_invalid", "expected"), [(OnInvalid.NULL, None), (OnInvalid.REDACT, REDACTED)])
def test_on_invalid_null_or_redact_replaces_the_bad_cell_and_counts_it(on_invalid: OnInvalid, expected: Any) -> None:
    stats = ColumnStats()

    out = GeneralizeNumber(width=10, on_invalid=on_invalid).apply(["34", "n/a", None], Rows({}, 0), stats)

    assert out == ["30-39", expected, None]
    assert (stats.cells, stats.changed, stats.invalid) == (3, 2, 1)


def test_stats_add_up_over_chunks_and_serialise() -> None:
    stats = ColumnStats()
    op = Mask(keep_last=1)
    op.apply(["ab", "c", None], NO_ROWS, stats)  # "c" alone is masked too: never more than half in the clear
    op.apply(["de"], NO_ROWS, stats)

    assert stats.to_dict() == {"cells": 4, "changed": 3, "invalid": 0, "entities": {}}


@pytest.mark.parametrize(
    ("op", "value", "expected"),
    [
        (Redact("<EMAIL>"), "a@b.org", "<EMAIL>"),
        (Mask(2), "0712 345678", "**** ****78"),
        (Keep(), "kept", "kept"),
    ],
)
def test_value_applies_an_operator_to_one_string(op: Operator, value: str, expected: str) -> None:
    assert op.value(value) == expected


def test_value_of_hash_and_encrypt_match_their_column_form() -> None:
    assert Hash.from_key(KEY).value("x") == Hash.from_key(KEY).pseudonym("x")
    assert Encrypt.from_key(KEY).decrypt(Encrypt.from_key(KEY).value("x")) == "x"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2021-03-04", date(2021, 3, 4)),
        (" 2021-03-04 ", date(2021, 3, 4)),
        ("2021-03-04T05:06:07", datetime(2021, 3, 4, 5, 6, 7)),
        ("2021-03-04 05:06", datetime(2021, 3, 4, 5, 6)),
        (date(2021, 3, 4), date(2021, 3, 4)),
        ("March 4", None),
        (20210304, None),
        (None, None),
    ],
)
def test_parse_when_reads_iso_text_and_date_objects(value: Any, expected: Any) -> None:
    assert parse_when(value) == expected
