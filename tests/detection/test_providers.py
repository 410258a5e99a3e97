"""Choosing ONNX Runtime execution providers from a device name, and refusing silent CPU fallback."""

from __future__ import annotations

import pytest

from warden.detection.providers import CPU, CUDA, TENSORRT, ProviderSpec, check_active, providers_for
from warden.errors import DeviceUnavailable, InvalidArgument

CPU_ONLY = [CPU]
WITH_CUDA = [CUDA, CPU]
WITH_TENSORRT = [TENSORRT, CUDA, CPU]
TENSORRT_NO_CUDA = [TENSORRT, CPU]


@pytest.mark.parametrize(
    ("device", "available", "expected"),
    [
        pytest.param("cpu", CPU_ONLY, [(CPU, {})], id="cpu"),
        pytest.param("CPU", CPU_ONLY, [(CPU, {})], id="CPU uppercase"),
        pytest.param(" cpu ", CPU_ONLY, [(CPU, {})], id="cpu surrounded by spaces"),
        pytest.param("cpu", WITH_TENSORRT, [(CPU, {})], id="cpu ignores GPUs"),
        pytest.param("cuda", WITH_CUDA, [(CUDA, {"device_id": 0}), (CPU, {})], id="cuda"),
        pytest.param("Cuda", WITH_CUDA, [(CUDA, {"device_id": 0}), (CPU, {})], id="cuda mixed case"),
        pytest.param("cuda:1", WITH_CUDA, [(CUDA, {"device_id": 1}), (CPU, {})], id="cuda:1"),
        pytest.param("cuda:0", WITH_TENSORRT, [(CUDA, {"device_id": 0}), (CPU, {})], id="cuda skips tensorrt"),
        pytest.param(
            "tensorrt",
            WITH_TENSORRT,
            [(TENSORRT, {"device_id": 0}), (CUDA, {"device_id": 0}), (CPU, {})],
            id="tensorrt with cuda",
        ),
        pytest.param(
            "tensorrt:2",
            WITH_TENSORRT,
            [(TENSORRT, {"device_id": 2}), (CUDA, {"device_id": 2}), (CPU, {})],
            id="tensorrt:2",
        ),
        pytest.param(
            "tensorrt",
            TENSORRT_NO_CUDA,
            [(TENSORRT, {"device_id": 0}), (CPU, {})],
            id="tensorrt without cuda",
        ),
        pytest.param("auto", CPU_ONLY, [(CPU, {})], id="auto with nothing"),
        pytest.param("auto", [], [(CPU, {})], id="auto with an empty list"),
        pytest.param("auto", WITH_CUDA, [(CUDA, {"device_id": 0}), (CPU, {})], id="auto with cuda"),
        pytest.param(
            "auto",
            WITH_TENSORRT,
            [(TENSORRT, {"device_id": 0}), (CUDA, {"device_id": 0}), (CPU, {})],
            id="auto with tensorrt",
        ),
        pytest.param(
            "auto",
            [CPU, CUDA, TENSORRT],
            [(TENSORRT, {"device_id": 0}), (CUDA, {"device_id": 0}), (CPU, {})],
            id="auto orders best first whatever the available order",
        ),
        pytest.param("auto:1", WITH_CUDA, [(CUDA, {"device_id": 1}), (CPU, {})], id="auto:1"),
    ],
)
def test_when_a_device_is_named_then_providers_are_listed_best_first(
    device: str, available: list[str], expected: list[ProviderSpec]
) -> None:
    assert providers_for(device, available) == expected


@pytest.mark.parametrize(
    "device",
    [
        pytest.param("gpu", id="gpu"),
        pytest.param("cuda:x", id="cuda:x"),
        pytest.param("cpu:0", id="cpu:0"),
        pytest.param("cuda:", id="empty index"),
        pytest.param("cuda:-1", id="negative index"),
        pytest.param("cuda:1000", id="index too long"),
        pytest.param("cuda 1", id="space instead of colon"),
        pytest.param("", id="empty"),
        pytest.param("cuda:0:1", id="two indices"),
        pytest.param("mps", id="mps"),
    ],
)
def test_when_a_device_name_is_malformed_then_invalid_argument_names_it(device: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        providers_for(device, WITH_TENSORRT)
    assert repr(device) in str(caught.value)


@pytest.mark.parametrize(
    ("device", "available", "missing"),
    [
        pytest.param("cuda", CPU_ONLY, CUDA, id="cuda on cpu only"),
        pytest.param("cuda:1", CPU_ONLY, CUDA, id="cuda:1 on cpu only"),
        pytest.param("cuda", TENSORRT_NO_CUDA, CUDA, id="cuda with only tensorrt"),
        pytest.param("tensorrt", WITH_CUDA, TENSORRT, id="tensorrt with only cuda"),
        pytest.param("tensorrt", CPU_ONLY, TENSORRT, id="tensorrt on cpu only"),
    ],
)
def test_when_the_needed_provider_is_not_installed_then_device_unavailable_says_how_to_get_it(
    device: str, available: list[str], missing: str
) -> None:
    with pytest.raises(DeviceUnavailable) as caught:
        providers_for(device, available)
    message = str(caught.value)
    assert repr(device) in message
    assert missing in message
    assert "onnxruntime-gpu" in message


def test_when_providers_are_listed_then_their_option_dicts_are_independent() -> None:
    specs = providers_for("tensorrt:1", WITH_TENSORRT)
    specs[0][1]["device_id"] = 7
    assert specs[1][1] == {"device_id": 1}
    assert providers_for("tensorrt:1", WITH_TENSORRT)[0][1] == {"device_id": 1}


@pytest.mark.parametrize(
    ("device", "active"),
    [
        pytest.param("cpu", [CPU], id="cpu on cpu"),
        pytest.param("cuda", [CUDA, CPU], id="cuda started"),
        pytest.param("cuda:1", [CUDA, CPU], id="cuda:1 started"),
        pytest.param("tensorrt", [TENSORRT, CUDA, CPU], id="tensorrt started"),
        pytest.param("auto", [CPU], id="auto may fall back to cpu"),
    ],
)
def test_when_the_first_requested_provider_is_active_or_device_is_auto_then_check_active_accepts(
    device: str, active: list[str]
) -> None:
    available = [TENSORRT, CUDA, CPU]
    check_active(device, providers_for(device, available), active)


@pytest.mark.parametrize(
    ("device", "active", "missing"),
    [
        pytest.param("cuda", [CPU], CUDA, id="cuda fell back to cpu"),
        pytest.param("cuda:1", [CPU], CUDA, id="cuda:1 fell back to cpu"),
        pytest.param("tensorrt", [CUDA, CPU], TENSORRT, id="tensorrt fell back to cuda"),
        pytest.param("tensorrt", [CPU], TENSORRT, id="tensorrt fell back to cpu"),
    ],
)
def test_when_an_explicit_gpu_device_fell_back_then_check_active_refuses_it(
    device: str, active: list[str], missing: str
) -> None:
    requested = providers_for(device, [TENSORRT, CUDA, CPU])
    with pytest.raises(DeviceUnavailable) as caught:
        check_active(device, requested, active)
    message = str(caught.value)
    assert repr(device) in message
    assert missing in message
