"""A structural walk over every message of an uploaded ONNX model, refusing what could reach past the upload.

The walk follows the protobuf descriptors, not a hand-kept list of places: every message-typed field
(singular, repeated or map) is visited at any depth — graphs, nodes, attributes and their subgraphs, local
functions and their default attributes, training info, sparse tensors. It fails closed on:

- a tensor with external data (ONNX Runtime would open the file it names);
- a message type it does not know (one that a newer ONNX adds: judge it before accepting it);
- a field the schema does not define (protobuf keeps it as an unknown field, which a newer parser may read);
- nesting deeper than ``max_depth`` or more than ``max_messages`` messages;
- sparse tensors whose dense form (ONNX Runtime densifies them at load, outside any arena) exceeds a byte budget;
- a dense tensor whose dims promise more (or less) than the data it carries (ONNX Runtime builds the declared size,
  every ``std::string`` of a STRING tensor included, before it compares), an element type it cannot size, and dense
  tensors larger together than the same byte budget.

Before any of that, :func:`check_wire` counts the messages of the raw bytes against ``max_messages`` through the
same descriptors, so that a 12 MB upload of six million empty messages is refused before protobuf builds them (the
parser spends about 58 bytes per 2-byte empty message); the walk itself counts children while it enumerates them.

It then judges the operators: a node must be a standard ONNX operator (domain ``""`` or ``ai.onnx``) or call a
local function of the model; custom-operator domains (``com.microsoft`` contrib ops included) are refused, as are
recursive functions and call trees that expand past ``max_nodes`` nodes or ``max_function_bytes`` bytes of bodies.

Local functions fail closed on names: ONNX Runtime runs its own kernel for any (domain, op) it registers before it
looks at a model's functions, so a function ``com.microsoft.Gelu`` whose body is an Identity would be judged as an
Identity and run as the contrib kernel. A local function must therefore live in a domain that neither ONNX nor ONNX
Runtime uses: not ``""``, not a domain ``onnx.defs`` or this ONNX Runtime build has any schema or kernel in, and not
``ai.onnx``, ``com.microsoft``, ``com.ms``, ``org.pytorch`` or a domain below one of them (other builds and
execution providers register there). A ``ref_attr_name`` may only forward a number, a string or a list of them, and
a call's attributes (and a function's defaults) are at most ``MAX_CALL_ATTRIBUTE_BYTES`` serialised: ONNX Runtime
copies a referenced value into every node that uses it, so a referenced graph or tensor used twice per level doubles
per level (a 2 KB upload nested 8 levels held a load 86 s).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence, Sized
from dataclasses import dataclass, field
from typing import Any, Final

import onnx
from google.protobuf import unknown_fields
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from onnx import AttributeProto

from warden.detection.session import ort_operator_domains
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

RESERVED_DOMAINS: Final = frozenset(
    {
        "",
        *(schema.domain for schema in onnx.defs.get_all_schemas_with_history()),
        *ort_operator_domains(),
    }
)
"""Operator domains ONNX or this ONNX Runtime build defines operators in: no local function may live in one."""
RESERVED_PREFIXES: Final = ("ai.onnx", "com.microsoft", "com.ms", "org.pytorch")
"""Domains (and every domain below them) that ONNX and ONNX Runtime keep for their own operators."""
_REFERABLE: Final = frozenset(
    {
        AttributeProto.FLOAT,
        AttributeProto.INT,
        AttributeProto.STRING,
        AttributeProto.FLOATS,
        AttributeProto.INTS,
        AttributeProto.STRINGS,
    }
)

MAX_DEPTH: Final = 100
"""Deepest message nesting walked (protobuf's own parser stops at 100 too)."""
MAX_MESSAGES: Final = 1_000_000
"""Most messages in one model (the fall model has about 5,000; 100,000 nodes of a few attributes fit)."""
MAX_NODES: Final = 100_000
"""Most nodes a model may have once every local function is expanded (real detection models have a few thousand)."""
MAX_FUNCTION_BYTES: Final = 64 * 1024**2
"""Most serialised bytes of function bodies ONNX Runtime may copy inlining a model's function calls."""
MAX_CALL_ATTRIBUTE_BYTES: Final = 1024
"""Largest serialised attribute a function call (or a function's default) may carry; a reference copies it."""

_STRING_BYTES: Final = 32  # what ONNX Runtime holds per string element (a std::string)
_SUB_BYTE_BITS: Final[dict[int, int]] = {
    onnx.TensorProto.INT4: 4,
    onnx.TensorProto.UINT4: 4,
    onnx.TensorProto.FLOAT4E2M1: 4,
    onnx.TensorProto.INT2: 2,
    onnx.TensorProto.UINT2: 2,
}
_TYPE_NAMES: Final = frozenset(AttributeProto.AttributeType.values())
_PAIRED: Final = frozenset({onnx.TensorProto.COMPLEX64, onnx.TensorProto.COMPLEX128})
_FunctionKey = tuple[str, str, str]  # (domain, name, overload)
_Path = tuple["_Path | None", str] | None


@dataclass(frozen=True, slots=True)
class WalkLimits:
    """Bounds on the walk; ``max_sparse_bytes`` caps the dense size of all sparse tensors together, and of all
    dense tensors together."""

    max_sparse_bytes: int
    max_depth: int = MAX_DEPTH
    max_messages: int = MAX_MESSAGES
    max_nodes: int = MAX_NODES
    max_function_bytes: int = MAX_FUNCTION_BYTES
    known: frozenset[str] = KNOWN_MESSAGES


@dataclass(slots=True)
class _Walk:
    limits: WalkLimits
    messages: int = 1
    sparse_bytes: int = 0
    dense_bytes: int = 0
    nodes: dict[int | None, list[onnx.NodeProto]] = field(default_factory=dict)


def check_wire(data: bytes, limits: WalkLimits) -> None:
    """Count the messages in serialised ``ModelProto`` bytes, through the descriptors, before protobuf parses them.

    Refuses (``InvalidModel``) more than ``max_messages`` messages or nesting past ``max_depth``; wire damage is
    left to the parser, which refuses it with its own words. Costs a few Python steps per message, none per byte.
    """
    messages = 1
    # The stack holds the open messages only (a parent resumes after its child), so it is never deeper than
    # max_depth whatever the count.
    stack: list[tuple[int, int, Any, int]] = [(0, len(data), onnx.ModelProto.DESCRIPTOR, 1)]
    try:
        while stack:
            position, end, descriptor, depth = stack.pop()
            fields = descriptor.fields_by_number
            while position < end:
                tag, position = _varint(data, position)
                wire = tag & 7
                if wire == 0:
                    _, position = _varint(data, position)
                elif wire == 1:
                    position += 8
                elif wire == 5:
                    position += 4
                elif wire != 2:
                    return  # groups and invalid wire types: the parser refuses them
                else:
                    length, position = _varint(data, position)
                    field = fields.get(tag >> 3)
                    if field is None or field.message_type is None or position + length > end:
                        position += length
                        continue
                    messages += 1
                    if messages > limits.max_messages:
                        raise InvalidModel(f"the model holds more than {limits.max_messages} protobuf messages")
                    if depth >= limits.max_depth:
                        raise InvalidModel(f"the model nests messages deeper than {limits.max_depth}")
                    if length:
                        stack.append((position + length, end, descriptor, depth))
                        stack.append((position, position + length, field.message_type, depth + 1))
                        break
    except IndexError:
        return  # a truncated varint: the parser refuses it


def _varint(data: bytes, position: int) -> tuple[int, int]:
    result = shift = 0
    while shift < 70:
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, position
        shift += 7
    raise IndexError("varint too long")


def check_structure(model: onnx.ModelProto, limits: WalkLimits) -> None:
    """Walk every message of ``model`` and refuse it (``InvalidModel``) on the first thing that fails closed."""
    walk = _Walk(limits)
    stack: list[tuple[Message, int, int | None, _Path]] = [(model, 1, None, None)]
    while stack:
        message, depth, owner, path = stack.pop()
        _judge(message, depth, path, walk)
        if isinstance(message, onnx.NodeProto):
            walk.nodes.setdefault(owner, []).append(message)
        for child, name, index in _children(message, walk):
            in_function = isinstance(message, onnx.ModelProto) and name == "functions" and isinstance(index, int)
            inside = index if in_function and isinstance(index, int) else owner
            label = name if index is None else f"{name}[{index}]"
            stack.append((child, depth + 1, inside, (path, label)))
    _check_operators(model, walk)


def _judge(message: Message, depth: int, path: _Path, walk: _Walk) -> None:
    limits = walk.limits
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
    if isinstance(message, onnx.TensorProto):
        walk.dense_bytes += _carried_bytes(message, path)
        if walk.dense_bytes > limits.max_sparse_bytes:
            raise InvalidModel(
                f"the model's tensors take more than {limits.max_sparse_bytes} bytes (at {_show(path)}), more than "
                "the session memory limit"
            )
    if isinstance(message, onnx.AttributeProto) and message.ref_attr_name and message.type not in _REFERABLE:
        kind = AttributeProto.AttributeType.Name(message.type) if message.type in _TYPE_NAMES else str(message.type)
        raise InvalidModel(
            f"attribute {message.name[:100]!r} at {_show(path)} refers to a function attribute of type {kind}; "
            "only numbers, strings and lists of them may be forwarded into a function"
        )
    if isinstance(message, onnx.SparseTensorProto):
        walk.sparse_bytes += _dense_bytes(message, path)
        if walk.sparse_bytes > limits.max_sparse_bytes:
            raise InvalidModel(
                f"the model's sparse tensors take more than {limits.max_sparse_bytes} bytes once dense "
                f"(at {_show(path)})"
            )


def _children(message: Message, walk: _Walk) -> Iterator[tuple[Message, str, int | str | None]]:
    """The message-typed children of ``message``, counted against ``max_messages`` before any is enumerated."""
    for descriptor, value in message.ListFields():
        if descriptor.type not in (FieldDescriptor.TYPE_MESSAGE, FieldDescriptor.TYPE_GROUP):
            continue
        walk.messages += len(value) if isinstance(value, Sized) and descriptor.is_repeated else 1
        if walk.messages > walk.limits.max_messages:
            raise InvalidModel(f"the model holds more than {walk.limits.max_messages} protobuf messages")
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


def _carried_bytes(tensor: onnx.TensorProto, path: _Path) -> int:
    """The bytes ONNX Runtime builds for a dense tensor, once its dims are checked against the data it carries."""
    dims = list(tensor.dims)
    where = f"tensor {tensor.name[:100]!r} at {_show(path)}"
    if any(d < 0 for d in dims):
        raise InvalidModel(f"{where} has a negative dimension: {dims}")
    if tensor.HasField("segment"):
        raise InvalidModel(f"{where} is a segment of a larger tensor; segmented tensors are not accepted")
    declared = math.prod(dims)
    data_type = tensor.data_type
    if data_type == onnx.TensorProto.STRING:
        carried = len(tensor.string_data)
        if tensor.raw_data or carried != declared:
            raise InvalidModel(f"{where} declares {declared} strings (dims {dims[:8]}) but carries {carried}")
        return declared * _STRING_BYTES + sum(len(item) for item in tensor.string_data)
    bits = _SUB_BYTE_BITS.get(data_type)
    if bits is None:
        try:
            bits = int(onnx.helper.tensor_dtype_to_np_dtype(data_type).itemsize) * 8
            typed = str(onnx.helper.tensor_dtype_to_field(data_type))
        except (KeyError, ValueError, TypeError):
            raise InvalidModel(f"{where} has an element type {data_type} Warden cannot size") from None
        entries = declared * (2 if data_type in _PAIRED else 1)
    else:
        typed, entries = "int32_data", -(-declared * bits // 8)
    size = -(-declared * bits // 8)
    if tensor.raw_data:
        carried, unit, expected = len(tensor.raw_data), "bytes", size
    else:
        carried, unit, expected = len(getattr(tensor, typed)), f"{typed} entries", entries
    if carried != expected:
        raise InvalidModel(
            f"{where} declares dims {dims[:8]} ({expected} {unit}) but carries {carried}; the data must match the dims"
        )
    return size


def _show(path: _Path) -> str:
    labels: list[str] = []
    while path is not None:
        path, label = path
        labels.append(label)
    return ".".join(reversed(labels)) or "the model"


def reserved_domain(domain: str) -> bool:
    """Whether ONNX or ONNX Runtime may define operators in ``domain`` (so a local function there is refused)."""
    return domain in RESERVED_DOMAINS or any(domain == p or domain.startswith(p + ".") for p in RESERVED_PREFIXES)


def _check_operators(model: onnx.ModelProto, walk: _Walk) -> None:
    functions: dict[_FunctionKey, int] = {}
    for index, function in enumerate(model.functions):
        key = (function.domain, function.name, function.overload)
        if reserved_domain(function.domain):
            raise InvalidModel(
                f"local function {_name(key)} is in domain {function.domain[:100]!r}, which ONNX or ONNX Runtime "
                "defines operators in (ONNX Runtime would run its own kernel); give local functions a domain of "
                "your own"
            )
        if key in functions:
            raise InvalidModel(f"local function {_name(key)} is defined twice")
        _check_small(function.attribute_proto, f"local function {_name(key)}'s default attribute")
        functions[key] = index
    keys = list(functions)
    calls: dict[int | None, list[int]] = {}
    for owner, nodes in walk.nodes.items():
        for node in nodes:
            callee = functions.get((node.domain, node.op_type, node.overload))
            if callee is not None:
                _check_small(node.attribute, f"a call of {_name(keys[callee])} has an attribute")
                calls.setdefault(owner, []).append(callee)
            elif node.domain not in STANDARD_DOMAINS:
                raise InvalidModel(
                    f"operator {node.op_type[:100]!r} in domain {node.domain[:100]!r} is neither a standard ONNX "
                    "operator nor a local function of the model; custom operators are not accepted"
                )
    own = [function.ByteSize() for function in model.functions]
    sizes, copied = _expanded_sizes(own, walk, calls, keys)
    total = len(walk.nodes.get(None, [])) + sum(sizes[callee] for callee in calls.get(None, []))
    if total > walk.limits.max_nodes:
        raise InvalidModel(
            f"the model expands to {total} nodes once its functions are inlined; the limit is {walk.limits.max_nodes}"
        )
    total_bytes = sum(copied[callee] for callee in calls.get(None, []))
    if total_bytes > walk.limits.max_function_bytes:
        raise InvalidModel(
            f"inlining the model's functions copies {total_bytes} bytes of function bodies; the limit is "
            f"{walk.limits.max_function_bytes}"
        )


def _check_small(attributes: Sequence[onnx.AttributeProto], what: str) -> None:
    for attribute in attributes:
        size = attribute.ByteSize()
        if size > MAX_CALL_ATTRIBUTE_BYTES:
            raise InvalidModel(
                f"{what} {attribute.name[:100]!r} of {size} bytes; function attributes are at most "
                f"{MAX_CALL_ATTRIBUTE_BYTES} bytes (ONNX Runtime copies them into every node that uses them)"
            )


def _expanded_sizes(
    own: list[int], walk: _Walk, calls: dict[int | None, list[int]], keys: list[_FunctionKey]
) -> tuple[dict[int, int], dict[int, int]]:
    """Each function's node count and body bytes once inlined, by an iterative depth-first walk that refuses call
    cycles; ``own`` is each function's serialised size."""
    limit, byte_limit = walk.limits.max_nodes, walk.limits.max_function_bytes
    sizes: dict[int, int] = {}
    copied: dict[int, int] = {}
    for root in range(len(own)):
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
                body = own[done] + sum(copied[c] for c in calls.get(done, []))
                if body > byte_limit:
                    raise InvalidModel(
                        f"local function {_name(keys[done])} copies more than {byte_limit} bytes once inlined"
                    )
                sizes[done], copied[done] = total, body
            elif callee in chain:
                cycle = " -> ".join(_name(keys[i]) for i in (*chain[chain.index(callee) :], callee))
                raise InvalidModel(f"local functions call themselves ({cycle}); recursive functions are not accepted")
            elif callee not in sizes:
                chain.append(callee)
                pending.append(iter(calls.get(callee, [])))
    return sizes, copied


def _name(key: _FunctionKey) -> str:
    domain, name, overload = key
    shown = f"{domain[:100]}.{name[:100]}" if domain else name[:100]
    return f"{shown}:{overload[:100]}" if overload else shown
