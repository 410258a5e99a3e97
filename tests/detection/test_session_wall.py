"""The session's own walls, with upload validation switched off: ``DetectionModel.load`` on hostile bytes.

A model given as bytes finds no file outside Warden's empty folder, whatever its
external data names; a run that asks for more than the memory limit fails with
``invalid_model`` and the process carries on; ONNX Runtime's errors reach the
caller without addresses or C++ signatures.
"""

from __future__ import annotations

import resource
import threading
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from tests.registry import hostile
from warden.detection import DetectionModel
from warden.detection import session as session_module
from warden.detection.model import ort_message
from warden.errors import InvalidArgument, InvalidModel, UnsupportedModel
from warden.registry.validation import validate_model

MiB = 1024**2


@pytest.fixture
def canary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with one detection's bytes at ``warden-data/secret.key``; returns that file."""
    monkeypatch.chdir(tmp_path)
    secret = tmp_path / hostile.KEY_FILE
    secret.parent.mkdir()
    secret.write_bytes(hostile.secret_rows())
    return secret


@pytest.mark.parametrize(
    "where",
    ["relative", "absolute", "escaping", "dot-dot from the empty folder", "memory tag"],
)
@pytest.mark.parametrize("place", ["function default", "initializer", "training initializer"])
def test_when_external_data_reaches_a_session_then_no_host_file_is_read(canary: Path, where: str, place: str) -> None:
    location = {
        "relative": hostile.KEY_FILE,
        "absolute": str(canary),
        "escaping": "../" * 12 + str(canary).lstrip("/"),
        "dot-dot from the empty folder": f"../{canary.parent.name}/{canary.name}",
        "memory tag": "*/_ORT_MEM_ADDR_/*",
    }[where]
    if place == "training initializer":  # ONNX Runtime ignores training info: the model serves its own rows
        model = DetectionModel.load(hostile.plant_external("training_initialization", (), "initializer", location))
        found = model.detect_rgb([np.zeros((64, 64, 3), dtype=np.uint8)], conf=0.01)[0]
        assert found.class_ids.tolist() == [hostile.BOX.class_id]
        assert [round(float(score), 2) for score in found.scores] == [hostile.BOX.score]
        return
    data = hostile.leak_model(location) if place == "function default" else hostile.plant_external_rows(location)
    with pytest.raises(InvalidModel, match="ONNX Runtime cannot load the model") as caught:
        DetectionModel.load(data)
    assert "warden-no-external-data" not in caught.value.message  # the folder's path is the server's business


def test_without_the_folder_wall_the_leak_is_real(canary: Path) -> None:
    """Shows the attack the wall stops: a plain session, opened as Warden opened them, reads the relative file."""
    session = ort.InferenceSession(hostile.leak_model(), providers=["CPUExecutionProvider"])
    (rows,) = session.run(None, {"images": np.zeros((1, 3, 64, 64), dtype=np.float32)})
    assert rows.astype(np.float32).tobytes() == canary.read_bytes()


def test_a_model_file_may_still_use_external_data_beside_it(tmp_path: Path) -> None:
    """Paths are the operator's own files: external data next to the model still loads (only bytes are confined)."""
    (tmp_path / "rows.bin").write_bytes(hostile.secret_rows())
    (tmp_path / "model.onnx").write_bytes(hostile.plant_external_rows("rows.bin"))
    model = DetectionModel.load(tmp_path / "model.onnx")
    found = model.detect_rgb([np.zeros((64, 64, 3), dtype=np.uint8)], conf=0.5)[0]
    assert found.class_ids.tolist() == [2]


@pytest.mark.parametrize("kind", ["constant", "input", "expand"])
def test_when_a_run_asks_for_more_than_the_memory_limit_then_invalid_model_and_nothing_is_allocated(kind: str) -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    model = DetectionModel.load(hostile.memory_bomb(kind, 1024 * MiB), memory_limit=128 * MiB)
    with pytest.raises(InvalidModel, match="asked for more memory than the session's limit allows"):
        model.detect_rgb([np.zeros((64, 64, 3), dtype=np.uint8)])
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    assert grown < 512 * MiB


def test_when_the_allocation_follows_the_pixels_then_only_the_bright_request_fails() -> None:
    model = DetectionModel.load(hostile.brightness_bomb(gib_at_white=1), memory_limit=128 * MiB)
    blank = model.detect_rgb([np.zeros((64, 64, 3), dtype=np.uint8)])[0]
    with pytest.raises(InvalidModel, match="more memory"):
        model.detect_rgb([np.full((64, 64, 3), 255, dtype=np.uint8)])
    again = model.detect_rgb([np.zeros((64, 64, 3), dtype=np.uint8)])[0]
    assert again.to_dicts() == blank.to_dicts()


def test_each_session_has_its_own_arena_and_cap() -> None:
    small = DetectionModel.load(hostile.memory_bomb("constant", 1 * MiB), memory_limit=64 * MiB)
    bomb = hostile.memory_bomb("constant", 256 * MiB)
    roomy = DetectionModel.load(bomb, memory_limit=512 * MiB)
    tight = DetectionModel.load(bomb, memory_limit=64 * MiB)
    roomy.detect_rgb([np.zeros((64, 64, 3), dtype=np.uint8)])
    with pytest.raises(InvalidModel, match="more memory"):
        tight.detect_rgb([np.zeros((64, 64, 3), dtype=np.uint8)])
    small.detect_rgb([np.zeros((64, 64, 3), dtype=np.uint8)])


def test_the_real_model_answers_the_same_under_the_walls(fall_model_file: Path, fall_model: DetectionModel) -> None:
    photo = (Path(__file__).parent / "data" / "astronaut.png").read_bytes()
    walled = DetectionModel.load(fall_model_file.read_bytes(), memory_limit=512 * MiB)
    assert walled.detect(photo, conf=0.05).to_dicts() == fall_model.detect(photo, conf=0.05).to_dicts()


@pytest.mark.parametrize(
    ("data", "memory_limit", "error", "message"),
    [
        (hostile.huge_input((1, 3, 9000, 64)), None, UnsupportedModel, "input side 9000 is larger than 8192"),
        (hostile.huge_input((300, 3, 64, 64)), None, UnsupportedModel, "fixed batch is 300"),
        (hostile.huge_input((16, 3, 4096, 4096)), 1024 * MiB, UnsupportedModel, "more than the memory limit"),
        (hostile.impossible_reshape(), None, InvalidModel, "ONNX Runtime failed running the model"),
        (hostile.serialise(hostile.detection_model()), 0, InvalidArgument, "memory_limit must be at least 1"),
    ],
)
def test_load_time_limits(data: bytes, memory_limit: int | None, error: type[Exception], message: str) -> None:
    options = {} if memory_limit is None else {"memory_limit": memory_limit}
    with pytest.raises(error, match=message):
        DetectionModel.load(data, **options).detect_rgb([np.zeros((64, 64, 3), dtype=np.uint8)])


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        (
            "[ONNXRuntimeError] : 1 : FAIL : /onnxruntime_src/onnxruntime/core/graph/graph.cc:1451 "
            "onnxruntime::Graph::Graph(const onnxruntime::Model&, onnx::GraphProto*, const std::unordered_map<std::",
            "[ONNXRuntimeError] : 1 : FAIL :",
        ),
        (
            "Status Message: /onnxruntime_src/x/reshape_helper.h:91 onnxruntime::ReshapeHelper::ReshapeHelper(const "
            "onnxruntime::TensorShape&, bool) input_shape_size == requested_shape_size was false.",
            "Status Message: input_shape_size == requested_shape_size was false.",
        ),
        ('path does not exist: "/srv/warden/secret.key" at 0x7f3a2b1c', 'path does not exist: "<path>" at <address>'),
        (
            "bfc_arena.cc:360 Available memory of 1 is smaller",
            "the model asked for more memory than the session's limit",
        ),
        ("x" * 1000, "x" * 297 + "..."),
    ],
)
def test_onnx_runtime_errors_are_shown_without_addresses_signatures_or_paths(raw: str, shown: str) -> None:
    assert ort_message(RuntimeError(raw)).startswith(shown)


def test_a_hostile_upload_is_refused_without_holding_the_arena_lock_another_tenant_needs() -> None:
    """The 4**8 graph-attribute upload held ``_ARENA_LOCK`` through ONNX Runtime's load (86 s), and every other
    tenant's load waited behind it; it is now refused by the walk before any session, so the lock is never taken."""
    refused: list[InvalidModel] = []
    done = threading.Event()

    def upload() -> None:
        try:
            validate_model(hostile.graph_attribute_blowup(7), 1 << 30)
        except InvalidModel as exc:
            refused.append(exc)
        finally:
            done.set()

    uploader = threading.Thread(target=upload)
    held = False
    uploader.start()
    while not done.is_set():
        held = held or session_module._ARENA_LOCK.locked()
        done.wait(0.001)
    uploader.join()
    other = DetectionModel.load(hostile.serialise(hostile.detection_model()))
    assert not held
    assert refused
    assert "type GRAPH" in refused[0].message
    assert len(other.detect_rgb([np.zeros((64, 64, 3), dtype=np.uint8)])[0].to_dicts()) == 1
