"""Hostile bodies of /v2 infer and /v1 detect: parsed off the event loop, within a small multiple of the body."""

from __future__ import annotations

import contextlib
import json
import threading
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.api.conftest import World
from tests.api.server import running_server
from warden.api import body as body_module
from warden.api import v2 as v2_module
from warden.api.body import MAX_PARTS, multipart_field
from warden.api.oip import parse_request
from warden.errors import InvalidArgument

MiB = 1 << 20


@pytest.fixture(scope="module")
def base_url(world: World) -> Iterator[str]:
    with running_server(world.client.app) as url:  # type: ignore[arg-type]
        yield url


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def infer_body(data: bytes, shape: list[int], datatype: str = "FP32") -> bytes:
    head = json.dumps({"name": "images", "shape": shape, "datatype": datatype})[:-1].encode()
    return b'{"inputs":[' + head + b',"data":' + data + b"}]}"


def peak_traced(work: Callable[[], object]) -> int:
    """The most memory Python and numpy held while ``work`` ran, above what was held before."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        with contextlib.suppress(InvalidArgument):
            work()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def test_the_reviewers_empty_lists_are_refused_within_a_small_multiple_of_the_body() -> None:
    body = infer_body(b"[" + b"[]," * 300_000 + b"[]]", [1])
    with pytest.raises(InvalidArgument, match="arrays and objects"):
        parse_request(body, None)
    assert peak_traced(lambda: parse_request(body, None)) <= 4 * len(body)


@pytest.mark.parametrize(
    ("data", "count", "datatype"),
    [
        pytest.param(b"0," * 999_999 + b"0", 1_000_000, "INT64", id="one-digit INT64 (8 bytes per 2)"),
        pytest.param(b"0.5," * 999_999 + b"0.5", 1_000_000, "FP32", id="FP32"),
        pytest.param(b"true," * 299_999 + b"true", 300_000, "BOOL", id="BOOL"),
    ],
)
def test_numeric_data_is_read_within_four_times_the_body(data: bytes, count: int, datatype: str) -> None:
    body = infer_body(b"[" + data + b"]", [count], datatype)
    _, tensors = parse_request(body, None)
    assert tensors["images"].array.shape == (count,)
    assert peak_traced(lambda: parse_request(body, None)) <= 4 * len(body) + 2 * MiB


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        pytest.param(infer_body(b'["' + b'",""' * 70_000 + b'"]', [1]), "strings", id="many strings"),
        pytest.param(infer_body(b"[0]", [1] * 70_000 + [1]), "values outside numeric data", id="a huge shape"),
        pytest.param(
            b'{"parameters":{"x":[' + b"0," * 70_000 + b'0]},"inputs":[]}', "values outside", id="huge parameters"
        ),
        pytest.param(infer_body(b"[1,2" + b"," * 3 + b"]", [5]), "values must be FP32", id="empty elements"),
        pytest.param(infer_body(b"[1,null]", [2]), "values must be FP32", id="null"),
        pytest.param(infer_body(b"[1,+2]", [2]), "values must be FP32", id="a plus sign"),
        pytest.param(infer_body(b"[1,-]", [2]), "values must be FP32", id="a lone minus"),
        pytest.param(infer_body(b"[1 2]", [1]), "values must be FP32", id="no comma"),
        pytest.param(infer_body(b"[[1,2],[3]]", [3]), "nested 2 deep", id="deeper than the rank"),
        pytest.param(infer_body(b"[1,2,3]", [2]), "3 values for shape", id="count"),
        pytest.param(infer_body(b"[1,2]", [2], "BYTES"), "must be strings", id="numbers as BYTES"),
        pytest.param(infer_body(b"[true,1]", [2], "BOOL"), "values must be BOOL", id="a number as BOOL"),
        pytest.param(infer_body(b"[truefalse]", [1], "BOOL"), "values must be BOOL", id="glued booleans"),
        pytest.param(infer_body(b"[1.5]", [1], "INT32"), "does not fit", id="a fraction as INT32"),
        pytest.param(infer_body(b"[4294967296]", [1], "INT32"), "does not fit", id="past INT32"),
        pytest.param(infer_body(b"[99999999999999999999]", [1], "INT64"), "does not fit", id="past INT64"),
        pytest.param(infer_body(b"[-1]", [1], "UINT8"), "does not fit", id="negative UINT8"),
        pytest.param(b'{"inputs":[{"data":[1', "not closed", id="unclosed"),
        pytest.param(b'{"inputs":[{"data":[1}]}', "do not match", id="mismatched"),
        pytest.param(b'{"inputs":[{"name":"x', "not closed", id="unclosed string"),
        pytest.param(b'{"inputs":[],"inputs":[]}', "given twice", id="inputs twice"),
        pytest.param(
            b'{"inputs":[{"name":"a","shape":[1],"datatype":"FP32","data":[1],"data":[2]}]}',
            "given twice",
            id="data twice",
        ),
    ],
)
def test_bad_json_bodies_are_invalid_arguments(body: bytes, needle: str) -> None:
    with pytest.raises(InvalidArgument, match=needle):
        parse_request(body, None)


NUMBERS = st.one_of(
    st.integers(-(2**31), 2**31 - 1).map(float), st.floats(allow_nan=False, allow_infinity=False, width=32)
)


@settings(max_examples=150, deadline=None)
@given(values=st.lists(NUMBERS, min_size=1, max_size=24), rows=st.integers(1, 4), spaced=st.booleans())
def test_numeric_data_reads_exactly_like_json(values: list[float], rows: int, spaced: bool) -> None:
    values = values[: len(values) - len(values) % rows] or values[:1] * rows
    nested = [values[i::rows] for i in range(rows)]
    nested = [values[i * (len(values) // rows) : (i + 1) * (len(values) // rows)] for i in range(rows)]
    separators = (", ", ": ") if spaced else (",", ":")
    data = json.dumps(nested, separators=separators).encode()
    for datatype, dtype in (("FP32", np.float32), ("FP64", np.float64)):
        body = infer_body(data, [rows, len(values) // rows], datatype)
        _, tensors = parse_request(body, None)
        np.testing.assert_array_equal(tensors["images"].array, np.asarray(nested, dtype=dtype))


def test_flat_and_nested_data_and_strings_give_the_same_tensors() -> None:
    flat = parse_request(infer_body(b"[1, 2, 3, 4, 5, 6]", [2, 3], "INT32"), None)[1]["images"].array
    nested = parse_request(infer_body(b"[[1,2,3],[4,5,6]]", [2, 3], "INT32"), None)[1]["images"].array
    assert flat.dtype == nested.dtype == np.int32
    np.testing.assert_array_equal(flat, nested)
    escaped = b'{"inputs":[{"name":"x","shape":[2],"datatype":"BYTES","d\\u0061ta":["a]","b\\"["]}]}'
    assert parse_request(escaped, None)[1]["x"].array.tolist() == ["a]", 'b"[']
    bools = parse_request(infer_body(b"[true, false]", [2], "BOOL"), None)[1]["images"].array
    assert bools.tolist() == [True, False]


@pytest.mark.parametrize(
    ("module", "name", "path", "content", "content_type"),
    [
        pytest.param(
            v2_module, "parse_request", "/v2/models/tiny/infer", infer_body(b"[[]]", [1]), "application/json", id="v2"
        ),
        pytest.param(
            body_module,
            "multipart_field",
            "/v1/models/tiny/detect",
            b"--B\r\n\r\n\r\n--B--\r\n",
            "multipart/form-data; boundary=B",
            id="v1",
        ),
    ],
)
def test_while_a_body_is_being_parsed_the_event_loop_serves_others(
    world: World,
    base_url: str,
    monkeypatch: pytest.MonkeyPatch,
    module: Any,
    name: str,
    path: str,
    content: bytes,
    content_type: str,
) -> None:
    entered, release, released = threading.Event(), threading.Event(), []
    real = getattr(module, name)

    def held(*args: Any) -> Any:
        entered.set()
        released.append(release.wait(timeout=60))
        return real(*args)

    monkeypatch.setattr(module, name, held)
    answers: list[int] = []
    headers = {**auth(world.alpha_detect), "Content-Type": content_type}
    big = threading.Thread(
        target=lambda: answers.append(httpx.post(base_url + path, content=content, headers=headers).status_code)
    )
    big.start()
    assert entered.wait(timeout=60)
    assert httpx.get(f"{base_url}/v2/health/live", timeout=60).status_code == 200
    release.set()
    big.join(timeout=60)
    assert released == [True], "the parse held the event loop: the cheap request came only after it gave up"
    assert answers == [400]


def multipart(*parts: bytes) -> bytes:
    return b"".join(b"--B\r\n" + part + b"\r\n" for part in parts) + b"--B--\r\n"


def named(name: str, content: bytes = b"x", extra: bytes = b"") -> bytes:
    return b'Content-Disposition: form-data; name="' + name.encode() + b'"\r\n' + extra + b"\r\n" + content


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        pytest.param(multipart(*[b"\r\n"] * 400_000), "more than 16 parts", id="400,000 empty parts"),
        pytest.param(multipart(*[named("other")] * MAX_PARTS, named("image")), "more than 16 parts", id="image 17th"),
        pytest.param(
            multipart(named("image", extra=b"X-Pad: " + b"a" * 5000 + b"\r\n")),
            "malformed multipart",
            id="a 5,000-byte part header (python-multipart's own line limit)",
        ),
        pytest.param(
            multipart(named("image", extra=b"X-Pad: " + b"a" * 4100 + b"\r\n" + b"X-Two: " + b"a" * 4100 + b"\r\n")),
            "bytes of headers",
            id="part headers past 8 KiB in all",
        ),
        pytest.param(
            multipart(named("image", extra=b"X: y\r\n" * 2000)),
            "malformed multipart",
            id="2,000 part headers (python-multipart's own count limit)",
        ),
        pytest.param(multipart(named("image"), named("image")), "more than one field named 'image'", id="two images"),
        pytest.param(multipart(named("other"), named("photo")), "no field named 'image'", id="no image"),
        pytest.param(b"--B\r\nnot a header line\r\n\r\n", "malformed multipart", id="malformed"),
    ],
)
def test_hostile_multipart_bodies_are_refused_within_a_small_multiple_of_the_body(content: bytes, needle: str) -> None:
    with pytest.raises(InvalidArgument, match=needle):
        multipart_field(content, b"B", "image")
    assert peak_traced(lambda: multipart_field(content, b"B", "image")) <= 2 * len(content) + 64 * 1024


def test_only_the_image_part_is_kept_among_others() -> None:
    image = b"\x89PNG" + bytes(range(256)) * 64
    content = multipart(named("note", b"n" * MiB), named("image", image), named("more", b"m" * MiB))
    assert multipart_field(content, b"B", "image") == image
    assert peak_traced(lambda: multipart_field(content, b"B", "image")) <= 4 * len(image) + 64 * 1024
