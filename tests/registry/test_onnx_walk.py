"""The structural walker: external data anywhere is refused, and it fails closed on what it does not know."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.registry import hostile
from warden.errors import InvalidModel
from warden.registry.onnx_walk import KNOWN_MESSAGES, WalkLimits, check_structure
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
