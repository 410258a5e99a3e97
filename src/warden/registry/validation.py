"""Upload validation: only a self-contained ONNX detection model that ONNX Runtime can run gets in.

Checks, cheapest first: size; a parseable ONNX protobuf; no tensor anywhere
referring to external data (a path-traversal hole: ONNX Runtime would open files
named by the upload); loadable by ONNX Runtime; an output layout that
``warden.detection`` recognises; one inference on a blank image.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import onnx
from google.protobuf.message import DecodeError

from warden.detection import DetectionModel, ModelInfo
from warden.errors import InvalidModel, PayloadTooLarge


def validate_model(data: bytes, max_bytes: int) -> ModelInfo:
    """Validate uploaded model bytes and return what the detection runtime learnt about them."""
    if not data:
        raise InvalidModel("the upload is empty")
    if len(data) > max_bytes:
        raise PayloadTooLarge(f"the model has {len(data)} bytes; the limit is {max_bytes}")
    try:
        proto = onnx.load_from_string(data)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise InvalidModel(f"not an ONNX model: {exc or type(exc).__name__}") from None
    if not proto.graph.node and not proto.graph.output:
        raise InvalidModel("not an ONNX model: the graph is empty")
    for tensor in _tensors(proto):
        if tensor.data_location == onnx.TensorProto.EXTERNAL or len(tensor.external_data):
            raise InvalidModel(
                f"tensor {tensor.name!r} refers to external data; upload a self-contained model "
                "(onnx.save with save_as_external_data=False)"
            )
    model = DetectionModel.load(data)
    height, width = model.info.input_hw
    model.detect_rgb([np.zeros((height, width, 3), dtype=np.uint8)])
    return model.info


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


def _tensors(proto: onnx.ModelProto) -> Iterator[onnx.TensorProto]:
    yield from _graph_tensors(proto.graph)
    for function in proto.functions:
        for node in function.node:
            yield from _node_tensors(node)


def _graph_tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        yield from _node_tensors(node)


def _node_tensors(node: onnx.NodeProto) -> Iterator[onnx.TensorProto]:
    for attribute in node.attribute:
        if attribute.HasField("t"):
            yield attribute.t
        yield from attribute.tensors
        if attribute.HasField("sparse_tensor"):
            yield attribute.sparse_tensor.values
            yield attribute.sparse_tensor.indices
        if attribute.HasField("g"):
            yield from _graph_tensors(attribute.g)
        for graph in attribute.graphs:
            yield from _graph_tensors(graph)
