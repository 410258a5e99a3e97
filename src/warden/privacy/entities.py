"""What de-identification looks for: entity types, one finding, and the detector contract.

Every detector (patterns with validators, the NER pipeline, a face model) reports
:class:`Finding` spans over a string; the text analyzer merges them and the
operators replace them. Entity values are stable: they name placeholders
(``<EMAIL>``), policy keys and manifest counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol


class Entity(StrEnum):
    """A kind of personal data Warden finds; the value is the placeholder's name and the policy key."""

    EMAIL = "EMAIL"
    PHONE = "PHONE"
    IP_ADDRESS = "IP_ADDRESS"
    IBAN = "IBAN"
    CREDIT_CARD = "CREDIT_CARD"
    NATIONAL_ID = "NATIONAL_ID"
    DATE_OF_BIRTH = "DATE_OF_BIRTH"
    URL = "URL"
    MAC_ADDRESS = "MAC_ADDRESS"
    PERSON = "PERSON"
    ADDRESS = "ADDRESS"
    #: An organisation's own identifier of a person (patient id, customer number, MRN): found by column name.
    PERSON_ID = "PERSON_ID"

    @property
    def placeholder(self) -> str:
        """The typed placeholder ``redact`` writes in place of a value of this kind."""
        return f"<{self.value}>"


#: Entities that identify a person on their own (GDPR "direct identifiers").
DIRECT_IDENTIFIERS: frozenset[Entity] = frozenset(Entity)


@dataclass(frozen=True, slots=True, order=True)
class Finding:
    """One span ``text[start:end]`` that a detector judged to be ``entity``, with a score in (0, 1]."""

    start: int
    end: int
    entity: Entity
    score: float
    detector: str


class Detector(Protocol):
    """Finds entities in text; ``name`` and ``version`` go into manifests so a run can be reproduced."""

    @property
    def name(self) -> str:
        """A short stable name (``patterns``, ``spacy``)."""
        ...

    @property
    def version(self) -> str:
        """The version of the code or model doing the finding."""
        ...

    @property
    def entities(self) -> frozenset[Entity]:
        """The entity types this detector can report."""
        ...

    def find(self, text: str) -> list[Finding]:
        """Every finding in ``text``; overlaps are allowed and resolved by the caller."""
        ...

    def find_many(self, texts: Sequence[str]) -> list[list[Finding]]:
        """``find`` over many texts at once (a detector may batch, as an NER pipeline does)."""
        ...
