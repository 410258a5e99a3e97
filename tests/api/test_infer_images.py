"""Bounded work per ``/v2`` request: few images, decoded one at a time, each counted against the rate.

The outsider's request: sixteen 5 KB PNGs declaring 40 megapixels each (bilevel, so they
compress to almost nothing and expand to 120 MB of RGB apiece). It is refused before any
decode; a request within ``WARDEN_MAX_IMAGES_PER_REQUEST`` is served with the pixels of one
image in memory at a time (traced allocations, not time).
"""

from __future__ import annotations

import base64
import io
import tracemalloc
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from tests.api.conftest import tiny_graph
from warden.api import create_app
from warden.services import Services, open_services
from warden.settings import Settings
from warden.tenancy import Scope

WIDTH, HEIGHT = 8000, 5000
RGB_BYTES = WIDTH * HEIGHT * 3


def bomb() -> bytes:
    """A PNG of 40 megapixels in about 5 KB: bilevel, all black."""
    out = io.BytesIO()
    Image.new("1", (WIDTH, HEIGHT)).save(out, "PNG", optimize=True)
    return out.getvalue()


def small_png(shade: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (48, 32), (shade, shade, shade)).save(out, "PNG")
    return out.getvalue()


def infer_request(images: list[bytes]) -> dict[str, object]:
    data = [base64.b64encode(image).decode() for image in images]
    return {"inputs": [{"name": "image", "shape": [len(images)], "datatype": "BYTES", "data": data}]}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, Services]]:
    """An app with the default limits (8 images per request, 40 MP per image) and no tenants yet."""
    services = open_services(Settings(data_dir=tmp_path_factory.mktemp("images") / "data"))
    try:
        with TestClient(create_app(services)) as client:
            yield client, services
    finally:
        services.close()


def tenant(services: Services, name: str, **quota: object) -> dict[str, str]:
    services.tenants.create_tenant(name)
    if quota:
        services.tenants.update_quota(name, quota)
    services.registry.push(services.tenants.tenant_id(name), "tiny", tiny_graph())
    return {"Authorization": f"Bearer {services.tenants.create_key(name, Scope.DETECT).key}"}


def traced(work: object) -> tuple[object, int]:
    """Run ``work()`` under tracemalloc (every thread); its result and the peak of traced allocations."""
    tracemalloc.start()
    try:
        result = work()  # type: ignore[operator]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak


def test_the_bomb_png_is_small_and_declares_forty_megapixels() -> None:
    data = bomb()
    assert len(data) < 8 * 1024
    assert Image.open(io.BytesIO(data)).size == (WIDTH, HEIGHT)


def test_sixteen_forty_megapixel_pngs_are_refused_before_any_is_decoded(served: tuple[TestClient, Services]) -> None:
    client, services = served
    headers = tenant(services, "bomber")
    request = infer_request([bomb()] * 16)
    answer, peak = traced(lambda: client.post("/v2/models/tiny/infer", json=request, headers=headers))
    assert answer.status_code == 413  # type: ignore[attr-defined]
    assert answer.headers["x-error-code"] == "too_many_images"  # type: ignore[attr-defined]
    assert "at most 8" in answer.json()["error"]  # type: ignore[attr-defined]
    assert peak < RGB_BYTES / 4  # not one image's pixels


def test_images_within_the_cap_are_decoded_one_at_a_time(served: tuple[TestClient, Services]) -> None:
    client, services = served
    headers = tenant(services, "heavy")
    request = infer_request([bomb()] * 4)
    answer, peak = traced(lambda: client.post("/v2/models/tiny/infer", json=request, headers=headers))
    assert answer.status_code == 200, answer.text  # type: ignore[attr-defined]
    outputs = {o["name"]: o for o in answer.json()["outputs"]}  # type: ignore[attr-defined]
    assert outputs["num_detections"]["shape"] == [4]
    assert peak < 2.5 * RGB_BYTES  # four decoded at once would be at least 4 x RGB_BYTES


def test_each_image_counts_against_the_tenant_rate(served: tuple[TestClient, Services]) -> None:
    client, services = served
    headers = tenant(services, "counted", rps=0.01, burst=5)
    four = client.post("/v2/models/tiny/infer", json=infer_request([small_png(i) for i in range(4)]), headers=headers)
    assert four.status_code == 200, four.text
    two = client.post("/v2/models/tiny/infer", json=infer_request([small_png(9), small_png(8)]), headers=headers)
    assert (two.status_code, two.headers["x-error-code"]) == (429, "rate_limited")
    assert int(two.headers["retry-after"]) >= 1


def test_more_images_than_the_burst_can_never_pass_and_say_so(served: tuple[TestClient, Services]) -> None:
    client, services = served
    headers = tenant(services, "bursty", rps=0.01, burst=5)
    six = client.post("/v2/models/tiny/infer", json=infer_request([small_png(i) for i in range(6)]), headers=headers)
    assert (six.status_code, six.headers["x-error-code"]) == (413, "too_many_images")
    assert "burst of 5" in six.json()["error"]
