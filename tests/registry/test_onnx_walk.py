"""The structural walker: external data anywhere is refused, and it fails closed on what it does not know."""

from __future__ import annotations

import contextlib
import tracemalloc
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.registry import hostile
from warden.errors import InvalidModel
from warden.registry.onnx_walk import KNOWN_MESSAGES, WalkLimits, check_structure, check_wire
from warden.registry.validation import validate_model

LIMITS = WalkLimits(max_sparse_bytes=1 << 30)


@st.composite
def planted(draw: st.DrawFn) -> tuple[str, tuple[str, ...], str, str, str]:
    """A reachable place for an external tensor: container, subgraph wrappers, leaf, location, marking."""
    container = draw(st.sampled_from(hostile.CONTAINERS))
    wrappers = tuple(draw(st.lists(st.sampled_from(hostile.WRAPPERS), max_size=6)))
    leaves = list(hostile.NODE_LEAVES)
    if container != "function" or wrappers:
        leaves += hostile.GRAPH_LEAVES
    if container == "function" and not wrappers:
        leaves += hostile.DEFAULT_LEAVES
    leaf = draw(st.sampled_from(leaves))
    location = draw(st.sampled_from(hostile.LOCATIONS))
    marking = draw(st.sampled_from(hostile.MARKINGS))
    return container, wrappers, leaf, location, marking


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(place=planted())
def test_an_external_tensor_anywhere_reachable_is_refused(
    place: tuple[str, tuple[str, ...], str, str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    container, wrappers, leaf, location, marking = place
    monkeypatch.chdir(tmp_path)
    data = hostile.plant_external(container, wrappers, leaf, location, marking)
    with pytest.raises(InvalidModel, match="refers to external data"):
        validate_model(data, 1 << 30)


@pytest.mark.parametrize(
    ("container", "wrappers", "leaf", "where"),
    [
        ("main", (), "initializer", "graph.initializer[3]"),
        (
            "main",
            ("if_then", "scan"),
            "attr_t",
            "graph.node[4].attribute[1].g.node[0].attribute[0].g.node[0].attribute[0].t",
        ),
        ("function", (), "default_sparse", "functions[0].attribute_proto[0].sparse_tensor.values"),
        (
            "function",
            ("attr_graphs",),
            "sparse_indices",
            "functions[0].node[1].attribute[0].graphs[1].sparse_initializer[0].indices",
        ),
        (
            "training_algorithm",
            ("loop",),
            "attr_tensors",
            "training_info[0].algorithm.node[0].attribute[0].g.node[0].attribute[0].tensors[0]",
        ),
    ],
)
def test_the_refusal_names_where_the_tensor_was(
    container: str, wrappers: tuple[str, ...], leaf: str, where: str
) -> None:
    data = hostile.plant_external(container, wrappers, leaf, hostile.KEY_FILE)
    with pytest.raises(InvalidModel) as caught:
        check_structure(onnx.load_from_string(data), LIMITS)
    assert where in caught.value.message


def test_the_real_model_and_a_clean_graph_pass_the_walk(fall_model_file: Path) -> None:
    check_structure(onnx.load_from_string(fall_model_file.read_bytes()), LIMITS)
    check_structure(hostile.detection_model(), LIMITS)


def test_a_message_type_the_walker_does_not_know_is_refused() -> None:
    model = hostile.detection_model()
    annotation = model.graph.quantization_annotation.add()
    annotation.tensor_name = "rows"
    check_structure(model, LIMITS)
    narrower = WalkLimits(max_sparse_bytes=1 << 30, known=KNOWN_MESSAGES - {"onnx.TensorAnnotation"})
    with pytest.raises(InvalidModel, match=r"onnx\.TensorAnnotation at graph\.quantization_annotation\[0\]"):
        check_structure(model, narrower)


def test_every_message_type_of_the_onnx_schema_is_judged() -> None:
    """Fails when an ONNX upgrade adds a message type: judge it, then add it to KNOWN_MESSAGES."""
    seen: set[str] = set()
    pending = [onnx.ModelProto.DESCRIPTOR]
    while pending:
        descriptor = pending.pop()
        if descriptor.full_name in seen:
            continue
        seen.add(descriptor.full_name)
        pending += [f.message_type for f in descriptor.fields if f.message_type is not None]
    assert seen == KNOWN_MESSAGES


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        (WalkLimits(max_sparse_bytes=1 << 30, max_messages=20), "more than 20 protobuf messages"),
        (WalkLimits(max_sparse_bytes=1 << 30, max_depth=6), "deeper than 6"),
        (WalkLimits(max_sparse_bytes=1 << 30, max_nodes=5), "expands to 6 nodes"),
        (WalkLimits(max_sparse_bytes=255), "sparse tensors take more than 255 bytes"),
    ],
)
def test_the_walk_is_bounded(limits: WalkLimits, message: str) -> None:
    model = hostile.detection_model()
    values = onnx.numpy_helper.from_array(np.array([1.0], dtype=np.float32), "sparse")
    indices = onnx.numpy_helper.from_array(np.array([0], dtype=np.int64), "sparse_indices")
    model.graph.sparse_initializer.append(onnx.helper.make_sparse_tensor(values, indices, [64]))  # 256 bytes dense
    empty = onnx.helper.make_graph([], "empty", [], [])
    nested = onnx.helper.make_graph([onnx.helper.make_node("Identity", ["a"], ["b"])], "inner", [], [])
    model.graph.node.append(onnx.helper.make_node("If", ["cond"], ["c"], then_branch=nested, else_branch=empty))
    check_structure(model, LIMITS)
    with pytest.raises(InvalidModel, match=message):
        check_structure(model, limits)


@pytest.mark.parametrize("where", ["training", "subgraph", "uncalled"])
def test_a_recursive_function_is_refused_wherever_it_is_called_from(where: str) -> None:
    model = onnx.load_from_string(hostile.recursive_functions(2))
    call = model.graph.node[0]
    if where == "training":
        model.training_info.add().algorithm.node.append(call)
        del model.graph.node[0]
    elif where == "subgraph":
        body = onnx.helper.make_graph([call], "body", [], [])
        empty = onnx.helper.make_graph([], "empty", [], [])
        model.graph.node[0].CopyFrom(
            onnx.helper.make_node("If", ["c"], ["looped"], then_branch=body, else_branch=empty)
        )
    else:
        del model.graph.node[0]
    with pytest.raises(InvalidModel, match=r"F0 -> local\.warden\.tests\.F1 -> local\.warden\.tests\.F0"):
        check_structure(model, LIMITS)


def test_a_function_defined_twice_is_refused() -> None:
    model = onnx.load_from_string(hostile.nested_functions())
    model.functions.append(model.functions[0])
    with pytest.raises(InvalidModel, match="defined twice"):
        check_structure(model, LIMITS)


def _tensor(data_type: int, dims: list[int], **fields: object) -> onnx.TensorProto:
    tensor = onnx.TensorProto(name="t", data_type=data_type, dims=dims)
    for name, value in fields.items():
        if name == "raw_data":
            tensor.raw_data = value  # type: ignore[assignment]
        else:
            getattr(tensor, name).extend(value)
    return tensor


T = onnx.TensorProto


@pytest.mark.parametrize(
    ("tensor", "accepted"),
    [
        (_tensor(T.FLOAT, [2, 3], raw_data=b"\0" * 24), True),
        (_tensor(T.FLOAT, [2, 3], raw_data=b"\0" * 20), False),
        (_tensor(T.FLOAT, [2, 3], float_data=[0.0] * 6), True),
        (_tensor(T.FLOAT, [2, 3], float_data=[0.0] * 7), False),
        (_tensor(T.FLOAT, [2, 3]), False),
        (_tensor(T.FLOAT, [0, 3]), True),
        (_tensor(T.FLOAT16, [5], int32_data=[0] * 5), True),
        (_tensor(T.BFLOAT16, [5], int32_data=[0] * 4), False),
        (_tensor(T.FLOAT16, [5], raw_data=b"\0" * 10), True),
        (_tensor(T.INT4, [5], int32_data=[0] * 3), True),
        (_tensor(T.INT4, [5], int32_data=[0] * 5), False),
        (_tensor(T.UINT4, [5], raw_data=b"\0" * 3), True),
        (_tensor(T.FLOAT4E2M1, [4], raw_data=b"\0" * 4), False),
        (_tensor(T.INT64, [3], int64_data=[1, 2, 3]), True),
        (_tensor(T.UINT64, [3], uint64_data=[1, 2]), False),
        (_tensor(T.DOUBLE, [2], double_data=[1.0, 2.0]), True),
        (_tensor(T.COMPLEX64, [2], float_data=[0.0] * 4), True),
        (_tensor(T.COMPLEX64, [2], float_data=[0.0] * 2), False),
        (_tensor(T.COMPLEX128, [1], raw_data=b"\0" * 16), True),
        (_tensor(T.STRING, [2], string_data=[b"a", b"b"]), True),
        (_tensor(T.STRING, [2**27], string_data=[b"a"]), False),
        (_tensor(T.STRING, [1], raw_data=b"a"), False),
        (_tensor(T.UNDEFINED, [1], raw_data=b"a"), False),
        (_tensor(T.FLOAT, [-1, 4], raw_data=b"\0" * 16), False),
    ],
)
def test_a_dense_tensor_must_carry_what_its_dims_declare(tensor: onnx.TensorProto, accepted: bool) -> None:
    for place in ("initializer", "constant"):
        model = hostile.detection_model()
        if place == "initializer":
            model.graph.initializer.append(tensor)
        else:
            model.graph.node.insert(0, onnx.helper.make_node("Constant", [], ["t"], value=tensor))
        if accepted:
            check_structure(model, LIMITS)
        else:
            with pytest.raises(InvalidModel, match="tensor 't' at graph"):
                check_structure(model, LIMITS)


def test_dense_tensors_together_are_bounded_by_the_memory_limit() -> None:
    model = hostile.detection_model()  # 220 bytes of initializers
    check_structure(model, WalkLimits(max_sparse_bytes=220))
    with pytest.raises(InvalidModel, match="tensors take more than 219 bytes"):
        check_structure(model, WalkLimits(max_sparse_bytes=219))


@pytest.mark.parametrize(
    ("domain", "refused"),
    [
        ("com.microsoft", True),
        ("com.microsoft.nchwc", True),
        ("com.microsoft.anything", True),
        ("com.ms.internal.nhwc", True),
        ("ai.onnx", True),
        ("ai.onnx.ml", True),
        ("ai.onnx.preview.training", True),
        ("org.pytorch.aten", True),
        ("", True),
        ("com.microsoftish", False),
        (hostile.LOCAL, False),
    ],
)
def test_a_local_function_may_not_live_in_a_domain_onnx_or_onnx_runtime_uses(domain: str, refused: bool) -> None:
    model = onnx.load_from_string(hostile.shadowed_contrib(domain, "Gelu"))
    if refused:
        with pytest.raises(InvalidModel, match="give local functions a domain of your own"):
            check_structure(model, LIMITS)
    else:
        check_structure(model, LIMITS)


def test_when_the_walk_refuses_a_shadowed_contrib_op_it_is_because_onnx_runtime_runs_the_kernel() -> None:
    """The control: ONNX Runtime runs the contrib Gelu, not the function's Identity, so the walk must refuse it."""
    session = ort.InferenceSession(hostile.shadowed_contrib(), providers=["CPUExecutionProvider"])
    (rows,) = session.run(None, {"images": np.zeros((1, 3, 64, 64), dtype=np.float32)})
    assert not np.allclose(rows, hostile.ROWS)


@pytest.mark.parametrize("kind", [onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS, onnx.AttributeProto.TENSOR])
def test_a_reference_to_a_graph_or_tensor_attribute_is_refused(kind: int) -> None:
    model = onnx.load_from_string(hostile.nested_functions())
    reference = onnx.AttributeProto(name="then_branch", ref_attr_name="g", type=kind)  # type: ignore[arg-type]
    model.functions[1].node[0].attribute.append(reference)
    with pytest.raises(InvalidModel, match="refers to a function attribute of type"):
        check_structure(model, LIMITS)


def test_a_function_call_attribute_is_small() -> None:
    model = onnx.load_from_string(hostile.nested_functions())
    model.graph.node[0].attribute.append(onnx.helper.make_attribute("blob", "x" * 2000))
    with pytest.raises(InvalidModel, match=r"a call of local\.warden\.tests\.Outer has an attribute 'blob'"):
        check_structure(model, LIMITS)


def test_copied_function_bodies_are_bounded() -> None:
    check_structure(onnx.load_from_string(hostile.copied_function_bodies(levels=2)), LIMITS)
    with pytest.raises(InvalidModel, match="copies"):
        check_structure(
            onnx.load_from_string(hostile.copied_function_bodies(levels=2)), replace(LIMITS, max_function_bytes=1 << 20)
        )


def test_the_wire_count_refuses_before_protobuf_builds_the_messages() -> None:
    data = hostile.empty_dimensions(2_000)
    check_wire(data, LIMITS)
    with pytest.raises(InvalidModel, match="more than 1500 protobuf messages"):
        check_wire(data, replace(LIMITS, max_messages=1500))
    with pytest.raises(InvalidModel, match="deeper than 6"):
        check_wire(hostile.deep_subgraphs(10), replace(LIMITS, max_depth=6))


def test_the_walk_counts_children_before_enumerating_them() -> None:
    """200,000 empty dims under a limit of 1,500 are refused without 200,000 entries pushed on the walk's stack."""
    model = onnx.load_from_string(hostile.empty_dimensions(200_000))
    tracemalloc.start()
    try:
        with pytest.raises(InvalidModel, match="more than 1500 protobuf messages"):
            check_structure(model, replace(LIMITS, max_messages=1500))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1024**2


@given(data=st.binary(max_size=200))
def test_the_wire_count_never_fails_on_garbage_but_with_invalid_model(data: bytes) -> None:
    with contextlib.suppress(InvalidModel):
        check_wire(hostile.serialise(hostile.detection_model())[:50] + data, LIMITS)
