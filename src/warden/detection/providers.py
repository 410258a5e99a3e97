"""Choosing ONNX Runtime execution providers from a device name.

Device names: ``cpu``; ``cuda`` or ``cuda:N``; ``tensorrt`` or ``tensorrt:N``
(TensorRT with CUDA and CPU behind it); ``auto`` (the best provider installed).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Final

from warden.errors import DeviceUnavailable, InvalidArgument

CPU: Final = "CPUExecutionProvider"
CUDA: Final = "CUDAExecutionProvider"
TENSORRT: Final = "TensorrtExecutionProvider"

ProviderSpec = tuple[str, dict[str, Any]]

_DEVICE = re.compile(r"^(?P<kind>cpu|cuda|tensorrt|auto)(?::(?P<index>\d{1,3}))?$")


def providers_for(device: str, available: Sequence[str]) -> list[ProviderSpec]:
    """Return the providers, best first, that run on ``device`` given the ``available`` ones.

    Raises ``InvalidArgument`` for a malformed name and ``DeviceUnavailable`` when
    the provider it needs is not installed.
    """
    match = _DEVICE.match(device.strip().lower())
    if match is None:
        raise InvalidArgument(f"unknown device {device!r}; use cpu, cuda[:N], tensorrt[:N] or auto")
    kind, index = match["kind"], int(match["index"] or 0)
    if kind == "cpu":
        if match["index"] is not None:
            raise InvalidArgument(f"device {device!r}: cpu takes no index")
        return [(CPU, {})]
    gpu = {"device_id": index}
    if kind == "auto":
        chosen = [p for p in (TENSORRT, CUDA) if p in available]
        return [(p, dict(gpu)) for p in chosen] + [(CPU, {})]
    wanted = [TENSORRT, CUDA] if kind == "tensorrt" else [CUDA]
    if wanted[0] not in available:
        raise DeviceUnavailable(
            f"device {device!r} needs ONNX Runtime's {wanted[0]}, which is not installed here "
            f"(available: {', '.join(available)}); install onnxruntime-gpu with the matching CUDA libraries"
        )
    return [(p, dict(gpu)) for p in wanted if p in available] + [(CPU, {})]


def check_active(device: str, requested: Sequence[ProviderSpec], active: Sequence[str]) -> None:
    """Refuse a session where ONNX Runtime silently fell back to CPU for an explicit GPU device."""
    first = requested[0][0]
    if device != "auto" and first != CPU and first not in active:
        raise DeviceUnavailable(
            f"device {device!r}: ONNX Runtime could not start {first} (active: {', '.join(active)}); "
            "check the CUDA/cuDNN/TensorRT libraries"
        )
