"""k-anonymity over quasi-identifiers: generalise step by step, then suppress what is still too rare.

A first pass counts each distinct combination of quasi-identifier values (memory
grows with the number of distinct combinations, not with rows). Each column gets
a ladder of ever coarser labels chosen from its values: postal codes written as
digits of one length (``02139``) to shorter prefixes, other numbers to wider
buckets, dates to month, year and decade, other fixed-length codes to shorter
prefixes, anything else straight to ``*``. Greedily, the column whose next step
leaves the fewest rows to suppress moves up, until at most ``max_suppressed`` of
the rows would be; those rows then have every quasi-identifier replaced by ``*``
(with, when they are fewer than ``k``, the smallest other groups, so that the
``*`` group is not itself too small). The report says what it cost.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from warden.errors import InvalidArgument
from warden.privacy.operators import ColumnStats, GeneralizeNumber, as_number, count_changes, parse_when
from warden.privacy.tables import ABSENT, Reader

SUPPRESSED: Final = "*"
_BUCKETS: Final = (5, 10, 20, 50, 100, 1000, 10_000)

Label = Callable[[Any], Any]
"""One ladder step: a value's label (text); a null stays ``None`` and a JSON Lines absent key :data:`ABSENT`."""


@dataclass(frozen=True)
class Ladder:
    """A column's generalisation steps, finest first; step 0 is the value itself, the last ``*`` (nulls too)."""

    names: tuple[str, ...]
    steps: tuple[Label, ...]

    @property
    def top(self) -> int:
        """The index of the last step (``*``)."""
        return len(self.steps) - 1


def _raw(value: Any) -> Any:
    return value if value is None or value is ABSENT else str(value)


def _star(_value: Any) -> str:
    return SUPPRESSED


def _or_raw(label: Label) -> Label:
    """A step that leaves nulls as nulls and absent keys absent (both are as telling as a value, and kept)."""
    return lambda v: v if v is None or v is ABSENT else label(v)


def ladder_for(values: Iterable[Any]) -> Ladder:
    """The ladder that fits a column's distinct values: numeric, date, fixed-length code, or categorical."""
    present = [v for v in values if v is not None and v is not ABSENT]
    names: list[str] = ["value"]
    steps: list[Label] = [_raw]
    if present and _codes(present):
        for keep in range(len(present[0]) - 1, 0, -1):
            names.append(f"prefix {keep}")
            steps.append(_or_raw(_prefix(keep)))
    elif present and all(as_number(v) is not None for v in present):
        for width in _BUCKETS:
            names.append(f"bucket {width}")
            steps.append(_or_raw(_bucket(GeneralizeNumber(width=width))))
    elif present and all(parse_when(v) is not None for v in present):
        names += ["month", "year", "decade"]
        steps += [_or_raw(_month), _or_raw(_year), _or_raw(_decade)]
    else:
        lengths = {len(str(v)) for v in present}
        if len(lengths) == 1 and (length := lengths.pop()) >= 2:
            for keep in range(length - 1, 0, -1):
                names.append(f"prefix {keep}")
                steps.append(_or_raw(_prefix(keep)))
    names.append(SUPPRESSED)
    steps.append(_star)  # the last step hides nulls and absent keys too: they would keep groups apart
    return Ladder(tuple(names), tuple(steps))


def _codes(present: list[Any]) -> bool:
    """Digit strings of one length, 4 or more (postal codes such as ``02139``): prefixes, not number buckets."""
    lengths = {len(v) if isinstance(v, str) and v.isascii() and v.isdigit() else 0 for v in present}
    return len(lengths) == 1 and lengths.pop() >= 4


def _bucket(op: GeneralizeNumber) -> Label:
    return lambda v: op.bucket(v) or SUPPRESSED


def _prefix(keep: int) -> Label:
    return lambda v: str(v)[:keep]


def _when(value: Any) -> Any:
    when = parse_when(value)
    assert when is not None  # noqa: S101 - the ladder is chosen only when every value parses
    return when


def _month(value: Any) -> str:
    when = _when(value)
    return f"{when.year:04d}-{when.month:02d}"


def _year(value: Any) -> str:
    return f"{_when(value).year:04d}"


def _decade(value: Any) -> str:
    year = _when(value).year // 10 * 10
    return f"{year:04d}-{year + 9:04d}"


@dataclass
class KReport:
    """What reaching k cost: the step chosen per column, rows suppressed, group sizes before and after."""

    k: int
    quasi_identifiers: list[str]
    rows: int
    levels: dict[str, str]
    suppressed_rows: int
    min_group_before: int
    min_group_after: int
    groups_before: int
    groups_after: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form for manifests and ``--json``."""
        return {
            "k": self.k,
            "quasi_identifiers": self.quasi_identifiers,
            "rows": self.rows,
            "levels": self.levels,
            "suppressed_rows": self.suppressed_rows,
            "min_group_before": self.min_group_before,
            "min_group_after": self.min_group_after,
            "groups_before": self.groups_before,
            "groups_after": self.groups_after,
        }


@dataclass
class KAnonymity:
    """A plan to apply: the step per quasi-identifier and the generalised groups whose rows are suppressed."""

    columns: list[str]
    ladders: dict[str, Ladder]
    levels: dict[str, int]
    suppressed: set[tuple[Any, ...]]
    report: KReport
    #: The chunk whose labels were computed last (held, so that its identity cannot be reused), and the labels.
    _cache: tuple[Mapping[str, list[Any]], list[tuple[Any, ...]]] | None = field(default=None, repr=False)

    def _labels(self, columns: Mapping[str, list[Any]]) -> list[tuple[Any, ...]]:
        if self._cache is None or self._cache[0] is not columns:
            steps = [self.ladders[c].steps[self.levels[c]] for c in self.columns]
            rows = zip(*(_column(columns, c) for c in self.columns), strict=True)
            self._cache = (columns, [tuple(step(v) for step, v in zip(steps, row, strict=True)) for row in rows])
        return self._cache[1]

    def generalize(
        self, column: str, values: list[Any], columns: Mapping[str, list[Any]], stats: ColumnStats
    ) -> list[Any]:
        """One quasi-identifier's values in a chunk, at the plan's step; every one ``*`` in a suppressed row.

        A suppressed row loses its nulls and absent keys too: they would otherwise split the ``*`` group
        the plan counted on into smaller ones.
        """
        position = self.columns.index(column)
        out = [SUPPRESSED if labels in self.suppressed else labels[position] for labels in self._labels(columns)]
        count_changes(stats, [_raw(v) for v in values], out)
        return out


def _column(columns: Mapping[str, list[Any]], name: str) -> list[Any]:
    """A chunk's column; one that no record of a JSON Lines chunk has (yet) is absent in every row."""
    values = columns.get(name)
    if values is not None:
        return values
    rows = len(next(iter(columns.values()), []))
    return [ABSENT] * rows


def _grouped(counts: Counter[tuple[Any, ...]], steps: Sequence[Label]) -> Counter[tuple[Any, ...]]:
    grouped: Counter[tuple[Any, ...]] = Counter()
    for row, n in counts.items():
        grouped[tuple(step(v) for step, v in zip(steps, row, strict=True))] += n
    return grouped


def count_groups(reader: Reader, columns: Sequence[str]) -> Counter[tuple[Any, ...]]:
    """How many rows share each combination of ``columns``' values (one pass over the file).

    A column a chunk lacks counts as absent in its rows (a JSON Lines key may first appear late); whether
    the file has the column at all is for the caller to check against ``reader.columns`` afterwards. Values
    are counted by their text, as the output writes them: JSON's ``30`` and ``30.0`` (equal in Python) are
    two groups, as they are two labels in the output.
    """
    counts: Counter[tuple[Any, ...]] = Counter()
    for chunk in reader.chunks():
        values = [_column(chunk.columns, c) for c in columns]
        for column in values:
            if any(isinstance(v, dict | list) for v in column):
                raise InvalidArgument(
                    f"a quasi-identifier among {list(columns)} holds nested values; only plain values can be grouped"
                )
        counts.update(zip(*([_raw(v) for v in column] for column in values), strict=True))
    return counts


def plan_k_anonymity(reader: Reader, columns: Sequence[str], k: int, max_suppressed: float) -> KAnonymity:
    """Count the groups in one pass over ``reader``, then plan (see :func:`plan_from_counts`)."""
    counts = count_groups(reader, columns)
    missing = [c for c in columns if c not in reader.columns]
    if missing:
        raise InvalidArgument(f"no column {missing[0]!r} among {reader.columns[:20]}")
    return plan_from_counts(counts, columns, k, max_suppressed)


def plan_from_counts(
    counts: Counter[tuple[Any, ...]], columns: Sequence[str], k: int, max_suppressed: float
) -> KAnonymity:
    """Climb the ladders greedily until suppressing the rows left in small groups costs at most ``max_suppressed``.

    Each step moves the column whose next rung leaves the fewest rows to suppress; suppression includes
    the extra groups that must join the ``*`` group when the small ones alone are fewer than ``k`` rows.
    """
    total = sum(counts.values())
    if 0 < total < k:
        raise InvalidArgument(f"k={k} cannot be reached: the file has only {total} rows")
    ladders = {c: ladder_for({row[i] for row in counts}) for i, c in enumerate(columns)}
    levels = dict.fromkeys(columns, 0)

    def steps_at(chosen: dict[str, int]) -> list[Label]:
        return [ladders[c].steps[chosen[c]] for c in columns]

    before = _grouped(counts, steps_at(levels))
    groups = before
    budget = max_suppressed * total
    while _cost(groups, k) > budget:
        candidates = []
        for c in columns:
            if levels[c] < ladders[c].top:
                trial = {**levels, c: levels[c] + 1}
                trial_groups = _grouped(counts, steps_at(trial))
                candidates.append((_cost(trial_groups, k), columns.index(c), trial, trial_groups))
        if not candidates:
            break
        _, _, levels, groups = min(candidates, key=lambda item: (item[0], item[1]))
    suppressed = _suppress(groups, k)
    after: Counter[tuple[Any, ...]] = Counter()
    for labels, n in groups.items():
        after[tuple(SUPPRESSED for _ in labels) if labels in suppressed else labels] += n
    report = KReport(
        k=k,
        quasi_identifiers=list(columns),
        rows=total,
        levels={c: ladders[c].names[levels[c]] for c in columns},
        suppressed_rows=sum(groups[g] for g in suppressed),
        min_group_before=min(before.values(), default=0),
        min_group_after=min(after.values(), default=0),
        groups_before=len(before),
        groups_after=len(after),
    )
    return KAnonymity(list(columns), ladders, levels, suppressed, report)


def _cost(groups: Counter[tuple[Any, ...]], k: int) -> int:
    """The rows that suppression would replace by ``*`` at these groups."""
    return sum(groups[g] for g in _suppress(groups, k))


def _suppress(groups: Counter[tuple[Any, ...]], k: int) -> set[tuple[Any, ...]]:
    """The groups whose rows become ``*``: every group under k, plus the smallest others if those are still under k."""
    chosen = {g for g, n in groups.items() if n < k}
    if not chosen:
        return chosen
    width = len(next(iter(groups)))
    star = tuple(SUPPRESSED for _ in range(width))
    pooled = sum(groups[g] for g in chosen) + (groups[star] if star not in chosen else 0)
    for group, n in sorted(groups.items(), key=lambda item: item[1]):
        if pooled >= k:
            break
        if group not in chosen and group != star:
            chosen.add(group)
            pooled += n
    return chosen
