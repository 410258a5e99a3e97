"""The text analyzer: merging detectors, resolving overlaps, masking for contextual detectors, replacing spans."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from warden.errors import InvalidArgument
from warden.privacy.entities import Entity, Finding
from warden.privacy.text import TextAnalyzer, apply_findings, mask_findings, resolve_overlaps


@dataclass
class Fixed:
    """A detector that reports given substrings of every text as given entities (first occurrence each)."""

    name: str
    spans: Sequence[tuple[str, Entity, float]]
    masked_input: bool = False
    seen: list[str] = field(default_factory=list)
    version: str = "fixed-1"

    @property
    def entities(self) -> frozenset[Entity]:
        return frozenset(entity for _, entity, _ in self.spans)

    def find(self, text: str) -> list[Finding]:
        self.seen.append(text)
        out = []
        for value, entity, score in self.spans:
            start = text.find(value)
            if start >= 0:
                out.append(Finding(start, start + len(value), entity, score, self.name))
        return out

    def find_many(self, texts: Sequence[str]) -> list[list[Finding]]:
        return [self.find(text) for text in texts]


def found(analyzer: TextAnalyzer, text: str) -> list[tuple[str, str]]:
    return [(f.entity.value, text[f.start : f.end]) for f in analyzer.analyze(text)]


def test_when_a_phone_lies_inside_an_address_then_the_address_wins() -> None:
    text = "Write to 12 Main Street, Unit 555-0199, Springfield now"
    address = "12 Main Street, Unit 555-0199, Springfield"
    analyzer = TextAnalyzer(
        [Fixed("patterns", [("555-0199", Entity.PHONE, 0.9)]), Fixed("addresses", [(address, Entity.ADDRESS, 0.75)])]
    )
    assert found(analyzer, text) == [("ADDRESS", address)]


def test_when_an_email_contains_a_name_then_the_email_wins() -> None:
    text = "mail april.griffin@example.org today"
    analyzer = TextAnalyzer(
        [
            Fixed("patterns", [("april.griffin@example.org", Entity.EMAIL, 0.9)]),
            Fixed("names", [("april", Entity.PERSON, 0.85)]),
        ]
    )
    assert found(analyzer, text) == [("EMAIL", "april.griffin@example.org")]


def test_when_spans_nest_then_the_outermost_wins_and_neighbours_survive() -> None:
    text = "Dr Anna Maria Berg, born 1980-01-02, anna@example.org"
    analyzer = TextAnalyzer(
        [
            Fixed("a", [("Anna Maria Berg", Entity.PERSON, 0.6), ("1980-01-02", Entity.DATE_OF_BIRTH, 0.85)]),
            Fixed("b", [("Maria", Entity.PERSON, 0.85), ("anna@example.org", Entity.EMAIL, 0.9)]),
        ]
    )
    assert found(analyzer, text) == [
        ("PERSON", "Anna Maria Berg"),
        ("DATE_OF_BIRTH", "1980-01-02"),
        ("EMAIL", "anna@example.org"),
    ]


def test_when_spans_partly_overlap_then_the_loser_keeps_only_its_uncovered_part() -> None:
    text = "to Milagros Tejada Calle Mayor 7, Madrid"
    analyzer = TextAnalyzer(
        [
            Fixed("names", [("Milagros Tejada Calle", Entity.PERSON, 0.6)]),
            Fixed("addresses", [("Tejada Calle Mayor 7, Madrid", Entity.ADDRESS, 0.9)]),
        ]
    )
    assert found(analyzer, text) == [("PERSON", "Milagros"), ("ADDRESS", "Tejada Calle Mayor 7, Madrid")]


def test_when_spans_are_equally_long_then_the_higher_score_and_then_the_first_detector_win() -> None:
    text = "call 0612345678 now"
    by_score = TextAnalyzer(
        [Fixed("a", [("0612345678", Entity.NATIONAL_ID, 0.6)]), Fixed("b", [("0612345678", Entity.PHONE, 0.9)])]
    )
    by_order = TextAnalyzer(
        [Fixed("a", [("0612345678", Entity.NATIONAL_ID, 0.9)]), Fixed("b", [("0612345678", Entity.PHONE, 0.9)])]
    )
    assert found(by_score, text) == [("PHONE", "0612345678")]
    assert found(by_order, text) == [("NATIONAL_ID", "0612345678")]


def test_when_a_finding_scores_below_min_score_then_it_is_dropped_before_overlaps() -> None:
    text = "Anna Berg, anna@example.org"
    analyzer = TextAnalyzer(
        [Fixed("a", [("Anna Berg, anna@example.org", Entity.PERSON, 0.4), ("anna@example.org", Entity.EMAIL, 0.9)])],
        min_score=0.5,
    )
    assert found(analyzer, text) == [("EMAIL", "anna@example.org")]


def test_when_entities_are_narrowed_then_others_are_not_reported() -> None:
    text = "Anna Berg, anna@example.org"
    detector = Fixed("a", [("Anna Berg", Entity.PERSON, 0.9), ("anna@example.org", Entity.EMAIL, 0.9)])
    analyzer = TextAnalyzer([detector], entities={Entity.EMAIL})
    assert analyzer.entities == frozenset({Entity.EMAIL})
    assert found(analyzer, text) == [("EMAIL", "anna@example.org")]


def test_a_masked_input_detector_sees_earlier_findings_overwritten_at_the_same_offsets() -> None:
    first = Fixed("patterns", [("anna@example.org", Entity.EMAIL, 0.9)])
    second = Fixed("names", [("Anna Berg", Entity.PERSON, 0.85)], masked_input=True)
    analyzer = TextAnalyzer([first, second])
    texts = ["Anna Berg wrote from anna@example.org.", "nothing here"]
    results = analyzer.analyze_many(texts)
    assert second.seen == ["Anna Berg wrote from xxxxxxxxxxxxxxxx.", "nothing here"]
    assert [[texts[0][f.start : f.end] for f in r] for r in results] == [["Anna Berg", "anna@example.org"], []]


def test_analyze_many_equals_analyze_per_text() -> None:
    detector = Fixed("a", [("Anna", Entity.PERSON, 0.9), ("x@y.org", Entity.EMAIL, 0.9)])
    analyzer = TextAnalyzer([detector])
    texts = ["Anna x@y.org", "", "x@y.org Anna", "none"]
    assert analyzer.analyze_many(texts) == [analyzer.analyze(text) for text in texts]


def test_versions_name_every_detector() -> None:
    analyzer = TextAnalyzer([Fixed("a", [("x", Entity.EMAIL, 1.0)]), Fixed("b", [("y", Entity.PHONE, 1.0)])])
    assert analyzer.versions() == {"a": "fixed-1", "b": "fixed-1"}


@pytest.mark.parametrize(
    ("detectors", "options", "message"),
    [
        ([], {}, "at least one detector"),
        ([Fixed("a", [("x", Entity.EMAIL, 1.0)])], {"min_score": 0.0}, "min_score"),
        ([Fixed("a", [("x", Entity.EMAIL, 1.0)])], {"min_score": 1.5}, "min_score"),
        ([Fixed("a", [("x", Entity.EMAIL, 1.0)])], {"entities": {Entity.PERSON}}, "no detector reports PERSON"),
        ([Fixed("a", [("x", Entity.EMAIL, 1.0)]), Fixed("a", [("y", Entity.PHONE, 1.0)])], {}, "unique"),
    ],
)
def test_when_the_analyzer_is_misconfigured_then_it_says_so(
    detectors: list[Fixed], options: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidArgument, match=message):
        TextAnalyzer(detectors, **options)


# The default analyzer: real detectors.


@pytest.fixture(scope="module")
def default() -> TextAnalyzer:
    return TextAnalyzer.default()


def test_the_default_analyzer_finds_names_addresses_and_patterns_together(default: TextAnalyzer) -> None:
    text = (
        "Note from Marina Cortese (marina.cortese@example.it): please update my address to "
        "Via Combi, 51 Piano 1, 61029, Urbino (PU) and call +39 0371 418763."
    )
    assert found(default, text) == [
        ("PERSON", "Marina Cortese"),
        ("EMAIL", "marina.cortese@example.it"),
        ("ADDRESS", "Via Combi, 51 Piano 1, 61029, Urbino (PU)"),
        ("PHONE", "+39 0371 418763"),
    ]


@pytest.mark.parametrize(
    ("text", "birth_date"),
    [
        ("Patient Ann Lee (1983-07-13) asked about results.", "1983-07-13"),
        ("Ann Lee, 13.07.1983, called twice.", "13.07.1983"),
        ("Seen: Mr Smith 12 March 1984, stable.", "12 March 1984"),
    ],
)
def test_a_date_written_right_after_a_name_is_a_date_of_birth(
    default: TextAnalyzer, text: str, birth_date: str
) -> None:
    found = {(text[f.start : f.end], f.entity) for f in default.analyze(text)}
    assert (birth_date, Entity.DATE_OF_BIRTH) in found


@pytest.mark.parametrize(
    "text", ["Ann Lee paid 12.50 today.", "Ann Lee (ref 2021-01-01) called.", "On 2021-01-01 we met."]
)
def test_a_number_after_a_name_or_a_date_elsewhere_is_not_a_date_of_birth(default: TextAnalyzer, text: str) -> None:
    assert Entity.DATE_OF_BIRTH not in {f.entity for f in default.analyze(text)}


def test_the_default_analyzer_leaves_clean_prose_alone(default: TextAnalyzer) -> None:
    text = "Order 48213 shipped in 12 boxes; revenue grew 12% to $3.4 million in Q3 2023."
    assert default.analyze(text) == []


def test_the_default_analyzer_records_each_detector_version(default: TextAnalyzer) -> None:
    versions = default.versions()
    assert set(versions) == {"patterns", "addresses", "spacy"}
    assert all(versions.values())
    assert default.entities == frozenset(Entity) - {Entity.PERSON_ID}  # a column-level entity, by name only


def test_without_ner_the_default_analyzer_reports_no_names() -> None:
    analyzer = TextAnalyzer.default(ner=False)
    assert Entity.PERSON not in analyzer.entities
    assert "spacy" not in analyzer.versions()
    with pytest.raises(InvalidArgument, match="PERSON"):
        TextAnalyzer.default(ner=False, entities={Entity.PERSON})


def test_when_only_some_entities_are_wanted_then_only_their_detectors_are_built() -> None:
    analyzer = TextAnalyzer.default(entities={Entity.EMAIL})
    assert set(analyzer.versions()) == {"patterns"}
    assert analyzer.entities == frozenset({Entity.EMAIL})
    names_only = TextAnalyzer.default(entities={Entity.PERSON})
    assert set(names_only.versions()) == {"spacy"}


# Replacing spans.


def test_apply_findings_replaces_each_span_with_what_the_caller_makes_of_it() -> None:
    text = "Anna Berg, anna@example.org"
    findings = [Finding(11, 27, Entity.EMAIL, 0.9, "t"), Finding(0, 9, Entity.PERSON, 0.9, "t")]
    out = apply_findings(text, findings, lambda f, value: f"<{f.entity.value}:{len(value)}>")
    assert out == "<PERSON:9>, <EMAIL:16>"


@pytest.mark.parametrize(
    "findings",
    [
        [Finding(0, 5, Entity.PERSON, 0.9, "t"), Finding(3, 8, Entity.EMAIL, 0.9, "t")],
        [Finding(5, 40, Entity.PERSON, 0.9, "t")],
        [Finding(4, 4, Entity.PERSON, 0.9, "t")],
    ],
)
def test_when_findings_overlap_or_fall_outside_then_apply_findings_refuses(findings: list[Finding]) -> None:
    with pytest.raises(InvalidArgument):
        apply_findings("Anna Berg is here", findings, lambda f, v: "")


@st.composite
def text_and_spans(draw: st.DrawFn) -> tuple[str, list[tuple[int, int]]]:
    text = draw(st.text(min_size=0, max_size=60))
    cuts = sorted(draw(st.sets(st.integers(0, len(text)), max_size=8)))
    pairs = [(cuts[i], cuts[i + 1]) for i in range(0, len(cuts) - 1, 2) if cuts[i] < cuts[i + 1]]
    return text, pairs


@given(text_and_spans(), st.text(max_size=5))
def test_apply_findings_leaves_every_character_outside_the_spans_byte_identical(
    case: tuple[str, list[tuple[int, int]]], replacement: str
) -> None:
    text, pairs = case
    findings = [Finding(s, e, Entity.PERSON, 0.9, "t") for s, e in reversed(pairs)]
    out = apply_findings(text, findings, lambda f, v: replacement)
    expected = text
    for start, end in reversed(pairs):  # right to left, so earlier offsets stay valid
        expected = expected[:start] + replacement + expected[end:]
    assert out.encode() == expected.encode()
    assert apply_findings(text, findings, lambda f, v: v) == text


@given(text_and_spans())
def test_mask_findings_keeps_length_and_everything_outside(case: tuple[str, list[tuple[int, int]]]) -> None:
    text, pairs = case
    masked = mask_findings(text, [Finding(s, e, Entity.EMAIL, 0.9, "t") for s, e in pairs])
    assert len(masked) == len(text)
    inside = {i for s, e in pairs for i in range(s, e)}
    assert all(masked[i] == ("x" if i in inside else text[i]) for i in range(len(text)))


@given(
    st.text(alphabet="ab ,.", min_size=1, max_size=40).flatmap(
        lambda text: st.tuples(
            st.just(text),
            st.lists(
                st.tuples(
                    st.integers(0, len(text)),
                    st.integers(0, len(text)),
                    st.sampled_from(list(Entity)),
                    st.floats(0.5, 1.0),
                ),
                max_size=8,
            ),
        )
    )
)
def test_resolved_findings_never_overlap_and_cover_every_flagged_letter(
    case: tuple[str, list[tuple[int, int, Entity, float]]],
) -> None:
    text, raw = case
    findings = [Finding(min(a, b), max(a, b), e, s, "t") for a, b, e, s in raw if a != b]
    resolved = resolve_overlaps(text, findings)
    assert resolved == sorted(resolved)
    assert all(left.end <= right.start for left, right in itertools.pairwise(resolved))
    assert all(any(f.start <= r.start and r.end <= f.end for f in findings) for r in resolved)
    flagged = {i for f in findings for i in range(f.start, f.end) if text[i].isalnum()}
    covered = {i for r in resolved for i in range(r.start, r.end)}
    assert flagged <= covered
