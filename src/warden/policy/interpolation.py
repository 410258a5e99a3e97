"""Compose-style variable interpolation, so a compose file is checked as ``docker compose`` would run it.

``$$`` is a literal ``$``; ``$VAR`` and ``${VAR}`` take the variable's value; ``${VAR:-x}``
(unset or empty) and ``${VAR-x}`` (unset) fall back to ``x``; ``${VAR:+x}`` and ``${VAR+x}``
give ``x`` when set. ``${VAR:?msg}`` and ``${VAR?msg}``, and a plain reference to an unset
variable, stay as written: the value is chosen at deploy time and cannot be checked here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

_REFERENCE: Final = re.compile(
    r"\$(?:(?P<escaped>\$)|(?P<bare>[A-Za-z_][A-Za-z0-9_]*)"
    r"|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-+?])(?P<word>[^}]*))?\})"
)


def _substitute(match: re.Match[str], environ: Mapping[str, str]) -> str:
    if match["escaped"]:
        return "$"
    name = match["bare"] or match["name"]
    value = environ.get(name)
    op, word = match["op"], match["word"] or ""
    if op is None:
        return match.group(0) if value is None else value
    present = value is not None and (value != "" or not op.startswith(":"))
    if op.endswith("-"):
        return value if present and value is not None else word
    if op.endswith("+"):
        return word if present else ""
    return value if present and value is not None else match.group(0)  # ?: required, left for deploy time


def interpolate(value: Any, environ: Mapping[str, str]) -> Any:
    """``value`` (a string, or lists and mappings of them) with every reference it can resolve resolved."""
    if isinstance(value, str):
        return _REFERENCE.sub(lambda match: _substitute(match, environ), value)
    if isinstance(value, list):
        return [interpolate(item, environ) for item in value]
    if isinstance(value, Mapping):
        return {key: interpolate(item, environ) for key, item in value.items()}
    return value
