"""Ultralytics export metadata (class names, input size, stride, task) and labels files.

Ultralytics writes Python literals into the ONNX ``metadata_props`` (for example
``names = "{0: 'person', 1: 'car'}"``); they are parsed with ``ast.literal_eval``,
never evaluated, and a malformed value is reported rather than guessed.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from warden.errors import InvalidArgument, InvalidModel, UnsupportedModel

_MAX_LITERAL: Final = 1_000_000
MAX_CLASS_NAME: Final = 256
"""Longest class name, in characters: a name is copied into every detection of an answer."""
MAX_CLASS_NAMES: Final = 10_000
"""Most class names a model or labels file may give (more than any real detection model has)."""
MAX_METADATA_ENTRIES: Final = 1_000
"""Most ``metadata_props`` entries a model may carry."""
MAX_METADATA_KEY: Final = 256
"""Longest ``metadata_props`` key, in characters."""
MAX_METADATA_TOTAL: Final = 4_000_000
"""Most characters all ``metadata_props`` keys and values may hold together (one value holds at most 1,000,000)."""
_NON_DETECTION_TASKS: Final = {
    "segment": "instance segmentation",
    "pose": "pose estimation",
    "classify": "classification",
    "obb": "oriented bounding boxes",
}


@dataclass(frozen=True, slots=True)
class ModelMetadata:
    """What the export says about itself; every field is ``None`` when the export does not say."""

    names: tuple[str, ...] | None = None
    imgsz: tuple[int, int] | None = None
    stride: int | None = None
    task: str | None = None
    end2end: bool | None = None


def parse_metadata(props: Mapping[str, str]) -> ModelMetadata:
    """Read Ultralytics' keys from an ONNX metadata map and refuse non-detection tasks."""
    check_metadata_size(props)
    task = props.get("task")
    if task in _NON_DETECTION_TASKS:
        raise UnsupportedModel(
            f"the model's task is '{task}' ({_NON_DETECTION_TASKS[task]}); only 'detect' models are served"
        )
    if task is not None and task != "detect":
        raise UnsupportedModel(f"the model's task is '{task}'; only 'detect' models are served")
    names = _names(props["names"]) if "names" in props else None
    imgsz = _imgsz(props["imgsz"]) if "imgsz" in props else None
    stride = _int(props, "stride")
    end2end = _end2end(props)
    return ModelMetadata(names=names, imgsz=imgsz, stride=stride, task=task, end2end=end2end)


def check_metadata_size(props: Mapping[str, str]) -> None:
    """Refuse (``InvalidModel``) metadata with too many entries, a long key or value, or too much text in all."""
    if len(props) > MAX_METADATA_ENTRIES:
        raise InvalidModel(f"the model has {len(props)} metadata entries; at most {MAX_METADATA_ENTRIES} are accepted")
    total = 0
    for key, value in props.items():
        if len(key) > MAX_METADATA_KEY:
            raise InvalidModel(f"a metadata key is {len(key)} characters long; at most {MAX_METADATA_KEY} are accepted")
        if len(value) > _MAX_LITERAL:
            raise InvalidModel(f"metadata '{key}' is too long ({len(value)} characters; at most {_MAX_LITERAL})")
        total += len(key) + len(value)
    if total > MAX_METADATA_TOTAL:
        raise InvalidModel(f"the model's metadata holds {total} characters; at most {MAX_METADATA_TOTAL} are accepted")


def load_labels(path: Path) -> tuple[str, ...]:
    """Read class names from a labels file: one name per line, or JSON (a list or an id→name map)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"cannot read labels file {path}: {exc}") from None
    if path.suffix.lower() == ".json":
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidArgument(f"labels file {path} is not valid JSON: {exc}") from None
        return _names_from_value(value, f"labels file {path}", error=InvalidArgument)
    names = tuple(line.strip() for line in text.splitlines() if line.strip())
    if not names:
        raise InvalidArgument(f"labels file {path} holds no names")
    return _bounded(names, f"labels file {path}", InvalidArgument)


def _literal(key: str, text: str) -> object:
    if len(text) > _MAX_LITERAL:
        raise InvalidModel(f"metadata '{key}' is too long ({len(text)} characters)")
    try:
        return ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError) as exc:
        raise InvalidModel(f"metadata '{key}' is not a Python literal: {exc}") from None


def _names(text: str) -> tuple[str, ...]:
    return _names_from_value(_literal("names", text), "metadata 'names'", error=InvalidModel)


def _names_from_value(
    value: object, where: str, *, error: type[InvalidModel] | type[InvalidArgument]
) -> tuple[str, ...]:
    if isinstance(value, list) and all(isinstance(n, str) for n in value) and value:
        return _bounded(tuple(value), where, error)
    if isinstance(value, dict) and value:
        ids = [_class_id(k) for k in value]
        known = {i for i in ids if i is not None}
        if len(known) != len(value):
            raise error(f"{where}: class ids must be distinct non-negative integers")
        names = dict(zip(ids, value.values(), strict=True))
        if known != set(range(len(known))) or not all(isinstance(v, str) for v in names.values()):
            raise error(f"{where}: expected names for class ids 0..{len(known) - 1}")
        return _bounded(tuple(str(names[i]) for i in range(len(known))), where, error)
    raise error(f"{where}: expected a non-empty list of names or a map of class id to name")


def _bounded(names: tuple[str, ...], where: str, error: type[InvalidModel] | type[InvalidArgument]) -> tuple[str, ...]:
    if len(names) > MAX_CLASS_NAMES:
        raise error(f"{where}: {len(names)} class names; at most {MAX_CLASS_NAMES} are accepted")
    for index, name in enumerate(names):
        if len(name) > MAX_CLASS_NAME:
            raise error(
                f"{where}: class {index}'s name is {len(name)} characters long; at most {MAX_CLASS_NAME} are accepted"
            )
    return names


def _class_id(key: object) -> int | None:
    if isinstance(key, str) and key.isascii() and key.isdigit():
        return int(key)
    if isinstance(key, bool) or not isinstance(key, int) or key < 0:
        return None
    return key


def _positive_int(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        return None
    return value


def _imgsz(text: str) -> tuple[int, int]:
    value = _literal("imgsz", text)
    single = _positive_int(value)
    if single is not None:
        return (single, single)
    if isinstance(value, list | tuple) and len(value) == 2:
        height, width = _positive_int(value[0]), _positive_int(value[1])
        if height is not None and width is not None:
            return (height, width)
    raise InvalidModel(f"metadata 'imgsz' must be an int or [height, width], got {text!r}")


def _int(props: Mapping[str, str], key: str) -> int | None:
    if key not in props:
        return None
    value = _literal(key, props[key])
    single = _positive_int(value)
    if single is not None:
        return single
    if isinstance(value, list) and value:
        numbers = [n for n in map(_positive_int, value) if n is not None]
        if len(numbers) == len(value):
            return max(numbers)
    raise InvalidModel(f"metadata '{key}' must be a positive integer, got {props[key]!r}")


def _end2end(props: Mapping[str, str]) -> bool | None:
    if "end2end" in props:
        return props["end2end"].strip().lower() == "true"
    if "args" in props:
        args = _literal("args", props["args"])
        # nms=True exports are end-to-end; nms=False says nothing (YOLOv10 is end-to-end anyway).
        if isinstance(args, dict) and args.get("nms") is True:
            return True
    return None
