"""Letterboxing as Ultralytics does it, the input tensor, and mapping boxes back to the original image.

Expected geometries are worked out by hand from Ultralytics' rules: gain ``r = min(th/h, tw/w)``
(small images are scaled up), resized size ``max(round(w·r), 1)`` with Python's rounding, and the
slack split as ``round(d - 0.1)`` before and ``round(d + 0.1)`` after, ``d`` being half the slack.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from warden.detection.letterbox import PAD_VALUE, letterbox, letterbox_geometry, scale_boxes, to_tensor

Size = tuple[int, int]
Padding = tuple[int, int, int, int]
Options = dict[str, Any]
AUTO: Options = {"auto": True}
AUTO_64: Options = {"auto": True, "stride": 64}

GEOMETRIES = [
    # (h, w), target (h, w), options, (resized (w, h), padding (top, bottom, left, right))
    pytest.param((640, 640), (640, 640), {}, ((640, 640), (0, 0, 0, 0)), id="exact fit"),
    pytest.param((512, 512), (640, 640), {}, ((640, 640), (0, 0, 0, 0)), id="512 scaled up"),
    pytest.param((320, 320), (640, 640), {}, ((640, 640), (0, 0, 0, 0)), id="320 scaled up"),
    # r = 1: 213 px of slack, 106.5 each side -> 106 above, 107 below.
    pytest.param((427, 640), (640, 640), {}, ((640, 427), (106, 107, 0, 0)), id="427x640"),
    pytest.param((428, 640), (640, 640), {}, ((640, 428), (106, 106, 0, 0)), id="428x640 even slack"),
    # r = 640/485: 333 r = 439.42 -> 439; 201 px of slack -> 100 above, 101 below.
    pytest.param((333, 485), (640, 640), {}, ((640, 439), (100, 101, 0, 0)), id="333x485"),
    pytest.param((720, 1280), (640, 640), {}, ((640, 360), (140, 140, 0, 0)), id="720p"),
    pytest.param((1280, 720), (640, 640), {}, ((360, 640), (0, 0, 140, 140)), id="720p portrait"),
    # r = 0.64: the 1 px side rounds to 1 (never 0); 639 px of slack -> 319 and 320.
    pytest.param((1, 1000), (640, 640), {}, ((640, 1), (319, 320, 0, 0)), id="1x1000"),
    pytest.param((1000, 1), (640, 640), {}, ((1, 640), (0, 0, 319, 320)), id="1000x1"),
    # r = 0.5: 333 r = 166.5 rounds half to even -> 166 (not 167); 474 px of slack -> 237 each side.
    pytest.param((1280, 333), (640, 640), {}, ((166, 640), (0, 0, 237, 237)), id="half rounds to even"),
    pytest.param((1280, 335), (640, 640), {}, ((168, 640), (0, 0, 236, 236)), id="half rounds up to even"),
    pytest.param((720, 1280), (384, 640), {}, ((640, 360), (12, 12, 0, 0)), id="non-square target"),
    pytest.param((1080, 1920), (480, 640), {}, ((640, 360), (60, 60, 0, 0)), id="1080p into 480x640"),
    # auto: the slack is reduced modulo the stride before it is split (280 % 32 = 24, 213 % 32 = 21, ...).
    pytest.param((640, 640), (640, 640), AUTO, ((640, 640), (0, 0, 0, 0)), id="auto exact fit"),
    pytest.param((720, 1280), (640, 640), AUTO, ((640, 360), (12, 12, 0, 0)), id="auto 720p"),
    pytest.param((1280, 720), (640, 640), AUTO, ((360, 640), (0, 0, 12, 12)), id="auto 720p portrait"),
    pytest.param((427, 640), (640, 640), AUTO, ((640, 427), (10, 11, 0, 0)), id="auto 427x640"),
    pytest.param((333, 485), (640, 640), AUTO, ((640, 439), (4, 5, 0, 0)), id="auto 333x485"),
    pytest.param((1, 1000), (640, 640), AUTO, ((640, 1), (15, 16, 0, 0)), id="auto 1x1000"),
    # 639 % 64 = 63: 31.5 each side -> 31 above, 32 below.
    pytest.param((1, 1000), (640, 640), AUTO_64, ((640, 1), (31, 32, 0, 0)), id="auto 1x1000 stride 64"),
]


@pytest.mark.parametrize(("size", "target", "options", "expected"), GEOMETRIES)
def test_when_an_image_is_letterboxed_then_its_geometry_follows_ultralytics(
    size: Size, target: Size, options: Options, expected: tuple[Size, Padding]
) -> None:
    height, width = size
    assert letterbox_geometry(height, width, target, **options) == expected


def noise(height: int, width: int, seed: int = 0) -> npt.NDArray[np.uint8]:
    return np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)


@pytest.mark.parametrize(("size", "target", "options", "expected"), GEOMETRIES)
def test_when_an_image_is_letterboxed_then_pixels_match_opencv_linear_resize_and_gray_border(
    size: Size, target: Size, options: Options, expected: tuple[Size, Padding]
) -> None:
    image = noise(*size)
    resized, (top, bottom, left, right) = expected
    scaled = image if resized == (size[1], size[0]) else cv2.resize(image, resized, interpolation=cv2.INTER_LINEAR)
    want = cv2.copyMakeBorder(scaled, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(114, 114, 114))
    got = letterbox(image, target, **options)
    assert got.dtype == np.uint8
    assert got.shape == (resized[1] + top + bottom, resized[0] + left + right, 3)
    np.testing.assert_array_equal(got, want)


def test_when_the_image_needs_no_resize_then_its_pixels_are_copied_unchanged() -> None:
    image = noise(427, 640)
    got = letterbox(image, (640, 640))
    np.testing.assert_array_equal(got[106 : 106 + 427], image)


@pytest.mark.parametrize("fill", [0, 255])
def test_when_an_image_is_letterboxed_then_the_border_is_exactly_114_on_every_channel(fill: int) -> None:
    image = np.full((360, 640, 3), fill, dtype=np.uint8)
    got = letterbox(image, (640, 640))
    assert PAD_VALUE == 114
    border = np.concatenate((got[:140], got[500:]))
    assert border.shape == (280, 640, 3)
    assert np.all(border == 114)
    assert np.all(got[140:500] == fill)


def test_when_downscaling_then_the_resize_is_bilinear_not_area_or_nearest() -> None:
    # A non-integer ratio (0.64): at exactly 1/2 bilinear and area resizing coincide.
    image = noise(1000, 1000, seed=1)
    got = letterbox(image, (640, 640))
    linear = cv2.resize(image, (640, 640), interpolation=cv2.INTER_LINEAR)
    area = cv2.resize(image, (640, 640), interpolation=cv2.INTER_AREA)
    nearest = cv2.resize(image, (640, 640), interpolation=cv2.INTER_NEAREST)
    np.testing.assert_array_equal(got, linear)
    assert not np.array_equal(got, area)
    assert not np.array_equal(got, nearest)


# --- to_tensor -----------------------------------------------------------------------------------


def test_when_images_are_stacked_then_the_tensor_is_nchw_float32_in_unit_range() -> None:
    images = [noise(4, 6, seed=1), noise(4, 6, seed=2)]
    images[0][0, 0] = (0, 128, 255)
    tensor = to_tensor(images, np.float32)
    assert tensor.dtype == np.float32
    assert tensor.shape == (2, 3, 4, 6)
    assert tensor.flags.c_contiguous
    assert tensor[0, :, 0, 0].tolist() == [0.0, np.float32(128) / np.float32(255), 1.0]
    for n, image in enumerate(images):
        # Channel c of the tensor is channel c of the image: no colour flip here, the images are RGB.
        np.testing.assert_allclose(tensor[n], image.transpose(2, 0, 1) / 255, rtol=0, atol=1e-7)
    assert tensor.min() >= 0.0
    assert tensor.max() <= 1.0


def test_when_float16_is_asked_then_the_tensor_is_float16() -> None:
    image = noise(5, 7)
    tensor = to_tensor([image], np.float16)
    assert tensor.dtype == np.float16
    assert tensor.shape == (1, 3, 5, 7)
    np.testing.assert_allclose(tensor[0].astype(np.float32), image.transpose(2, 0, 1) / 255, atol=1e-3)


# --- scale_boxes ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("box", "input_shape", "original_shape", "expected"),
    [
        pytest.param((0, 140, 640, 500), (640, 640), (720, 1280), (0, 0, 1280, 720), id="content edges"),
        pytest.param((100, 240, 200, 340), (640, 640), (720, 1280), (200, 200, 400, 400), id="inside 720p"),
        pytest.param((140, 100, 240, 150), (640, 640), (1280, 720), (0, 200, 200, 300), id="portrait"),
        pytest.param((10, 116, 20, 126), (640, 640), (427, 640), (10, 10, 20, 20), id="no resize"),
        pytest.param((-10, 100, 700, 600), (640, 640), (720, 1280), (0, 0, 1280, 720), id="clipped to image"),
        pytest.param((0, 0, 640, 140), (640, 640), (720, 1280), (0, 0, 1280, 0), id="all in padding"),
        pytest.param((0, 12, 640, 372), (384, 640), (720, 1280), (0, 0, 1280, 720), id="auto padding"),
    ],
)
def test_when_a_box_is_mapped_back_then_padding_and_gain_are_undone(
    box: tuple[float, ...], input_shape: Size, original_shape: Size, expected: tuple[float, ...]
) -> None:
    boxes = np.asarray([box], dtype=np.float32)
    scale_boxes(boxes, input_shape, original_shape)
    assert boxes.dtype == np.float32
    np.testing.assert_allclose(boxes[0], expected, atol=1e-3)


@settings(max_examples=200, deadline=None)
@given(
    height=st.integers(1, 2000),
    width=st.integers(1, 2000),
    target=st.sampled_from([(640, 640), (480, 640), (640, 320)]),
    auto=st.booleans(),
    fractions=st.lists(st.floats(0, 1), min_size=4, max_size=4),
)
def test_when_a_box_is_placed_in_the_letterboxed_image_then_it_maps_back_within_half_a_pixel_or_ultralytics_rect_slack(
    height: int, width: int, target: Size, auto: bool, fractions: list[float]
) -> None:
    (new_w, new_h), (top, bottom, left, right) = letterbox_geometry(height, width, target, auto=auto)
    fx1, fx2 = sorted(fractions[:2])
    fy1, fy2 = sorted(fractions[2:])
    original = np.asarray([fx1 * width, fy1 * height, fx2 * width, fy2 * height])
    # Where the letterboxed image shows that part of the original: resized by new/old, shifted by padding.
    placed = np.asarray(
        [[left + fx1 * new_w, top + fy1 * new_h, left + fx2 * new_w, top + fy2 * new_h]], dtype=np.float32
    )
    scale_boxes(placed, (new_h + top + bottom, new_w + left + right), (height, width))
    # Ultralytics recomputes the gain from the padded input; with "auto" (rect) padding that can
    # differ from the gain used to resize by up to a pixel of the model input, as in its own predict.
    tolerance = 0.5 if not auto else 1.5 * max(height / new_h, width / new_w)
    np.testing.assert_allclose(placed[0], original, rtol=0, atol=tolerance)


@settings(max_examples=200, deadline=None)
@given(
    height=st.integers(1, 2000),
    width=st.integers(1, 2000),
    coords=st.lists(st.floats(-1000, 2000, width=32), min_size=4, max_size=4),
)
def test_when_any_box_is_mapped_back_then_it_lies_within_the_image(
    height: int, width: int, coords: list[float]
) -> None:
    boxes = np.asarray([coords], dtype=np.float32)
    scale_boxes(boxes, (640, 640), (height, width))
    assert np.all(boxes >= 0)
    assert np.all(boxes[:, [0, 2]] <= width)
    assert np.all(boxes[:, [1, 3]] <= height)
