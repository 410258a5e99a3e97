"""A structural walk over every message of an uploaded ONNX model, refusing what could reach past the upload.

The walk follows the protobuf descriptors, not a hand-kept list of places: every message-typed field
(singular, repeated or map) is visited at any depth — graphs, nodes, attributes and their subgraphs, local
functions and their default attributes, training info, sparse tensors. It fails closed on:

- a tensor with external data (ONNX Runtime would open the file it names);
- a message type it does not know (one that a newer ONNX adds: judge it before accepting it);
- a field the schema does not define (protobuf keeps it as an unknown field, which a newer parser may read);
- nesting deeper than ``max_depth`` or more than ``max_messages`` messages;
- sparse tensors whose dense form (ONNX Runtime densifies them at load, outside any arena) exceeds a byte budget.

It then judges the operators: a node must be a standard ONNX operator (domain ``""`` or ``ai.onnx``) or call a
local function of the model; custom-operator domains (``com.microsoft`` contrib ops included) are refused, as are
recursive functions and call trees that expand past ``max_nodes`` nodes.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Final

import onnx
from google.protobuf import unknown_fields
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from warden.errors import InvalidModel

KNOWN_MESSAGES: Final = frozenset(
    {
        "onnx.ModelProto",
        "onnx.GraphProto",
        "onnx.NodeProto",
        "onnx.AttributeProto",
        "onnx.TensorProto",
        "onnx.TensorProto.Segment",
        "onnx.SparseTensorProto",
        "onnx.ValueInfoProto",
        "onnx.TypeProto",
        "onnx.TypeProto.Tensor",
        "onnx.TypeProto.Sequence",
        "onnx.TypeProto.Map",
        "onnx.TypeProto.Optional",
        "onnx.TypeProto.SparseTensor",
        "onnx.TypeProto.Opaque",
        "onnx.TensorShapeProto",
        "onnx.TensorShapeProto.Dimension",
        "onnx.StringStringEntryProto",
        "onnx.OperatorSetIdProto",
        "onnx.FunctionProto",
        "onnx.TrainingInfoProto",
        "onnx.TensorAnnotation",
        "onnx.DeviceConfigurationProto",
        "onnx.NodeDeviceConfigurationProto",
        "onnx.ShardingSpecProto",
        "onnx.ShardedDimProto",
        "onnx.SimpleShardedDimProto",
        "onnx.IntIntListEntryProto",
    }
)
"""The ONNX message types the walker knows how to judge; any other type in a model is refused."""

STANDARD_DOMAINS: Final = frozenset({"", "ai.onnx"})
"""Operator domains served without a local function: the default ONNX operator set only."""

MAX_DEPTH: Final = 100
"""Deepest message nesting walked (protobuf's own parser stops at 100 too)."""
MAX_MESSAGES: Final = 2_000_000
"""Most messages walked in one model."""
MAX_NODES: Final = 100_000
"""Most nodes a model may have once every local function is expanded (real detection models have a few thousand)."""

_STRING_BYTES: Final = 32  # what ONNX Runtime holds per string element (a std::string)
_FunctionKey = tuple[str, str, str]  # (domain, name, overload)
_Path = tuple["_Path | None", str] | None


@dataclass(frozen=True, slots=True)
class WalkLimits:
    """Bounds on the walk; ``max_sparse_bytes`` caps the dense size of all sparse tensors together."""

    max_sparse_bytes: int
    max_depth: int = MAX_DEPTH
    max_messages: int = MAX_MESSAGES
    max_nodes: int = MAX_NODES
    known: frozenset[str] = KNOWN_MESSAGES


@dataclass(slots=True)
class _Walk:
    limits: WalkLimits
    messages: int = 0
    sparse_bytes: int = 0
    nodes: dict[int | None, list[onnx.NodeProto]] = field(default_factory=dict)


def check_structure(model: onnx.ModelProto, limits: WalkLimits) -> None:
    """Walk every message of ``model`` and refuse it (``InvalidModel``) on the first thing that fails closed."""
    walk = _Walk(limits)
    stack: list[tuple[Message, int, int | None, _Path]] = [(model, 1, None, None)]
    while stack:
        message, depth, owner, path = stack.pop()
        _judge(message, depth, path, walk)
        if isinstance(message, onnx.NodeProto):
            walk.nodes.setdefault(owner, []).append(message)
        for child, name, index in _children(message):
            in_function = isinstance(message, onnx.ModelProto) and name == "functions" and isinstance(index, int)
            inside = index if in_function and isinstance(index, int) else owner
            label = name if index is None else f"{name}[{index}]"
            stack.append((child, depth + 1, inside, (path, label)))
    _check_operators(model, walk)


def _judge(message: Message, depth: int, path: _Path, walk: _Walk) -> None:
    limits = walk.limits
    walk.messages += 1
    if walk.messages > limits.max_messages:
        raise InvalidModel(f"the model holds more than {limits.max_messages} protobuf messages")
    if depth > limits.max_depth:
        raise InvalidModel(f"the model nests messages deeper than {limits.max_depth} at {_show(path)}")
    name = message.DESCRIPTOR.full_name
    if name not in limits.known:
        raise InvalidModel(f"the model holds a {name} at {_show(path)}, a message type Warden does not accept")
    unknown = unknown_fields.UnknownFieldSet(message)
    if len(unknown):
        numbers = sorted({unknown[i].field_number for i in range(len(unknown))})
        raise InvalidModel(
            f"the model's {name} at {_show(path)} carries field(s) {numbers} that ONNX does not define; "
            "re-export it with a released ONNX version"
        )
    if isinstance(message, onnx.TensorProto) and (
        message.data_location == onnx.TensorProto.EXTERNAL or len(message.external_data)
    ):
        raise InvalidModel(
            f"tensor {message.name[:100]!r} at {_show(path)} refers to external data; upload a self-contained "
            "model (onnx.save with save_as_external_data=False)"
        )
    if isinstance(message, onnx.SparseTensorProto):
        walk.sparse_bytes += _dense_bytes(message, path)
        if walk.sparse_bytes > limits.max_sparse_bytes:
            raise InvalidModel(
                f"the model's sparse tensors take more than {limits.max_sparse_bytes} bytes once dense "
                f"(at {_show(path)})"
            )


def _children(message: Message) -> Iterator[tuple[Message, str, int | str | None]]:
    for descriptor, value in message.ListFields():
        if descriptor.type not in (FieldDescriptor.TYPE_MESSAGE, FieldDescriptor.TYPE_GROUP):
            continue
        entry = descriptor.message_type
        if entry is not None and entry.GetOptions().map_entry:
            if entry.fields_by_name["value"].type == FieldDescriptor.TYPE_MESSAGE and isinstance(value, Mapping):
                for key, item in value.items():
                    yield item, descriptor.name, repr(key)
        elif descriptor.is_repeated:
            for index, item in enumerate(value):
                yield item, descriptor.name, index
        else:
            yield value, descriptor.name, None


def _dense_bytes(sparse: onnx.SparseTensorProto, path: _Path) -> int:
    dims = list(sparse.dims)
    if any(d < 0 for d in dims):
        raise InvalidModel(f"sparse tensor at {_show(path)} has a negative dimension: {dims}")
    data_type = sparse.values.data_type
    if data_type == onnx.TensorProto.STRING:
        itemsize = _STRING_BYTES
    else:
        try:
            itemsize = onnx.helper.tensor_dtype_to_np_dtype(data_type).itemsize
        except (KeyError, ValueError):
            raise InvalidModel(f"sparse tensor at {_show(path)} has an unknown element type {data_type}") from None
    return math.prod(dims) * itemsize


def _show(path: _Path) -> str:
    labels: list[str] = []
    while path is not None:
        path, label = path
        labels.append(label)
    return ".".join(reversed(labels)) or "the model"


def _check_operators(model: onnx.ModelProto, walk: _Walk) -> None:
    functions: dict[_FunctionKey, int] = {}
    for index, function in enumerate(model.functions):
        key = (function.domain, function.name, function.overload)
        if key in functions:
            raise InvalidModel(f"local function {_name(key)} is defined twice")
        functions[key] = index
    calls: dict[int | None, list[int]] = {}
    for owner, nodes in walk.nodes.items():
        for node in nodes:
            callee = functions.get((node.domain, node.op_type, node.overload))
            if callee is not None:
                calls.setdefault(owner, []).append(callee)
            elif node.domain not in STANDARD_DOMAINS:
                raise InvalidModel(
                    f"operator {node.op_type[:100]!r} in domain {node.domain[:100]!r} is neither a standard ONNX "
                    "operator nor a local function of the model; custom operators are not accepted"
                )
    keys = list(functions)
    sizes = _expanded_sizes(len(keys), walk, calls, keys)
    total = len(walk.nodes.get(None, [])) + sum(sizes[callee] for callee in calls.get(None, []))
    if total > walk.limits.max_nodes:
        raise InvalidModel(
            f"the model expands to {total} nodes once its functions are inlined; the limit is {walk.limits.max_nodes}"
        )


def _expanded_sizes(
    count: int, walk: _Walk, calls: dict[int | None, list[int]], keys: list[_FunctionKey]
) -> dict[int, int]:
    """Each function's node count once inlined, by an iterative depth-first walk that refuses call cycles."""
    limit = walk.limits.max_nodes
    sizes: dict[int, int] = {}
    for root in range(count):
        if root in sizes:
            continue
        chain: list[int] = [root]
        pending: list[Iterator[int]] = [iter(calls.get(root, []))]
        while chain:
            callee = next(pending[-1], None)
            if callee is None:
                done = chain.pop()
                pending.pop()
                total = len(walk.nodes.get(done, [])) + sum(sizes[c] for c in calls.get(done, []))
                if total > limit:
                    raise InvalidModel(f"local function {_name(keys[done])} expands to more than {limit} nodes")
                sizes[done] = total
            elif callee in chain:
                cycle = " -> ".join(_name(keys[i]) for i in (*chain[chain.index(callee) :], callee))
                raise InvalidModel(f"local functions call themselves ({cycle}); recursive functions are not accepted")
            elif callee not in sizes:
                chain.append(callee)
                pending.append(iter(calls.get(callee, [])))
    return sizes


def _name(key: _FunctionKey) -> str:
    domain, name, overload = key
    shown = f"{domain[:100]}.{name[:100]}" if domain else name[:100]
    return f"{shown}:{overload[:100]}" if overload else shown
