"""De-identification policies: a YAML file naming one operator per column, validated strictly.

::

    version: 1
    unlisted: error          # a file column the policy does not name: error (default), keep or drop
    columns:
      name: drop
      email: hash            # an operator name alone takes its defaults
      phone: {op: mask, keep_last: 2}
      birth_date: {op: generalize, date: year}
      zip: {op: generalize, prefix: 3}
      age: {op: generalize, bucket: 10, top: 90}
      visit: {op: date_shift, subject: patient_id, max_days: 180}
      notes: {op: text, entities: {PERSON: hash, PHONE: {op: mask, keep_last: 2}}}
    k_anonymity: {k: 5, quasi_identifiers: [age, zip, gender]}

A privacy tool must fail loudly: an unknown key, operator, option or column stops
the run with :class:`~warden.errors.InvalidPolicy` naming it; nothing falls back
to a default silently.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from warden.errors import InvalidPolicy, KeyRequired
from warden.privacy.entities import Entity
from warden.privacy.keys import DeidKey
from warden.privacy.operators import (
    DatePart,
    DateShift,
    Encrypt,
    GeneralizeDate,
    GeneralizeNumber,
    GeneralizePrefix,
    Hash,
    Keep,
    Mask,
    OnInvalid,
    Operator,
    Redact,
    placeholder,
)

_MAX_POLICY_BYTES = 1 << 20
_OPERATORS = frozenset({"drop", "keep", "redact", "mask", "hash", "encrypt", "generalize", "date_shift", "text"})
_NESTS = frozenset({"columns", "entities"})


class _StrictLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key written twice in one mapping (YAML would keep the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, str | int | float | bool) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {key!r} appears twice in one mapping", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _yaml_null(value: Any) -> Any:
    """``on_invalid: null`` written unquoted is YAML's null: it means the ``null`` choice, not "no value"."""
    return OnInvalid.NULL if value is None else value


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DropSpec(_Spec):
    """Remove the column from the output."""

    op: Literal["drop"]


class KeepSpec(_Spec):
    """Leave the column as it is."""

    op: Literal["keep"]


class RedactSpec(_Spec):
    """Replace every value by a placeholder: ``placeholder``, else ``<ENTITY>``, else ``<REDACTED>``."""

    op: Literal["redact"]
    entity: Entity | None = None
    placeholder: str | None = Field(default=None, min_length=1, max_length=64)


class MaskSpec(_Spec):
    """Hide every letter and digit but the last ``keep_last``."""

    op: Literal["mask"]
    keep_last: int = Field(default=4, ge=0, le=64)
    char: str = Field(default="*", min_length=1, max_length=1)

    @field_validator("char")
    @classmethod
    def _not_alphanumeric(cls, value: str) -> str:
        if value.isalnum():
            raise ValueError("the mask char must not be a letter or digit (masked text would look real)")
        return value


class HashSpec(_Spec):
    """Keyed HMAC-SHA256 pseudonym, ``length`` hex digits."""

    op: Literal["hash"]
    length: int = Field(default=16, ge=8, le=64)
    case_insensitive: bool = False
    prefix: str = Field(default="", max_length=32)


class EncryptSpec(_Spec):
    """Deterministic AES-SIV encryption, reversible with the key (and ``context``, if given)."""

    op: Literal["encrypt"]
    context: str = Field(default="", max_length=128)


class GeneralizeSpec(_Spec):
    """Coarsen: dates to a ``date`` part, numbers to ``bucket``-wide ranges (``top`` and over: one), or a ``prefix``."""

    op: Literal["generalize"]
    date: DatePart | None = None
    bucket: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    top: float | None = Field(default=None, allow_inf_nan=False)
    prefix: int | None = Field(default=None, ge=0, le=64)
    on_invalid: OnInvalid = OnInvalid.ERROR

    _null_is_null = field_validator("on_invalid", mode="before")(_yaml_null)

    @model_validator(mode="after")
    def _one_kind(self) -> GeneralizeSpec:
        kinds = [k for k in ("date", "bucket", "prefix") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError("generalize takes exactly one of date, bucket or prefix")
        if self.top is not None and self.bucket is None:
            raise ValueError("top applies to bucket only")
        return self


class DateShiftSpec(_Spec):
    """Shift dates by a secret per-subject number of days, derived from the key and the ``subject`` column."""

    op: Literal["date_shift"]
    subject: str = Field(min_length=1)
    max_days: int = Field(default=365, ge=1, le=36500)
    on_invalid: OnInvalid = OnInvalid.ERROR

    _null_is_null = field_validator("on_invalid", mode="before")(_yaml_null)


EntitySpec = Annotated[
    KeepSpec | RedactSpec | MaskSpec | HashSpec | EncryptSpec,
    Field(discriminator="op"),
]


class TextSpec(_Spec):
    """Find entities inside free text and apply ``entities[ENTITY]`` to each (default: its placeholder)."""

    op: Literal["text"]
    entities: dict[Entity, EntitySpec] = Field(default_factory=dict)
    ner: bool = True
    min_score: float = Field(default=0.5, gt=0, le=1)

    @field_validator("entities", mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: _expand(v) for k, v in value.items()}
        return value


ColumnSpec = Annotated[
    DropSpec | KeepSpec | RedactSpec | MaskSpec | HashSpec | EncryptSpec | GeneralizeSpec | DateShiftSpec | TextSpec,
    Field(discriminator="op"),
]


class KAnonymitySpec(_Spec):
    """Generalise, then suppress, the ``quasi_identifiers`` until every group has ``k`` rows or more."""

    k: int = Field(ge=2, le=10_000)
    quasi_identifiers: list[str] = Field(min_length=1)
    max_suppressed: float = Field(default=0.05, ge=0, le=1)


def _expand(value: Any) -> Any:
    return {"op": value} if isinstance(value, str) else value


class Policy(BaseModel):
    """A validated policy: one operator per column, what to do with the others, and an optional k target."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1] = 1
    unlisted: Literal["error", "keep", "drop"] = "error"
    national_ids: list[str] | None = None
    columns: dict[str, ColumnSpec] = Field(default_factory=dict)
    k_anonymity: KAnonymitySpec | None = None

    @field_validator("columns", mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: _expand(v) for k, v in value.items()}
        return value

    @classmethod
    def parse(cls, data: Any) -> Policy:
        """A policy from parsed YAML/JSON data; every problem is reported, each with its place."""
        if not isinstance(data, dict):
            raise InvalidPolicy("", "a policy is a mapping with a 'columns' key")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            problems = [(_where(e["loc"]), e["msg"].removeprefix("Value error, ")) for e in exc.errors()]
            (where, first), rest = problems[0], problems[1:]
            raise InvalidPolicy(where, "; ".join([first, *(f"{w}: {m}" for w, m in rest)])) from None

    @classmethod
    def load(cls, path: Path) -> Policy:
        """A policy from a YAML (or JSON) file."""
        try:
            with path.open("rb") as handle:
                raw = handle.read(_MAX_POLICY_BYTES + 1)
        except OSError as exc:
            raise InvalidPolicy("", f"cannot read policy {path}: {exc.strerror or exc}") from exc
        if len(raw) > _MAX_POLICY_BYTES:
            raise InvalidPolicy("", f"policy {path} is larger than 1 MiB")
        try:
            data = yaml.load(raw, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
        except yaml.YAMLError as exc:
            raise InvalidPolicy("", f"policy {path} is not valid YAML: {' '.join(str(exc).split())}") from None
        return cls.parse(data)

    @property
    def sha256(self) -> str:
        """The hash of the policy's canonical form: equal for equal policies however the YAML was written."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def needs_key(self) -> bool:
        """Whether any operator is keyed (hash, encrypt, date_shift), inside free text included."""
        keyed = (HashSpec, EncryptSpec, DateShiftSpec)
        for spec in self.columns.values():
            if isinstance(spec, keyed):
                return True
            if isinstance(spec, TextSpec) and any(isinstance(e, keyed) for e in spec.entities.values()):
                return True
        return False

    def check_columns(self, columns: Sequence[str], source: str, *, complete: bool = True) -> None:
        """Refuse a policy that names a column the file lacks, or leaves a file column unnamed under ``error``.

        With ``complete`` false (JSON Lines before its last record, where a key may first appear late), only
        the second is checked: a column seen so far that the policy does not name.
        """
        present = set(columns)
        if complete:
            self._check_present(present, source, columns)
        if self.unlisted == "error":
            missing = [c for c in columns if c not in self.columns]
            if missing:
                raise InvalidPolicy(
                    "columns",
                    f"the policy does not say what to do with {_names(missing)} of {source}; "
                    "name each (keep, drop, redact, …) or set 'unlisted: keep' or 'unlisted: drop'",
                )

    def _check_present(self, present: set[str], source: str, columns: Sequence[str]) -> None:
        for name, spec in self.columns.items():
            if name not in present:
                raise InvalidPolicy(f"columns.{name}", f"{source} has no column {name!r}; it has {_names(columns)}")
            if isinstance(spec, DateShiftSpec) and spec.subject not in present:
                raise InvalidPolicy(f"columns.{name}.subject", f"{source} has no column {spec.subject!r}")
        if self.k_anonymity is not None:
            for name in self.k_anonymity.quasi_identifiers:
                if name not in present:
                    raise InvalidPolicy("k_anonymity.quasi_identifiers", f"{source} has no column {name!r}")

    def spec_for(self, column: str) -> ColumnSpec:
        """The operator spec of ``column``, the ``unlisted`` rule's for a column the policy does not name."""
        spec = self.columns.get(column)
        if spec is not None:
            return spec
        return DropSpec(op="drop") if self.unlisted == "drop" else KeepSpec(op="keep")


def _where(loc: Sequence[int | str]) -> str:
    """A validation error's place as the policy spells it: ``columns.phone.keep_lst``, ``columns.notes.entities.X``.

    Pydantic adds the operator's name after a column or entity (``columns.phone.mask.keep_lst``) and
    ``[key]`` after a bad mapping key; neither is in the policy file, so both are left out.
    """
    parts = [str(part) for part in loc if part != "[key]"]
    return ".".join(
        part for i, part in enumerate(parts) if not (i >= 2 and parts[i - 2] in _NESTS and part in _OPERATORS)
    )


def _names(columns: Sequence[str]) -> str:
    shown = ", ".join(repr(c) for c in list(columns)[:20])
    return shown + (f" and {len(columns) - 20} more" if len(columns) > 20 else "")


def build_operator(
    spec: ColumnSpec | EntitySpec,
    key: DeidKey | None,
    text_operator: Callable[[TextSpec, dict[Entity, Operator]], Operator] | None = None,
    where: str = "",
) -> Operator | None:
    """The operator a spec describes (``None`` for ``drop``); keyed operators need ``key``."""
    match spec:
        case DropSpec():
            return None
        case KeepSpec():
            return Keep()
        case RedactSpec():
            return Redact(spec.placeholder or placeholder(spec.entity.value if spec.entity else None))
        case MaskSpec():
            return Mask(spec.keep_last, spec.char)
        case HashSpec():
            options = {"length": spec.length, "case_insensitive": spec.case_insensitive, "prefix": spec.prefix}
            return Hash.from_key(_keyed(key, spec, where), **options)
        case EncryptSpec():
            return Encrypt.from_key(_keyed(key, spec, where), context=spec.context)
        case GeneralizeSpec():
            return _generalize(spec)
        case DateShiftSpec():
            return DateShift.from_key(
                _keyed(key, spec, where), subject=spec.subject, max_days=spec.max_days, on_invalid=spec.on_invalid
            )
        case TextSpec():
            if text_operator is None:
                raise InvalidPolicy(where, "free-text operators are not available here")
            per_entity = {
                entity: op
                for entity, entity_spec in spec.entities.items()
                if (op := build_operator(entity_spec, key, where=f"{where}.entities.{entity.value}")) is not None
            }
            return text_operator(spec, per_entity)
    raise InvalidPolicy(where, f"unknown operator {spec!r}")  # pragma: no cover - the union is closed


def _keyed(key: DeidKey | None, spec: HashSpec | EncryptSpec | DateShiftSpec, where: str) -> DeidKey:
    if key is None:
        raise KeyRequired(f"{where or spec.op}: the {spec.op} operator needs a key (--key-file); no key, no pseudonym")
    return key


def _generalize(spec: GeneralizeSpec) -> Operator:
    if spec.date is not None:
        return GeneralizeDate(on_invalid=spec.on_invalid, part=spec.date)
    if spec.bucket is not None:
        return GeneralizeNumber(on_invalid=spec.on_invalid, width=spec.bucket, top=spec.top)
    return GeneralizePrefix(on_invalid=spec.on_invalid, length=spec.prefix or 0)
