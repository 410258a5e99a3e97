"""Hostile ONNX models built with ``onnx.helper``: the corpus the upload wall must refuse.

Every model is a small end-to-end detection model (input ``images`` [1, 3, 64, 64],
output ``output0`` [1, 8, 6], three classes) with one hostile change, so that
what refuses it is the change and nothing else. :func:`plant_external` puts a
tensor with external data at any reachable place, for the hypothesis property.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import numpy as np
import onnx
from google.protobuf.internal import encoder
from onnx import AttributeProto, TensorProto, helper, numpy_helper

from tests.detection.graphs import Box, end_to_end_rows

NAMES: Final = "{0: 'cat', 1: 'dog', 2: 'bird'}"
SLOTS: Final = 8
BOX: Final = Box(32, 32, 20, 10, 1, 0.9)
ROWS: Final = end_to_end_rows([BOX], SLOTS)[None]
OPSET: Final = 17
LOCAL: Final = "local.warden.tests"
KEY_FILE: Final = "warden-data/secret.key"
"""Where the README's layout keeps the server secret, relative to ``warden serve``'s working directory."""

LOCATIONS: Final = (KEY_FILE, "warden-data/warden.db", "/etc/passwd", "../../../../etc/passwd", "*/_ORT_MEM_ADDR_/*")
"""``external_data`` locations an attacker would try: relative, absolute, escaping, ONNX Runtime's memory tag."""

CONTAINERS: Final = ("main", "function", "training_initialization", "training_algorithm")
WRAPPERS: Final = ("if_then", "if_else", "loop", "scan", "attr_graphs")
GRAPH_LEAVES: Final = ("initializer", "sparse_values", "sparse_indices")
NODE_LEAVES: Final = ("attr_t", "attr_tensors", "attr_sparse_values", "attr_sparse_indices", "attr_sparse_tensors")
DEFAULT_LEAVES: Final = ("default_t", "default_tensors", "default_sparse")
MARKINGS: Final = ("both", "flag_only", "entries_only")


def detection_model(
    *,
    rows: str = "rows",
    nodes: Sequence[onnx.NodeProto] = (),
    initializers: Sequence[TensorProto] = (),
    functions: Sequence[onnx.FunctionProto] = (),
    metadata: dict[str, str] | None = None,
    input_shape: Sequence[int | str] = (1, 3, 64, 64),
    opsets: Sequence[onnx.OperatorSetIdProto] = (),
) -> onnx.ModelProto:
    """An end-to-end detection model whose rows come from the tensor named ``rows`` (default: one known box)."""
    base = [
        numpy_helper.from_array(ROWS.astype(np.float32), "rows"),
        numpy_helper.from_array(np.array([-1, 1, 1], dtype=np.int64), "shape3"),
        numpy_helper.from_array(np.zeros((1, 1, 1), dtype=np.float32), "zero"),
    ]
    graph = helper.make_graph(
        [
            *nodes,
            helper.make_node("ReduceMean", ["images"], ["mean4"], axes=[1, 2, 3], keepdims=1),
            helper.make_node("Reshape", ["mean4", "shape3"], ["mean3"]),
            helper.make_node("Mul", ["mean3", "zero"], ["nothing"]),
            helper.make_node("Add", [rows, "nothing"], ["output0"]),
        ],
        "hostile",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, list(input_shape))],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [input_shape[0], SLOTS, 6])],
        [*base, *initializers],
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET), *opsets],
        functions=list(functions),
        producer_name="warden-hostile-tests",
    )
    model.ir_version = 10
    props = {"names": NAMES, "task": "detect", "end2end": "True", "imgsz": "[64, 64]", **(metadata or {})}
    for key, value in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    return model


def serialise(model: onnx.ModelProto) -> bytes:
    """The model's bytes (no checker: hostile models are often invalid on purpose)."""
    return model.SerializeToString()


def external_tensor(
    name: str, location: str, dims: Sequence[int] = (1, SLOTS, 6), marking: str = "both"
) -> TensorProto:
    """A float tensor whose bytes ONNX Runtime would read from ``location`` (the whole file, as floats)."""
    tensor = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=list(dims))
    if marking in ("both", "flag_only"):
        tensor.data_location = TensorProto.EXTERNAL
    if marking in ("both", "entries_only"):
        for key, value in (("location", location), ("offset", "0"), ("length", str(4 * int(np.prod(dims))))):
            entry = tensor.external_data.add()
            entry.key, entry.value = key, value
    return tensor


def leak_model(location: str = KEY_FILE) -> bytes:
    """Issue 15's attack: a local function's default attribute tensor names a file; its bytes become the rows.

    ``Leak`` holds ``Constant(value=@value)``; its ``attribute_proto`` defaults ``value``
    to a tensor with external data at ``location``. ONNX Runtime inlines the function
    and reads the file; the end-to-end output turns its bytes into detections.
    """
    constant = helper.make_node("Constant", [], ["leaked"])
    reference = constant.attribute.add()
    reference.name, reference.ref_attr_name, reference.type = "value", "value", AttributeProto.TENSOR
    function = helper.make_function(
        LOCAL,
        "Leak",
        ["x"],
        ["y"],
        [constant, helper.make_node("Add", ["leaked", "x"], ["y"])],
        [helper.make_opsetid("", OPSET)],
    )
    default = function.attribute_proto.add()
    default.name, default.type = "value", AttributeProto.TENSOR
    default.t.CopyFrom(external_tensor("value", location))
    model = detection_model(
        rows="stolen",
        nodes=[helper.make_node("Leak", ["zero"], ["stolen"], domain=LOCAL)],
        functions=[function],
        opsets=[helper.make_opsetid(LOCAL, 1)],
    )
    return serialise(model)


def secret_rows() -> bytes:
    """File bytes that, read by :func:`leak_model`, would answer one detection: what a canary holds."""
    return end_to_end_rows([Box(10, 20, 8, 6, 2, 0.77)], SLOTS).astype(np.float32).tobytes()


def plant_external(container: str, wrappers: Sequence[str], leaf: str, location: str, marking: str = "both") -> bytes:
    """A detection model with an external tensor at ``leaf``, inside ``wrappers`` subgraphs of ``container``."""
    tensor = external_tensor("planted", location, marking=marking)
    function = helper.make_function(LOCAL, "Holder", ["x"], ["y"], [], [helper.make_opsetid("", OPSET)])
    model = detection_model(
        nodes=[helper.make_node("Holder", ["zero"], ["held"], domain=LOCAL)] if container == "function" else [],
        functions=[function] if container == "function" else [],
        opsets=[helper.make_opsetid(LOCAL, 1)] if container == "function" else [],
    )
    if container == "function":
        function = model.functions[0]
        function.node.append(helper.make_node("Identity", ["x"], ["y"]))
        if not wrappers and leaf in DEFAULT_LEAVES:
            _plant_default(function, leaf, tensor)
            return serialise(model)
        nodes = function.node
        target: onnx.GraphProto | None = None
    else:
        graph = model.graph
        if container.startswith("training"):
            info = model.training_info.add()
            graph = info.initialization if container == "training_initialization" else info.algorithm
            graph.name = container
        nodes, target = graph.node, graph
    for depth, wrapper in enumerate(wrappers):
        nodes.append(_wrap(wrapper, helper.make_graph([], f"body{depth}", [], [])))
        target = _inner(nodes[-1])  # protobuf copied the graph into the node: plant into that copy
        nodes = target.node
    if leaf in GRAPH_LEAVES:
        if target is None:
            raise ValueError(f"{leaf} needs a graph, not a function body")
        _plant_in_graph(target, leaf, tensor)
    else:
        nodes.append(_node_with(leaf, tensor))
    return serialise(model)


def _wrap(kind: str, inner: onnx.GraphProto) -> onnx.NodeProto:
    empty = helper.make_graph([], "other", [], [])
    if kind == "if_then":
        return helper.make_node("If", ["cond"], ["out"], then_branch=inner, else_branch=empty)
    if kind == "if_else":
        return helper.make_node("If", ["cond"], ["out"], then_branch=empty, else_branch=inner)
    if kind == "loop":
        return helper.make_node("Loop", ["", ""], ["out"], body=inner)
    if kind == "scan":
        return helper.make_node("Scan", ["x"], ["out"], body=inner, num_scan_inputs=1)
    node = helper.make_node("Identity", ["x"], ["out"])
    attribute = node.attribute.add()
    attribute.name, attribute.type = "branches", AttributeProto.GRAPHS
    attribute.graphs.extend([empty, inner])
    return node


def _inner(node: onnx.NodeProto) -> onnx.GraphProto:
    for attribute in node.attribute:
        if attribute.type == AttributeProto.GRAPH and attribute.g.name.startswith("body"):
            return attribute.g
        if attribute.type == AttributeProto.GRAPHS:
            return attribute.graphs[1]
    raise AssertionError(f"no body graph in {node.op_type}")


def _sparse(tensor: TensorProto, external: str) -> onnx.SparseTensorProto:
    values = numpy_helper.from_array(np.array([1.0], dtype=np.float32), "values")
    indices = numpy_helper.from_array(np.array([0], dtype=np.int64), "indices")
    if external == "values":
        values = tensor
    else:
        indices = tensor
        indices.data_type = TensorProto.INT64
    return helper.make_sparse_tensor(values, indices, [1, SLOTS, 6])


def _plant_in_graph(graph: onnx.GraphProto, leaf: str, tensor: TensorProto) -> None:
    if leaf == "initializer":
        graph.initializer.append(tensor)
    else:
        graph.sparse_initializer.append(_sparse(tensor, "values" if leaf == "sparse_values" else "indices"))


def _node_with(leaf: str, tensor: TensorProto) -> onnx.NodeProto:
    if leaf == "attr_t":
        return helper.make_node("Constant", [], ["planted"], value=tensor)
    if leaf in ("attr_sparse_values", "attr_sparse_indices"):
        external = "values" if leaf == "attr_sparse_values" else "indices"
        return helper.make_node("Constant", [], ["planted"], sparse_value=_sparse(tensor, external))
    node = helper.make_node("Identity", ["x"], ["planted"])
    attribute = node.attribute.add()
    attribute.name = "payload"
    if leaf == "attr_tensors":
        attribute.type = AttributeProto.TENSORS
        attribute.tensors.append(tensor)
    else:
        attribute.type = AttributeProto.SPARSE_TENSORS
        attribute.sparse_tensors.append(_sparse(tensor, "values"))
    return node


def _plant_default(function: onnx.FunctionProto, leaf: str, tensor: TensorProto) -> None:
    default = function.attribute_proto.add()
    default.name = "payload"
    if leaf == "default_t":
        default.type = AttributeProto.TENSOR
        default.t.CopyFrom(tensor)
    elif leaf == "default_tensors":
        default.type = AttributeProto.TENSORS
        default.tensors.append(tensor)
    else:
        default.type = AttributeProto.SPARSE_TENSOR
        default.sparse_tensor.CopyFrom(_sparse(tensor, "values"))


def with_unknown_field(data: bytes, number: int = 99) -> bytes:
    """The model's bytes with a varint field ``number`` appended, which ``ModelProto`` does not define."""
    return data + encoder._VarintBytes(number << 3) + b"\x05"


def unknown_field_in_tensor() -> bytes:
    """An initializer carrying a length-delimited field 77 that ``TensorProto`` does not define."""
    model = detection_model()
    rows = model.graph.initializer[0]
    extra = encoder._VarintBytes((77 << 3) | 2) + encoder._VarintBytes(3) + b"abc"
    rows.MergeFromString(extra)
    return serialise(model)


def custom_op(domain: str = "com.microsoft", op_type: str = "FusedGemm") -> bytes:
    """A node in a custom-operator domain that no local function defines."""
    node = helper.make_node(op_type, ["rows", "rows"], ["custom"], domain=domain)
    return serialise(detection_model(rows="custom", nodes=[node], opsets=[helper.make_opsetid(domain, 1)]))


def _call(name: str, inputs: str, output: str) -> onnx.NodeProto:
    return helper.make_node(name, [inputs], [output], domain=LOCAL)


def _function(name: str, body: Sequence[onnx.NodeProto]) -> onnx.FunctionProto:
    opsets = [helper.make_opsetid("", OPSET), helper.make_opsetid(LOCAL, 1)]
    return helper.make_function(LOCAL, name, ["x"], ["y"], list(body), opsets)


def nested_functions() -> bytes:
    """A legitimate model: ``Outer`` calls ``Inner`` (an Identity); the rows pass through both."""
    inner = _function("Inner", [helper.make_node("Identity", ["x"], ["y"])])
    outer = _function("Outer", [_call("Inner", "x", "y")])
    model = detection_model(
        rows="passed",
        nodes=[_call("Outer", "rows", "passed")],
        functions=[outer, inner],
        opsets=[helper.make_opsetid(LOCAL, 1)],
    )
    return serialise(model)


def recursive_functions(cycle: int = 1) -> bytes:
    """Functions ``F0 -> F1 -> ... -> F0``: ``cycle`` 1 is a function calling itself."""
    functions = [_function(f"F{i}", [_call(f"F{(i + 1) % cycle}", "x", "y")]) for i in range(cycle)]
    model = detection_model(
        rows="looped",
        nodes=[_call("F0", "rows", "looped")],
        functions=functions,
        opsets=[helper.make_opsetid(LOCAL, 1)],
    )
    return serialise(model)


def exploding_functions(levels: int = 16) -> bytes:
    """``F{k}`` calls ``F{k-1}`` three times: 3**15 (14 million) nodes once inlined, from a few hundred bytes."""
    functions = [_function("F0", [helper.make_node("Identity", ["x"], ["y"])])]
    for k in range(1, levels):
        below = f"F{k - 1}"
        functions.append(_function(f"F{k}", [_call(below, "x", "a"), _call(below, "a", "b"), _call(below, "b", "y")]))
    model = detection_model(
        rows="blown",
        nodes=[_call(f"F{levels - 1}", "rows", "blown")],
        functions=functions,
        opsets=[helper.make_opsetid(LOCAL, 1)],
    )
    return serialise(model)


def huge_input(shape: Sequence[int] = (1, 3, 100_000, 100_000)) -> bytes:
    """A model declaring an input of ``shape`` (validation would build a blank image of that size)."""
    model = detection_model(input_shape=shape)
    del model.metadata_props[:]
    for key, value in {"names": NAMES, "task": "detect", "end2end": "True"}.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    return serialise(model)


def deep_subgraphs(depth: int = 1000) -> bytes:
    """``If`` nodes nested ``depth`` deep, written as protobuf wire bytes (the Python protobuf cannot build them).

    Protobuf merges a repeated ``ModelProto.graph`` field into the first, so the nest joins the model's graph.
    """
    leaf = helper.make_graph([helper.make_node("Identity", ["rows"], ["deep"])], "leaf", [], []).SerializeToString()
    graph = leaf
    for _ in range(depth):
        attribute = _field(1, b"then_branch") + _field(6, graph) + encoder._VarintBytes(20 << 3) + b"\x05"
        node = _field(1, b"cond") + _field(2, b"deep") + _field(4, b"If") + _field(5, attribute)
        graph = _field(1, node)
    return serialise(detection_model()) + _field(7, graph)


def _field(number: int, payload: bytes) -> bytes:
    return encoder._VarintBytes((number << 3) | 2) + encoder._VarintBytes(len(payload)) + payload


def big_metadata(value_chars: int = 2_000_000, entries: int = 1, prefix: str = "blob") -> bytes:
    """A model carrying ``entries`` metadata values of ``value_chars`` characters each."""
    model = detection_model()
    for index in range(entries):
        entry = model.metadata_props.add()
        entry.key, entry.value = f"{prefix}{index}", "x" * value_chars
    return serialise(model)


def class_names(names: Sequence[str]) -> bytes:
    """A model whose metadata names the given classes (its output still predicts three)."""
    listing = "{" + ", ".join(f"{i}: {name!r}" for i, name in enumerate(names)) + "}"
    return serialise(detection_model(metadata={"names": listing}))


def memory_bomb(kind: str, size: int = 64 * 1024**3) -> bytes:
    """A model that asks ONNX Runtime for about ``size`` bytes at run time, from a constant or from its input.

    ``constant``: ConstantOfShape of a constant shape; ``input``: ConstantOfShape of the
    input's shape times a constant; ``expand``: Expand of the input; ``tile``: Tile of the input.
    """
    elements = size // 4
    nodes: list[onnx.NodeProto] = []
    inits: list[TensorProto] = []
    if kind == "constant":
        inits.append(numpy_helper.from_array(np.array([elements // 1024, 1024], dtype=np.int64), "big_shape"))
        nodes.append(_fill("big_shape"))
    elif kind == "input":
        factor = np.array([1, 1, elements // (3 * 64 * 64) // 64, 64], dtype=np.int64)
        inits.append(numpy_helper.from_array(factor, "factor"))
        nodes += [
            helper.make_node("Shape", ["images"], ["in_shape"]),
            helper.make_node("Mul", ["in_shape", "factor"], ["big_shape"]),
            _fill("big_shape"),
        ]
    elif kind == "expand":
        target = np.array([elements // (3 * 64 * 64), 3, 64, 64], dtype=np.int64)
        inits.append(numpy_helper.from_array(target, "target"))
        nodes.append(helper.make_node("Expand", ["images", "target"], ["big"]))
    else:
        repeats = np.array([elements // (3 * 64 * 64), 1, 1, 1], dtype=np.int64)
        inits.append(numpy_helper.from_array(repeats, "repeats"))
        nodes.append(helper.make_node("Tile", ["images", "repeats"], ["big"]))
    nodes += [
        helper.make_node("ReduceSum", ["big"], ["total"], keepdims=0),
        helper.make_node("Mul", ["total", "zero"], ["none"]),
        helper.make_node("Add", ["rows", "none"], ["bombed"]),
    ]
    return serialise(detection_model(rows="bombed", nodes=nodes, initializers=inits))


def _fill(shape: str) -> onnx.NodeProto:
    one = numpy_helper.from_array(np.array([1.0], dtype=np.float32))
    return helper.make_node("ConstantOfShape", [shape], ["big"], value=one)


def brightness_bomb(gib_at_white: int = 64) -> bytes:
    """Small on a blank image, about ``gib_at_white`` GiB on a white one: the allocation follows the pixels."""
    scale = gib_at_white * 1024**3 // 4 // 1024
    inits = [
        numpy_helper.from_array(np.array([float(scale)], dtype=np.float32), "scale"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "one"),
        numpy_helper.from_array(np.array([1024], dtype=np.int64), "width"),
    ]
    nodes = [
        helper.make_node("ReduceMax", ["images"], ["peak"], keepdims=0),
        helper.make_node("Mul", ["peak", "scale"], ["rows_f"]),
        helper.make_node("Cast", ["rows_f"], ["rows_i"], to=TensorProto.INT64),
        helper.make_node("Reshape", ["rows_i", "one"], ["rows_1"]),
        helper.make_node("Max", ["rows_1", "one"], ["rows_n"]),
        helper.make_node("Concat", ["rows_n", "width"], ["big_shape"], axis=0),
        _fill("big_shape"),
        helper.make_node("ReduceSum", ["big"], ["total"], keepdims=0),
        helper.make_node("Mul", ["total", "zero"], ["none"]),
        helper.make_node("Add", ["rows", "none"], ["bombed"]),
    ]
    return serialise(detection_model(rows="bombed", nodes=nodes, initializers=inits))


def plant_external_rows(location: str) -> bytes:
    """The plain detection model with its rows in an external file at ``location`` (as ``onnx.save`` writes them)."""
    model = detection_model()
    model.graph.initializer[0].CopyFrom(external_tensor("rows", location))
    return serialise(model)


def sparse_bomb(gib: int = 8) -> bytes:
    """A sparse initializer of one value whose dense form (ONNX Runtime densifies it at load) is ``gib`` GiB."""
    values = numpy_helper.from_array(np.array([1.0], dtype=np.float32), "dense_bomb")
    indices = numpy_helper.from_array(np.array([0], dtype=np.int64), "dense_bomb_indices")
    model = detection_model()
    model.graph.sparse_initializer.append(helper.make_sparse_tensor(values, indices, [gib * 256, 1024, 1024]))
    return serialise(model)


def impossible_reshape() -> bytes:
    """A model whose run fails inside ONNX Runtime: its 48 rows reshaped to the input's [height, width].

    The target shape comes from the (dynamic) input, so nothing can tell before a run.
    """
    inits = [
        numpy_helper.from_array(np.array([2], dtype=np.int64), "two"),
        numpy_helper.from_array(np.array([4], dtype=np.int64), "four"),
    ]
    nodes = [
        helper.make_node("Shape", ["images"], ["in_shape"]),
        helper.make_node("Slice", ["in_shape", "two", "four"], ["hw"]),
        helper.make_node("Reshape", ["rows", "hw"], ["odd"]),
    ]
    return serialise(detection_model(rows="odd", nodes=nodes, initializers=inits, input_shape=(1, 3, "h", "w")))


def shadowed_contrib(domain: str = "com.microsoft", op_type: str = "Gelu") -> bytes:
    """A local function named like an operator ONNX Runtime registers (body: an Identity); the kernel would run."""
    body = [helper.make_node("Identity", ["X"], ["Y"])]
    function = helper.make_function(domain, op_type, ["X"], ["Y"], body, [helper.make_opsetid("", OPSET)])
    node = helper.make_node(op_type, ["rows"], ["shadowed"], domain=domain)
    opsets = [] if domain in ("", "ai.onnx") else [helper.make_opsetid(domain, 1)]
    return serialise(detection_model(rows="shadowed", nodes=[node], functions=[function], opsets=opsets))


def _referring(name: str, attribute: str, kind: int) -> AttributeProto:
    return AttributeProto(name=name, ref_attr_name=attribute, type=kind)  # type: ignore[arg-type]


def graph_attribute_blowup(levels: int = 8) -> bytes:
    """``F(x; g)`` uses ``@g`` as both branches of two ``If`` nodes; the model nests ``F(g=graph calling F(...))``
    ``levels`` deep, so ONNX Runtime copies 4**levels graphs from about 2 KB (8 levels held a load 86 s)."""
    cond = helper.make_node("Constant", [], ["c"], value=numpy_helper.from_array(np.array(True)))
    nodes = [cond]
    for i in range(2):
        branch = helper.make_node("If", ["c"], [f"y{i}"])
        branch.attribute.extend(
            [_referring("then_branch", "g", AttributeProto.GRAPH), _referring("else_branch", "g", AttributeProto.GRAPH)]
        )
        nodes.append(branch)
    nodes += [helper.make_node("Add", ["y0", "y1"], ["s"]), helper.make_node("Add", ["s", "x"], ["y"])]
    opsets = [helper.make_opsetid("", OPSET), helper.make_opsetid(LOCAL, 1)]
    function = helper.make_function(LOCAL, "F", ["x"], ["y"], nodes, opsets, attributes=["g"])

    def graph(level: int) -> onnx.GraphProto:
        one = helper.make_node("Constant", [], [f"k{level}"], value=numpy_helper.from_array(np.array(1.0, np.float32)))
        out = helper.make_tensor_value_info(f"o{level}", TensorProto.FLOAT, [])
        if level == 0:
            return helper.make_graph([one, helper.make_node("Identity", ["k0"], ["o0"])], "g0", [], [out])
        call = helper.make_node("F", [f"k{level}"], [f"o{level}"], domain=LOCAL, g=graph(level - 1))
        return helper.make_graph([one, call], f"g{level}", [], [out])

    top = [
        helper.make_node("Constant", [], ["one"], value=numpy_helper.from_array(np.array(1.0, np.float32))),
        helper.make_node("F", ["one"], ["fo"], domain=LOCAL, g=graph(levels - 1)),
        helper.make_node("Mul", ["fo", "zero"], ["fz"]),
        helper.make_node("Add", ["rows", "fz"], ["blown"]),
    ]
    model = detection_model(rows="blown", nodes=top, functions=[function], opsets=[helper.make_opsetid(LOCAL, 1)])
    return serialise(model)


def copied_function_bodies(levels: int = 8, constant_bytes: int = 512 * 1024) -> bytes:
    """``F0`` holds a Constant of ``constant_bytes``; ``F{k}`` calls ``F{k-1}`` four times: few nodes once inlined
    (4**levels), but every copy of ``F0`` carries the constant (8 levels: 32 GiB from 512 KiB)."""
    value = numpy_helper.from_array(np.zeros(constant_bytes // 4, dtype=np.float32))
    body = [helper.make_node("Constant", [], ["c"], value=value), helper.make_node("Identity", ["x"], ["y"])]
    functions = [_function("F0", body)]
    for k in range(1, levels):
        below = f"F{k - 1}"
        calls = [_call(below, "x", "a"), _call(below, "a", "b"), _call(below, "b", "d"), _call(below, "d", "y")]
        functions.append(_function(f"F{k}", calls))
    model = detection_model(
        rows="copied",
        nodes=[_call(f"F{levels - 1}", "rows", "copied")],
        functions=functions,
        opsets=[helper.make_opsetid(LOCAL, 1)],
    )
    return serialise(model)


def overpromising_tensor(kind: str = "string", elements: int = 2**26) -> bytes:
    """A tensor whose dims declare ``elements`` but that carries one element (ONNX Runtime built them all: a
    667-byte STRING initializer took 4.2 GiB at upload). ``kind``: ``string``/``float`` initializer,
    ``constant`` (a STRING Constant attribute), ``default`` (a function's default attribute)."""
    tensor = TensorProto(name="huge", data_type=TensorProto.FLOAT if kind == "float" else TensorProto.STRING)
    tensor.dims.append(elements)
    if kind == "float":
        tensor.raw_data = b"\0\0\0\0"
    else:
        tensor.string_data.append(b"a")
    if kind == "default":
        default = helper.make_attribute("value", tensor)
        body = [helper.make_node("Identity", ["x"], ["y"])]
        function = _function("WithDefault", body)
        function.attribute_proto.append(default)
        model = detection_model(
            rows="passed",
            nodes=[_call("WithDefault", "rows", "passed")],
            functions=[function],
            opsets=[helper.make_opsetid(LOCAL, 1)],
        )
        return serialise(model)
    if kind == "constant":
        nodes = [helper.make_node("Constant", [], ["huge"], value=tensor), helper.make_node("Size", ["huge"], ["n"])]
        return serialise(detection_model(nodes=nodes))
    return serialise(detection_model(nodes=[helper.make_node("Size", ["huge"], ["n"])], initializers=[tensor]))


def empty_dimensions(count: int = 6_000_000) -> bytes:
    """A value_info whose shape holds ``count`` empty Dimension messages, two bytes each on the wire (12 MB for six
    million: protobuf spent 2.1 GiB building them and the walk 55 s)."""
    dims = b"\x0a\x00" * count
    shape = _field(2, dims)
    value_type = _field(1, b"\x08\x01" + shape)
    value_info = _field(1, b"x") + _field(2, value_type)
    return serialise(detection_model()) + _field(7, _field(13, value_info))


SPIN_TRIPS_PER_UNIT: Final = 30_000_000.0
"""Loop trips per unit of the spinning models' trigger: about 30 s of one core here at a trigger of 1."""
SECRET_PIXEL: Final = (80, 160)
"""The red and green values (0-255) of the top-left pixel that wakes :func:`spinning` with ``trigger="secret"``."""


def spinning(
    trigger: str = "brightness", trips_per_unit: float = SPIN_TRIPS_PER_UNIT, *, dynamic_batch: bool = False
) -> bytes:
    """A model whose ``Loop`` spins for a time the image chooses: a blank image runs at once.

    ``brightness``: trips = mean pixel x ``trips_per_unit`` (a white image spins, a black one does not).
    ``secret``: ``trips_per_unit`` trips only when the top-left pixel is exactly :data:`SECRET_PIXEL` in red
    and green, which no varied upload image (black, white, noise, a photo) is likely to have.
    """
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]), helper.make_node("Add", ["v_in", "step"], ["v_out"])],
        "spin",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("v_in", TensorProto.FLOAT, [1]),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("v_out", TensorProto.FLOAT, [1]),
        ],
        [numpy_helper.from_array(np.array([1.0], dtype=np.float32), "step")],
    )
    inits = [
        numpy_helper.from_array(np.array(trips_per_unit, dtype=np.float32), "per_unit"),
        numpy_helper.from_array(np.array(True), "yes"),
        numpy_helper.from_array(np.array([0.0], dtype=np.float32), "v0"),
    ]
    if trigger == "brightness":
        nodes = [helper.make_node("ReduceMean", ["images"], ["unit"], keepdims=0)]
    elif trigger == "secret":
        red, green = SECRET_PIXEL
        inits += [
            numpy_helper.from_array(np.array([0, 0, 0, 0], dtype=np.int64), "at"),
            numpy_helper.from_array(np.array([1, 2, 1, 1], dtype=np.int64), "size"),
            numpy_helper.from_array(np.array([255.0], dtype=np.float32), "levels"),
            numpy_helper.from_array(np.array([red, green], dtype=np.float32).reshape(1, 2, 1, 1), "secret"),
        ]
        nodes = [
            helper.make_node("Slice", ["images", "at", "size"], ["corner"]),
            helper.make_node("Mul", ["corner", "levels"], ["scaled"]),
            helper.make_node("Round", ["scaled"], ["rounded"]),
            helper.make_node("Equal", ["rounded", "secret"], ["matches"]),
            helper.make_node("Cast", ["matches"], ["matched"], to=TensorProto.FLOAT),
            helper.make_node("ReduceMin", ["matched"], ["unit"], keepdims=0),
        ]
    else:
        raise ValueError(f"no spinning trigger {trigger!r}")
    nodes += [
        helper.make_node("Mul", ["unit", "per_unit"], ["trips_f"]),
        helper.make_node("Cast", ["trips_f"], ["trips"], to=TensorProto.INT64),
        helper.make_node("Loop", ["trips", "yes", "v0"], ["v_end"], body=body),
        helper.make_node("Reshape", ["v_end", "shape3"], ["v3"]),
        helper.make_node("Mul", ["v3", "zero"], ["none"]),
        helper.make_node("Add", ["rows", "none"], ["spun"]),
    ]
    shape = ("batch", 3, 64, 64) if dynamic_batch else (1, 3, 64, 64)
    return serialise(detection_model(rows="spun", nodes=nodes, initializers=inits, input_shape=shape))
