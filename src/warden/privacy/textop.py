"""The ``text`` operator: find personal data inside free text and apply a per-entity operator to each finding."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, ClassVar

from warden.privacy.entities import Entity, Finding
from warden.privacy.operators import ColumnStats, Operator, Redact, Rows, as_text, count_changes
from warden.privacy.text import TextAnalyzer, apply_findings


@dataclass(frozen=True)
class TextOperator(Operator):
    """Replaces every entity the analyzer finds in a value; entities without their own operator get a placeholder."""

    analyzer: TextAnalyzer
    per_entity: Mapping[Entity, Operator] = field(default_factory=dict)
    name: ClassVar[str] = "text"

    def operator_for(self, entity: Entity) -> Operator:
        """The operator applied to findings of ``entity``: the policy's, else ``redact`` with its placeholder."""
        return self.per_entity.get(entity) or Redact(entity.placeholder)

    def apply(self, values: list[Any], rows: Rows, stats: ColumnStats) -> list[Any]:
        """Each value with its findings replaced.

        Numbers and bytes are read as text too (a card or phone number stored as a JSON number is still
        one); a value with findings comes back as text, one without keeps its type. Booleans are left alone.
        """
        texts = [(i, as_text(v)) for i, v in enumerate(values) if _readable(v)]
        found = self.analyzer.analyze_many([v for _, v in texts])
        out = list(values)
        for (index, text), findings in zip(texts, found, strict=True):
            if findings:
                out[index] = apply_findings(text, findings, self._replace)
                for finding in findings:
                    stats.entities[finding.entity.value] = stats.entities.get(finding.entity.value, 0) + 1
        count_changes(stats, values, out)
        return out

    def _replace(self, finding: Finding, value: str) -> str:
        return self.operator_for(finding.entity).value(value)


def _readable(value: Any) -> bool:
    """Whether the text operator reads a cell: non-empty text, bytes, or a number (never a boolean)."""
    if isinstance(value, bool) or value is None:
        return False
    return bool(value) if isinstance(value, str | bytes | bytearray) else isinstance(value, int | float | Decimal)
