"""Personal data in free text: run several detectors, merge what they find, replace it.

:class:`TextAnalyzer` runs its detectors in order over a batch of texts and merges their findings into
one list per text, sorted by start and without overlaps:

- a finding whose entity the analyzer was not asked for, or whose score is below ``min_score``, is dropped;
- overlaps are resolved in priority order: the **longer** span wins, then the **higher score**, then the
  detector listed **first**. A loser lying inside a winner disappears (a phone number inside an address is
  part of the address; a name inside an e-mail address is part of the e-mail). A loser that only partly
  overlaps is cut down to the part no winner covers, so every character some detector flagged ends up
  inside exactly one finding and nothing flagged is left in the clear.

A detector with a true ``masked_input`` attribute (the NER pipeline) reads each text with the spans the
detectors before it found overwritten by runs of ``x`` of the same length: offsets stay valid, it cannot
report the same value again, and a model spends no time on e-mail addresses, card numbers or addresses
that patterns already found. Order the detectors cheap-first for that reason (:meth:`TextAnalyzer.default`
does).

:func:`apply_findings` then replaces each finding's span by whatever the caller makes of it (a placeholder,
a keyed pseudonym, a mask) and leaves every other character as it was.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Collection, Sequence

from warden.errors import InvalidArgument
from warden.privacy.entities import Detector, Entity, Finding

_MASK = "x"


#: The score of a date found right after a person's name: a birth date by position, not by a context word.
BESIDE_NAME_SCORE = 0.7


class TextAnalyzer:
    """Finds personal data in free text with several detectors and returns non-overlapping findings.

    ``entities`` narrows what is reported (default: everything the detectors report); asking for an
    entity that no detector reports is an error rather than a silent gap. ``min_score`` drops weaker
    findings before overlaps are resolved.
    """

    def __init__(
        self,
        detectors: Sequence[Detector],
        *,
        entities: Collection[Entity] | None = None,
        min_score: float = 0.5,
    ) -> None:
        if not detectors:
            raise InvalidArgument("a text analyzer needs at least one detector")
        if not 0.0 < min_score <= 1.0:
            raise InvalidArgument(f"min_score must be in (0, 1], not {min_score}")
        names = [detector.name for detector in detectors]
        if len(set(names)) != len(names):
            raise InvalidArgument(f"detector names must be unique, got {names}")
        reportable = frozenset().union(*(detector.entities for detector in detectors))
        wanted = reportable if entities is None else frozenset(Entity(entity) for entity in entities)
        missing = wanted - reportable
        if missing:
            raise InvalidArgument(f"no detector reports {', '.join(sorted(missing))} (detectors: {', '.join(names)})")
        self._detectors = tuple(detectors)
        self._entities = wanted
        self._min_score = min_score

    @classmethod
    def default(
        cls,
        *,
        ner: bool = True,
        national_ids: Sequence[str] | None = None,
        entities: Collection[Entity] | None = None,
    ) -> TextAnalyzer:
        """Patterns with validators, street addresses and, with ``ner``, person names (spaCy NER).

        Raises :class:`~warden.errors.EngineUnavailable` when ``ner`` is set, ``PERSON`` is wanted and spaCy
        or its model is not installed. Without ``ner`` no person names are found (``PERSON`` in ``entities``
        is then an error). Detectors for entities that ``entities`` leaves out are not built, so asking only
        for e-mail addresses never needs spaCy.
        """
        from warden.privacy.addresses import AddressDetector  # noqa: PLC0415 - keep the package import light
        from warden.privacy.ner import SpacyDetector  # noqa: PLC0415

        wanted = frozenset(Entity) if entities is None else frozenset(Entity(entity) for entity in entities)
        patterns = _pattern_detector(national_ids, wanted)
        detectors: list[Detector] = []
        if patterns is not None:
            detectors.append(patterns)
        if Entity.ADDRESS in wanted:
            detectors.append(AddressDetector())
        if Entity.PERSON in wanted:
            if ner:
                detectors.append(SpacyDetector().ensure_available())
            elif entities is not None:
                raise InvalidArgument("PERSON is found by the NER detector, which ner=False leaves out")
        return cls(detectors, entities=None if entities is None else wanted)

    @property
    def entities(self) -> frozenset[Entity]:
        """The entity types this analyzer reports."""
        return self._entities

    @property
    def detectors(self) -> tuple[Detector, ...]:
        """The detectors, in the order they run."""
        return self._detectors

    def versions(self) -> dict[str, str]:
        """Detector name -> version of the code or model behind it, for manifests."""
        return {detector.name: detector.version for detector in self._detectors}

    def analyze(self, text: str) -> list[Finding]:
        """Non-overlapping findings in ``text``, sorted by start."""
        return self.analyze_many([text])[0]

    def analyze_many(self, texts: Sequence[str]) -> list[list[Finding]]:
        """:meth:`analyze` over many texts; detectors see the whole batch at once (NER batches it)."""
        texts = list(texts)
        found: list[list[Finding]] = [[] for _ in texts]
        for detector in self._detectors:
            if getattr(detector, "masked_input", False):
                inputs = [mask_findings(text, hits) if hits else text for text, hits in zip(texts, found, strict=True)]
            else:
                inputs = texts
            results = detector.find_many(inputs)
            if len(results) != len(texts):
                raise RuntimeError(f"detector {detector.name!r} returned {len(results)} results for {len(texts)} texts")
            for hits, result in zip(found, results, strict=True):
                hits.extend(f for f in result if f.entity in self._entities and f.score >= self._min_score)
        if Entity.DATE_OF_BIRTH in self._entities and Entity.PERSON in self._entities:
            for text, hits in zip(texts, found, strict=True):
                hits.extend(_birth_dates_beside_names(text, hits))
        order = {detector.name: index for index, detector in enumerate(self._detectors)}
        return [resolve_overlaps(text, hits, order) if hits else [] for text, hits in zip(texts, found, strict=True)]


def _birth_dates_beside_names(text: str, hits: Sequence[Finding]) -> list[Finding]:
    """Dates written right after a person's name (``Ann Lee (1983-07-13)``), reported as dates of birth."""
    from warden.privacy.dates import date_after  # noqa: PLC0415 - keep the package import light

    spans = [date_after(text, hit.end) for hit in hits if hit.entity is Entity.PERSON]
    return [Finding(s[0], s[1], Entity.DATE_OF_BIRTH, BESIDE_NAME_SCORE, "dates-beside-names") for s in spans if s]


def _pattern_detector(national_ids: Sequence[str] | None, wanted: frozenset[Entity]) -> Detector | None:
    """The pattern detector for the wanted entities, or None when it has none of them to find."""
    from warden.privacy.patterns import PATTERN_ENTITIES, PatternDetector  # noqa: PLC0415

    if not PATTERN_ENTITIES & wanted:
        return None
    if national_ids is None:
        return PatternDetector(entities=wanted)
    return PatternDetector(national_ids=national_ids, entities=wanted)


def mask_findings(text: str, findings: Sequence[Finding]) -> str:
    """``text`` with each finding's span overwritten by as many ``x`` characters: offsets are unchanged."""
    chars = list(text)
    for finding in findings:
        chars[finding.start : finding.end] = _MASK * (finding.end - finding.start)
    return "".join(chars)


def resolve_overlaps(text: str, findings: Sequence[Finding], order: dict[str, int] | None = None) -> list[Finding]:
    """Non-overlapping findings sorted by start: longer wins, then higher score, then the earlier detector.

    A finding inside a winner is dropped; one that partly overlaps is cut to the pieces no winner covers
    (trimmed of surrounding spaces and punctuation; a piece with no letter or digit left is dropped).
    """
    rank = order or {}
    ranked = sorted(
        findings, key=lambda f: (-(f.end - f.start), -f.score, rank.get(f.detector, len(rank)), f.start, f.entity)
    )
    taken: list[tuple[int, int]] = []  # sorted, disjoint
    kept: list[Finding] = []
    for finding in ranked:
        for left, right in _uncovered(finding.start, finding.end, taken):
            if (left, right) == (finding.start, finding.end):
                kept.append(finding)
            else:
                start, end = _trim(text, left, right)
                if start >= end:
                    continue
                kept.append(_span(finding, start, end))
            bisect.insort(taken, (left, right))
    kept.sort()
    return kept


def _span(finding: Finding, start: int, end: int) -> Finding:
    return Finding(start=start, end=end, entity=finding.entity, score=finding.score, detector=finding.detector)


def _uncovered(start: int, end: int, taken: list[tuple[int, int]]) -> list[tuple[int, int]]:
    pieces: list[tuple[int, int]] = []
    cursor = start
    for left, right in taken:
        if right <= cursor:
            continue
        if left >= end:
            break
        if left > cursor:
            pieces.append((cursor, left))
        cursor = max(cursor, right)
    if cursor < end:
        pieces.append((cursor, end))
    return pieces


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and not text[start].isalnum():
        start += 1
    while end > start and not text[end - 1].isalnum():
        end -= 1
    return start, end


def apply_findings(text: str, findings: Sequence[Finding], replace: Callable[[Finding, str], str]) -> str:
    """``text`` with each finding's span replaced by ``replace(finding, original_value)``; the rest unchanged.

    The findings must lie within the text and must not overlap (what :class:`TextAnalyzer` returns); anything
    else is an :class:`~warden.errors.InvalidArgument` rather than a half-replaced text.
    """
    if not findings:
        return text
    ordered = sorted(findings, key=lambda f: (f.start, f.end))
    parts: list[str] = []
    cursor = 0
    for finding in ordered:
        if finding.start < cursor or finding.end > len(text) or finding.start >= finding.end:
            raise InvalidArgument(
                f"finding {finding.entity.value} [{finding.start}, {finding.end}) overlaps another or lies outside "
                f"a text of {len(text)} characters"
            )
        parts.append(text[cursor : finding.start])
        parts.append(replace(finding, text[finding.start : finding.end]))
        cursor = finding.end
    parts.append(text[cursor:])
    return "".join(parts)
