"""Upload validation: only a self-contained ONNX detection model that ONNX Runtime can run gets in.

Checks, cheapest first: size; a count of the protobuf messages in the raw bytes (before
protobuf builds them); a parseable ONNX protobuf; a structural walk of every message
(``onnx_walk``: no external data anywhere, no unknown message types or fields, bounded
nesting and size, dense tensors whose data matches their dims, no custom operators,
shadowed contrib operators or recursive functions);
bounded metadata; loadable by ONNX Runtime under the session memory limit; an
input, batch and class count within bounds; an output layout that
``warden.detection`` recognises; runs on four varied images (black, white, noise, a
photo), each within ``WARDEN_MAX_RUN_MS``, timed (``run_cap``). Every refusal is an
``InvalidModel``/``UnsupportedModel`` (``ModelTooSlow`` for a run past the limit) with a
message a tenant may read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from google.protobuf.message import DecodeError

from warden.detection import DetectionModel, ModelInfo
from warden.detection.metadata import check_metadata_size
from warden.detection.model import DEFAULT_MEMORY_LIMIT
from warden.errors import InvalidModel, PayloadTooLarge
from warden.registry.onnx_walk import WalkLimits, check_structure, check_wire
from warden.registry.run_cap import DEFAULT_MAX_RUN_MS, measure_run_ms


@dataclass(frozen=True, slots=True)
class ValidatedModel:
    """What validation learnt: the model's detection facts and its slowest measured run, in ms."""

    info: ModelInfo
    measured_run_ms: float


def validate_model(
    data: bytes,
    max_bytes: int,
    memory_limit: int = DEFAULT_MEMORY_LIMIT,
    *,
    max_run_ms: float = DEFAULT_MAX_RUN_MS,
    threads: int | None = None,
) -> ValidatedModel:
    """Validate uploaded model bytes, measure their runs, and return what the detection runtime learnt.

    ``memory_limit`` caps, in bytes, what the validation session may allocate (and the
    dense size of the model's sparse tensors), as serving caps each session; ``max_run_ms``
    what one run may take; ``threads`` the session's intra-op threads (serving's, so the
    measurement is what serving will see; ``None``: one per core).
    """
    if not data:
        raise InvalidModel("the upload is empty")
    if len(data) > max_bytes:
        raise PayloadTooLarge(f"the model has {len(data)} bytes; the limit is {max_bytes}")
    limits = WalkLimits(max_sparse_bytes=memory_limit)
    check_wire(data, limits)
    try:
        proto = onnx.load_from_string(data)
    except (DecodeError, ValueError, RuntimeError, RecursionError) as exc:
        raise InvalidModel(f"not an ONNX model: {exc or type(exc).__name__}") from None
    if not proto.graph.node and not proto.graph.output:
        raise InvalidModel("not an ONNX model: the graph is empty")
    check_structure(proto, limits)
    check_metadata_size({entry.key: entry.value for entry in proto.metadata_props})
    model = DetectionModel.load(data, threads=threads, memory_limit=memory_limit)
    return ValidatedModel(model.info, measure_run_ms(model, max_run_ms))


def info_to_json(info: ModelInfo) -> dict[str, Any]:
    """A JSON-friendly record of a model's detection facts, stored with its version."""
    return {
        "input_name": info.input_name,
        "output_name": info.output_name,
        "input_dtype": np.dtype(info.input_dtype).name,
        "input_hw": list(info.input_hw),
        "dynamic_hw": info.dynamic_hw,
        "batch": info.batch,
        "layout": info.layout.value,
        "num_classes": info.num_classes,
        "names": list(info.names),
    }
