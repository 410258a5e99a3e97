"""Open Inference Protocol v2 tensors: JSON and Triton's binary tensor extension, to numpy and back.

With the binary extension the body starts with a JSON header whose length is
given by ``Inference-Header-Content-Length``; each input with a
``binary_data_size`` parameter takes that many of the following bytes, in input
order. BYTES elements travel there as a 4-byte little-endian length then the
bytes; in JSON they are strings.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from warden.api.answers import AnswerBudget, dumps, json_values
from warden.api.oip_json import from_numbers, scan
from warden.errors import InvalidArgument

HEADER_LENGTH: Final = "Inference-Header-Content-Length"
DATATYPES: Final[dict[str, npt.DTypeLike]] = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
    "BYTES": np.object_,
}
_MAX_DEPTH: Final = 8
_MAX_ELEMENTS: Final = 64 * 1024 * 1024


class InferInput(BaseModel):
    """One input tensor of an inference request."""

    model_config = ConfigDict(extra="forbid")

    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: Any = None


class RequestedOutput(BaseModel):
    """An output the client asks for (``binary_data`` asks for it in binary form)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    parameters: dict[str, Any] | None = None


class InferRequest(BaseModel):
    """An inference request; ``parameters`` may carry ``conf``, ``iou`` and ``max_det``."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[InferInput] = Field(min_length=1)
    outputs: list[RequestedOutput] | None = None


class OutputTensor(BaseModel):
    """One output tensor of an inference response (``data`` absent when sent in binary)."""

    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: list[Any] | None = None


class InferResponse(BaseModel):
    """An inference response."""

    model_name: str
    model_version: str | None = None
    id: str | None = None
    parameters: dict[str, Any] | None = None
    outputs: list[OutputTensor]


@dataclass(frozen=True, slots=True)
class Tensor:
    """A decoded tensor: BYTES tensors hold ``bytes`` (binary) or ``str`` (JSON) objects."""

    name: str
    datatype: str
    array: npt.NDArray[Any]


def parse_request(body: bytes, header_length: str | None) -> tuple[InferRequest, dict[str, Tensor]]:
    """Decode a request body (JSON, or JSON header + binary tensors) into its header and tensors by name."""
    split = len(body)
    if header_length is not None:
        if not (header_length.isascii() and header_length.isdigit()) or int(header_length) > len(body):
            raise InvalidArgument(f"{HEADER_LENGTH} {header_length!r} does not fit a body of {len(body)} bytes")
        split = int(header_length)
    header = body[:split]
    skeleton = scan(header)
    try:
        request = InferRequest.model_validate_json(skeleton.without_numbers(header))
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors()[:5])
        raise InvalidArgument(f"invalid inference request: {problems}") from None
    binary = memoryview(body)[split:]
    offset = 0
    tensors: dict[str, Tensor] = {}
    for index, item in enumerate(request.inputs):
        if item.name in tensors:
            raise InvalidArgument(f"input {item.name!r} is given twice")
        dtype, count = _check_header(item)
        size = (item.parameters or {}).get("binary_data_size")
        if size is not None:
            if not isinstance(size, int) or size < 0 or offset + size > len(binary):
                raise InvalidArgument(f"input {item.name!r}: binary_data_size {size!r} exceeds the binary data")
            array = _from_binary(item, dtype, count, bytes(binary[offset : offset + size]))
            offset += size
        elif index in skeleton.numbers:
            array = from_numbers(item, dtype, count, header, *skeleton.numbers[index])
        else:
            array = _from_json(item, dtype, count)
        tensors[item.name] = Tensor(item.name, item.datatype, array.reshape(item.shape))
    if offset != len(binary):
        raise InvalidArgument(f"{len(binary) - offset} bytes of binary data belong to no input")
    return request, tensors


def encode_response(
    request: InferRequest, model_name: str, version: str, outputs: list[Tensor], budget: AnswerBudget
) -> tuple[bytes, str, int | None]:
    """Encode outputs, each in JSON or binary as the request asked; returns body, media type, header length.

    The answer is written a piece at a time within ``budget`` (``AnswerTooLarge`` past it); its
    JSON is what :class:`InferResponse` describes, ``None`` fields left out.
    """
    wanted = {o.name: o for o in request.outputs} if request.outputs else None
    default_binary = bool((request.parameters or {}).get("binary_data_output", False))
    entries: list[bytes] = []
    blobs: list[bytes] = []
    for tensor in outputs:
        if wanted is not None and tensor.name not in wanted:
            continue
        asked = wanted[tensor.name].parameters if wanted is not None else None
        binary = bool((asked or {}).get("binary_data", default_binary))
        head: dict[str, Any] = {"name": tensor.name, "shape": list(tensor.array.shape), "datatype": tensor.datatype}
        if binary:
            budget.take(tensor.array.nbytes)
            blobs.append(np.ascontiguousarray(tensor.array).tobytes())
            head["parameters"] = {"binary_data_size": len(blobs[-1])}
            entry = dumps(head)
            budget.take(len(entry) + 1)
        else:
            opening = dumps(head)[:-1] + b',"data":'
            budget.take(len(opening) + 2)
            entry = opening + json_values(tensor.array, budget) + b"}"
        entries.append(entry)
    top: dict[str, Any] = {"model_name": model_name, "model_version": version}
    if request.id is not None:
        top["id"] = request.id
    opening = dumps(top)[:-1] + b',"outputs":['
    budget.take(len(opening) + 2)
    header = opening + b",".join(entries) + b"]}"
    if not blobs:
        return header, "application/json", None
    return header + b"".join(blobs), "application/octet-stream", len(header)


def check_requested_outputs(request: InferRequest, available: list[str]) -> None:
    """Refuse requested outputs the model does not produce."""
    for output in request.outputs or []:
        if output.name not in available:
            raise InvalidArgument(f"unknown output {output.name!r}; this model offers {', '.join(available)}")


def _check_header(item: InferInput) -> tuple[npt.DTypeLike, int]:
    dtype = DATATYPES.get(item.datatype)
    if dtype is None:
        raise InvalidArgument(f"input {item.name!r}: unknown datatype {item.datatype!r}")
    if any(d < 0 for d in item.shape):
        raise InvalidArgument(f"input {item.name!r}: shape {item.shape} has a negative dimension")
    count = math.prod(item.shape)
    if count > _MAX_ELEMENTS:
        raise InvalidArgument(f"input {item.name!r}: {count} elements is too many")
    return dtype, count


def _from_binary(item: InferInput, dtype: npt.DTypeLike, count: int, raw: bytes) -> npt.NDArray[Any]:
    if item.datatype != "BYTES":
        itemsize = np.dtype(dtype).itemsize
        if len(raw) != count * itemsize:
            need = count * itemsize
            raise InvalidArgument(
                f"input {item.name!r}: {len(raw)} bytes for {item.shape} {item.datatype} (need {need})"
            )
        return np.frombuffer(raw, dtype=dtype).copy()
    elements: list[bytes] = []
    offset = 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise InvalidArgument(f"input {item.name!r}: truncated BYTES element length")
        (length,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + length > len(raw):
            raise InvalidArgument(f"input {item.name!r}: a BYTES element runs past the data")
        elements.append(raw[offset : offset + length])
        offset += length
    if len(elements) != count:
        raise InvalidArgument(f"input {item.name!r}: {len(elements)} BYTES elements for shape {item.shape}")
    array = np.empty(count, dtype=object)
    array[:] = elements
    return array


def _from_json(item: InferInput, dtype: npt.DTypeLike, count: int) -> npt.NDArray[Any]:
    if item.data is None:
        raise InvalidArgument(f"input {item.name!r} has no data")
    flat = _flatten(item.data, 0, item.name)
    if len(flat) != count:
        raise InvalidArgument(f"input {item.name!r}: {len(flat)} values for shape {item.shape}")
    if item.datatype == "BYTES":
        if not all(isinstance(v, str) for v in flat):
            raise InvalidArgument(f"input {item.name!r}: BYTES elements must be strings in JSON")
        array = np.empty(count, dtype=object)
        array[:] = flat
        return array
    numeric = (
        all(isinstance(v, bool) for v in flat)
        if item.datatype == "BOOL"
        else all(isinstance(v, int | float) and not isinstance(v, bool) for v in flat)
    )
    if not numeric:
        raise InvalidArgument(f"input {item.name!r}: values must be {item.datatype}")
    try:
        return np.asarray(flat, dtype=dtype)
    except (OverflowError, ValueError):
        raise InvalidArgument(f"input {item.name!r}: a value does not fit the datatype {item.datatype}") from None


def _flatten(value: Any, depth: int, name: str) -> list[Any]:
    if not isinstance(value, list):
        return [value]
    if depth > _MAX_DEPTH:
        raise InvalidArgument(f"input {name!r}: data nested too deeply")
    if all(not isinstance(v, list) for v in value):
        return value
    flat: list[Any] = []
    for element in value:
        flat.extend(_flatten(element, depth + 1, name))
    return flat
