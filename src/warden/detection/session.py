"""Opening ONNX Runtime sessions behind walls: a capped arena per session, no external data, no folding.

Every session Warden opens for a tenant's model gets its own CPU arena capped at the
memory limit (an environment allocator registered under a lock just before the session
takes it), looks for external data only in an empty private folder, and keeps constant
folding off (folding runs at load, outside the arena). ONNX Runtime's errors are reduced
to one line a tenant may read (:func:`ort_message`).
"""

from __future__ import annotations

import atexit
import re
import shutil
import stat
import tempfile
import threading
from pathlib import Path
from typing import Final

import onnxruntime as ort
from onnxruntime.capi import _pybind_state as _ort_capi

from warden.detection.providers import CUDA
from warden.errors import InvalidModel

MAX_FUNCTION_NODES: Final = 100_000
"""Most nodes ONNX Runtime may create inlining a model's local functions."""


def session_options(threads: int | None) -> ort.SessionOptions:
    """ONNX Runtime options for one model run at a time: full graph optimisation, sequential, quiet logs.

    ``threads`` caps the intra-op thread pool (None: ONNX Runtime's default, one per core).
    """
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    if threads is not None:
        options.intra_op_num_threads = threads
    return options


def ort_operator_domains() -> frozenset[str]:
    """Every operator domain this ONNX Runtime build has a schema or a kernel in (its contrib domains included)."""
    schemas = (schema.domain for schema in _ort_capi.get_all_operator_schema())
    return frozenset({*schemas, *(kernel.domain for kernel in _ort_capi.get_all_opkernel_def())})


def ort_message(exc: BaseException) -> str:
    """ONNX Runtime's error as one short line a tenant may read: no heap addresses, C++ signatures or host paths."""
    text = str(exc).strip()
    if "bfc_arena" in text or "bad_alloc" in text or "Failed to allocate" in text:
        return "the model asked for more memory than the session's limit allows"
    line = text.splitlines()[0] if text else type(exc).__name__
    line = _ORT_SOURCE.sub(" ", line)
    line = _ORT_SIGNATURE.sub(" ", line)
    line = _HEX.sub("<address>", line)
    line = _PATH.sub("<path>", line)
    line = " ".join(line.split())
    return line if len(line) <= _MAX_MESSAGE else line[: _MAX_MESSAGE - 3] + "..."


_ORT_SOURCE: Final = re.compile(r"/?(?:[\w.-]+/)*[\w.-]+\.(?:cc|cpp|h):\d+\s*")
_ORT_SIGNATURE: Final = re.compile(r"(?:[\w*&]+\s+)?(?:onnxruntime|onnx|std)::[\w:~]+\([^)]*(?:\)|$)(?:\s*const)?\s*")
_HEX: Final = re.compile(r"0x[0-9a-fA-F]+")
_PATH: Final = re.compile(r"(?<![\w.])/(?:[^\s\"',:]+/?)+")
_MAX_MESSAGE: Final = 300


def open_session(
    model: str | Path | bytes,
    providers: list[tuple[str, dict[str, object]]],
    threads: int | None,
    memory_limit: int,
) -> ort.InferenceSession:
    options = _hardened_options(threads, from_bytes=isinstance(model, bytes))
    source: str | bytes
    if isinstance(model, bytes):
        source = model
    else:
        path = Path(model)
        if not path.is_file():
            raise InvalidModel(f"no model file at {path}")
        source = str(path)
    names = [name for name, _ in providers]
    provider_options = [_capped(name, opts, memory_limit) for name, opts in providers]
    try:
        with _ARENA_LOCK:
            # The arena registered last is the one a new session takes: one per session, with its own cap.
            ort.create_and_register_allocator(_CPU_ARENA, ort.OrtArenaCfg({"max_mem": memory_limit}))
            return ort.InferenceSession(
                source,
                sess_options=options,
                providers=names,
                provider_options=provider_options,
                disabled_optimizers=_DISABLED_OPTIMIZERS,
            )
    except Exception as exc:  # ONNX Runtime raises its own untyped errors for bad models.
        raise InvalidModel(f"ONNX Runtime cannot load the model: {ort_message(exc)}") from None


_ARENA_LOCK: Final = threading.Lock()
"""Held from registering a session's arena until ONNX Runtime has taken it, which it does at the start of
``initialize_session``, not in the constructor (measured: an arena registered between the two is the one used), and
``InferenceSession()`` runs both in one call; function inlining and optimisation come after, inside the same call
(4**7 graph copies: constructor 0.40 s, initialisation 9.88 s). So the lock covers the whole load, and what bounds
its hold is the upload walk: function expansion and copied bytes, dense tensor sizes and message counts are checked
before any session is made (serving loads only validated blobs; operators' own files are trusted)."""
_CPU_ARENA: Final = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
_DISABLED_OPTIMIZERS: Final = ["ConstantFolding"]
"""Folding runs at load, outside the arena and its cap: a folded ConstantOfShape could take gigabytes.

Exports are folded already (the fall model's optimised graph is the same 219 nodes with it off)."""


def _hardened_options(threads: int | None, *, from_bytes: bool) -> ort.SessionOptions:
    options = session_options(threads)
    options.add_session_config_entry("session.use_env_allocators", "1")
    options.add_session_config_entry("session.function_expansion_node_limit", str(MAX_FUNCTION_NODES))
    if from_bytes:
        options.add_session_config_entry("session.model_external_initializers_file_folder_path", str(_empty_folder()))
    return options


def _capped(provider: str, options: dict[str, object], memory_limit: int) -> dict[str, object]:
    if provider == CUDA and "gpu_mem_limit" not in options:
        return {**options, "gpu_mem_limit": str(memory_limit)}
    return options


_FOLDER_LOCK: Final = threading.Lock()
_EMPTY: list[Path] = []


def _empty_folder() -> Path:
    """A private empty folder of this process's, where ONNX Runtime looks for the external data of bytes.

    Made again should anything (a /tmp cleaner, another user) remove it or put something in it.
    """
    with _FOLDER_LOCK:
        if not _EMPTY or not _private_and_empty(_EMPTY[-1]):
            folder = Path(tempfile.mkdtemp(prefix="warden-no-external-data-"))
            atexit.register(shutil.rmtree, folder, ignore_errors=True)
            _EMPTY.append(folder)
        return _EMPTY[-1]


def _private_and_empty(folder: Path) -> bool:
    try:
        info = folder.lstat()
        return stat.S_ISDIR(info.st_mode) and not stat.S_IMODE(info.st_mode) & 0o077 and not any(folder.iterdir())
    except OSError:
        return False
