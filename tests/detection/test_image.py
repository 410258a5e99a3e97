"""Safe decoding: every accepted format and pixel mode, EXIF orientation, and a table of hostile files."""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import textwrap

import cv2
import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageOps

from tests.detection.images import (
    animated,
    bmp_claiming,
    encode,
    gif_claiming,
    gradient,
    jpeg_claiming,
    png,
    png16,
    with_orientation,
)
from warden.detection import ImageLimits, decode_image, to_rgb
from warden.errors import ImageErrorReason, InvalidArgument, InvalidImage

RGB = gradient()


def pillow_rgb(data: bytes) -> npt.NDArray[np.uint8]:
    """Pillow's own RGB rendering of a file: the oracle for lossy and palette formats."""
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


@pytest.mark.parametrize(
    ("fmt", "params"),
    [
        ("PNG", {}),
        ("WEBP", {"lossless": True}),
        ("BMP", {}),
        ("TIFF", {}),
        ("TIFF", {"compression": "tiff_lzw"}),
    ],
)
def test_when_a_lossless_file_is_decoded_then_pixels_are_exact(fmt: str, params: dict[str, object]) -> None:
    decoded = decode_image(encode(Image.fromarray(RGB), fmt, **params))
    assert decoded.dtype == np.uint8
    assert decoded.flags.c_contiguous
    np.testing.assert_array_equal(decoded, RGB)


def test_when_a_jpeg_is_decoded_then_pixels_equal_opencvs_decode() -> None:
    data = encode(Image.fromarray(RGB), "JPEG", quality=90)
    decoded = decode_image(data)
    opencv = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1]
    assert np.abs(decoded.astype(int) - opencv.astype(int)).max() <= 1
    assert np.abs(decoded.astype(int) - RGB.astype(int)).mean() < 4


def test_when_a_still_gif_is_decoded_then_its_palette_colours_come_out() -> None:
    data = encode(Image.fromarray(RGB).convert("P"), "GIF")
    np.testing.assert_array_equal(decode_image(data), pillow_rgb(data))


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "1"])
def test_when_a_png_has_another_pixel_mode_then_it_becomes_rgb(mode: str) -> None:
    data = encode(Image.fromarray(RGB).convert(mode), "PNG")
    decoded = decode_image(data)
    assert decoded.shape == RGB.shape
    np.testing.assert_array_equal(decoded, pillow_rgb(data))


def test_when_a_palette_png_has_transparency_then_the_palette_colours_come_out() -> None:
    image = Image.fromarray(RGB).convert("P")
    data = encode(image, "PNG", transparency=0)
    assert "transparency" in Image.open(io.BytesIO(data)).info
    np.testing.assert_array_equal(decode_image(data), pillow_rgb(data))


def test_when_a_png_is_16_bit_gray_then_the_high_byte_is_kept_as_opencv_does() -> None:
    wide = RGB[:, :, 0].astype(np.uint16) * 256 + 200
    data = png16(wide)
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    np.testing.assert_array_equal(decode_image(data), np.repeat(RGB[:, :, :1], 3, axis=2))
    opencv = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1]
    np.testing.assert_array_equal(decode_image(data), opencv)


def test_when_an_rgba_png_has_transparent_pixels_then_alpha_is_dropped_not_composited() -> None:
    rgba = np.dstack([RGB, np.zeros(RGB.shape[:2], np.uint8)])
    np.testing.assert_array_equal(decode_image(encode(Image.fromarray(rgba), "PNG")), RGB)


def test_when_a_png_has_16_bit_rgb_samples_then_the_high_byte_is_kept_as_opencv_does() -> None:
    wide = RGB.astype(np.uint16) * 256 + 255
    data = png16(wide)
    np.testing.assert_array_equal(decode_image(data), RGB)
    opencv = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1]
    np.testing.assert_array_equal(decode_image(data), opencv)


@pytest.mark.parametrize("fmt", ["JPEG", "TIFF"])
def test_when_a_file_is_cmyk_then_it_is_converted_to_rgb(fmt: str) -> None:
    data = encode(Image.fromarray(RGB).convert("CMYK"), fmt)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    decoded = decode_image(data)
    np.testing.assert_array_equal(decoded, pillow_rgb(data))
    assert np.abs(decoded.astype(int) - RGB.astype(int)).mean() < 8


@pytest.mark.parametrize("orientation", range(1, 9))
def test_when_exif_says_how_to_rotate_then_the_image_is_rotated(orientation: int) -> None:
    data = with_orientation(RGB, orientation)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))
    decoded = decode_image(data)
    np.testing.assert_array_equal(decoded, expected)
    if orientation in (5, 6, 7, 8):
        assert decoded.shape[:2] == RGB.shape[1::-1]


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_when_a_rotated_jpeg_is_decoded_then_it_matches_opencv(orientation: int) -> None:
    data = with_orientation(RGB, orientation, fmt="JPEG")
    opencv = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1]
    decoded = decode_image(data)
    assert decoded.shape == opencv.shape
    assert np.abs(decoded.astype(int) - opencv.astype(int)).max() <= 1


def _truncated_jpeg() -> bytes:
    data = encode(Image.fromarray(gradient(256, 256)), "JPEG")
    return data[: len(data) // 2]


def _wrong_magic() -> bytes:
    data = bytearray(encode(Image.fromarray(RGB), "PNG"))
    data[0] = 0x88
    return bytes(data)


def _corrupt_png_body() -> bytes:
    data = bytearray(encode(Image.fromarray(RGB), "PNG"))
    data[60:120] = b"\x00" * 60
    return bytes(data)


BAD_INPUTS = [
    ("zero bytes", b"", ImageErrorReason.EMPTY),
    ("text file", b"name,email\nalice,alice@example.com\n", ImageErrorReason.UNKNOWN_FORMAT),
    ("wrong magic", _wrong_magic(), ImageErrorReason.UNKNOWN_FORMAT),
    ("truncated JPEG", _truncated_jpeg(), ImageErrorReason.TRUNCATED),
    ("corrupt PNG body", _corrupt_png_body(), ImageErrorReason.CORRUPT),
    ("JPEG magic then garbage", b"\xff\xd8\xff" + b"\x13" * 500, ImageErrorReason.CORRUPT),
    ("50000x50000 PNG header", png(50_000, 50_000), ImageErrorReason.TOO_MANY_PIXELS),
    ("60000x60000 JPEG header", jpeg_claiming(60_000, 60_000), ImageErrorReason.TOO_MANY_PIXELS),
    ("65535x65535 GIF header", gif_claiming(65_535, 65_535), ImageErrorReason.TOO_MANY_PIXELS),
    ("50000x50000 BMP header", bmp_claiming(50_000, 50_000), ImageErrorReason.TOO_MANY_PIXELS),
    ("animated GIF", animated("GIF"), ImageErrorReason.ANIMATED),
    ("animated WebP", animated("WEBP"), ImageErrorReason.ANIMATED),
    ("animated PNG", animated("PNG"), ImageErrorReason.ANIMATED),
    ("two-page TIFF", animated("TIFF"), ImageErrorReason.ANIMATED),
    ("PDF", b"%PDF-1.7\n1 0 obj\n<<>>\nendobj\n", ImageErrorReason.UNSUPPORTED_FORMAT),
    ("HEIC", b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00", ImageErrorReason.UNSUPPORTED_FORMAT),
    ("zero-width PNG", png(0, 10), ImageErrorReason.CORRUPT),
]


@pytest.mark.parametrize(("data", "reason"), [pytest.param(d, r, id=n) for n, d, r in BAD_INPUTS])
def test_when_an_input_is_bad_then_it_gets_its_specific_error(data: bytes, reason: ImageErrorReason) -> None:
    with pytest.raises(InvalidImage) as caught:
        decode_image(data)
    assert caught.value.reason is reason
    assert caught.value.code == "invalid_image"
    assert caught.value.message.startswith(reason.value)


def test_when_the_file_is_over_the_byte_limit_then_it_is_refused_before_decoding() -> None:
    data = encode(Image.fromarray(RGB), "PNG")
    with pytest.raises(InvalidImage) as caught:
        decode_image(data, ImageLimits(max_bytes=len(data) - 1))
    assert caught.value.reason is ImageErrorReason.TOO_MANY_BYTES
    assert decode_image(data, ImageLimits(max_bytes=len(data))).shape == RGB.shape


def test_when_the_image_is_over_the_pixel_limit_then_it_is_refused_exactly_past_it() -> None:
    data = encode(Image.fromarray(RGB), "PNG")
    pixels = RGB.shape[0] * RGB.shape[1]
    assert decode_image(data, ImageLimits(max_pixels=pixels)).shape == RGB.shape
    with pytest.raises(InvalidImage, match="too_many_pixels"):
        decode_image(data, ImageLimits(max_pixels=pixels - 1))


def test_when_limits_are_not_positive_then_invalid_argument() -> None:
    with pytest.raises(InvalidArgument):
        ImageLimits(max_pixels=0)


@pytest.mark.parametrize(
    ("array", "expected"),
    [
        pytest.param(np.ascontiguousarray(RGB[:, :, ::-1]), RGB, id="BGR"),
        pytest.param(np.dstack([RGB[:, :, ::-1], np.zeros(RGB.shape[:2], np.uint8)]), RGB, id="BGRA"),
        pytest.param(RGB[:, :, 0], np.repeat(RGB[:, :, :1], 3, axis=2), id="gray"),
        pytest.param(RGB[:, :, :1], np.repeat(RGB[:, :, :1], 3, axis=2), id="gray HxWx1"),
    ],
)
def test_when_a_numpy_array_is_given_then_it_is_read_as_opencv_bgr(
    array: npt.NDArray[np.uint8], expected: npt.NDArray[np.uint8]
) -> None:
    np.testing.assert_array_equal(to_rgb(array), expected)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(RGB.astype(np.float32), id="float array"),
        pytest.param(np.zeros((1, 4, 4, 3), np.uint8), id="4-D array"),
        pytest.param(np.zeros((4, 4, 2), np.uint8), id="two channels"),
        pytest.param("image.jpg", id="a path string"),
    ],
)
def test_when_an_input_is_of_the_wrong_kind_then_unsupported_input(value: object) -> None:
    with pytest.raises(InvalidImage, match="unsupported_input"):
        to_rgb(value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(np.zeros((0, 4, 3), np.uint8), id="empty array"),
        pytest.param(Image.new("RGB", (0, 0)), id="empty PIL"),
    ],
)
def test_when_an_in_memory_image_has_no_pixels_then_zero_size(value: object) -> None:
    with pytest.raises(InvalidImage, match="zero_size"):
        to_rgb(value)  # type: ignore[arg-type]


def test_when_a_pil_image_is_given_then_its_mode_is_converted_and_limits_apply() -> None:
    np.testing.assert_array_equal(to_rgb(Image.fromarray(RGB)), RGB)
    np.testing.assert_array_equal(
        to_rgb(Image.fromarray(RGB).convert("L")),
        pillow_rgb(encode(Image.fromarray(RGB).convert("L"), "PNG")),
    )
    with pytest.raises(InvalidImage, match="too_many_pixels"):
        to_rgb(Image.fromarray(RGB), ImageLimits(max_pixels=10))


def test_when_huge_headers_are_decoded_then_memory_stays_small() -> None:
    """Bombs are refused from the header: the peak memory of a fresh process barely moves."""
    bombs = {
        "png": png(50_000, 50_000),
        "jpeg": jpeg_claiming(60_000, 60_000),
        "gif": gif_claiming(65_535, 65_535),
        "bmp": bmp_claiming(50_000, 50_000),
    }
    script = textwrap.dedent(
        """
        import json, resource, sys
        from warden.detection import decode_image, ImageLimits
        from warden.errors import InvalidImage
        bombs = {k: bytes.fromhex(v) for k, v in json.loads(sys.stdin.read()).items()}
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        reasons = {}
        for name, data in bombs.items():
            try:
                decode_image(data)
                reasons[name] = "decoded"
            except InvalidImage as exc:
                reasons[name] = exc.reason.value
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(json.dumps({"grew_kib": after - before, "reasons": reasons}))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        input=json.dumps({k: v.hex() for k, v in bombs.items()}),
        capture_output=True,
        text=True,
        check=True,
    )
    report = json.loads(result.stdout)
    assert report["grew_kib"] < 64 * 1024, report
    assert set(report["reasons"].values()) == {"too_many_pixels"}, report


FUZZ_SEEDS = [
    encode(Image.fromarray(gradient(24, 32)), "JPEG", quality=80),
    encode(Image.fromarray(gradient(24, 32)), "JPEG", quality=80, progressive=True),
    encode(Image.fromarray(gradient(24, 32)), "PNG"),
    encode(Image.fromarray(gradient(24, 32)).convert("P"), "PNG"),
    encode(Image.fromarray(gradient(24, 32)), "WEBP", quality=80),
    encode(Image.fromarray(gradient(24, 32)), "BMP"),
    encode(Image.fromarray(gradient(24, 32)), "TIFF", compression="tiff_lzw"),
    encode(Image.fromarray(gradient(24, 32)).convert("P"), "GIF"),
    with_orientation(gradient(24, 32), 6, fmt="JPEG"),
    png16(gradient(24, 32).astype(np.uint16) * 257),
]
FUZZ_LIMITS = ImageLimits(max_bytes=1 << 20, max_pixels=1_000_000)


@st.composite
def mutated_images(draw: st.DrawFn) -> bytes:
    """A real image with a few random edits: bit flips, overwrites, insertions, deletions, truncation."""
    data = bytearray(draw(st.sampled_from(FUZZ_SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        kind = draw(st.sampled_from(["flip", "overwrite", "insert", "delete", "truncate"]))
        if kind == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "overwrite":
            data[at : at + 4] = draw(st.sampled_from([b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\x7f\xff\x00\x01"]))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=32))
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 64))]
        else:
            del data[at:]
    return bytes(data)


@pytest.mark.filterwarnings("ignore")  # Pillow warns about a next frame it cannot read.
def test_when_a_tiff_names_a_next_frame_past_its_end_then_it_is_corrupt() -> None:
    """Found by the fuzz below: Pillow's frame count raised TypeError ("Missing dimensions") past the decoder's net."""
    data = bytearray(encode(Image.fromarray(gradient(24, 32)), "TIFF", compression="tiff_lzw"))
    (first,) = struct.unpack_from("<I", data, 4)
    (entries,) = struct.unpack_from("<H", data, first)
    struct.pack_into("<I", data, first + 2 + 12 * entries, 0xFFFFFFFF)
    with pytest.raises(InvalidImage) as refused:
        decode_image(bytes(data), FUZZ_LIMITS)
    assert refused.value.reason is ImageErrorReason.CORRUPT


@pytest.mark.filterwarnings("ignore")  # Pillow warns about odd EXIF and such; warnings are not errors in use.
@settings(max_examples=400, deadline=5000, suppress_health_check=[HealthCheck.too_slow])
@given(data=mutated_images())
def test_when_real_images_are_mutated_then_the_decoder_answers_or_refuses_cleanly(data: bytes) -> None:
    try:
        decoded = decode_image(data, FUZZ_LIMITS)
    except InvalidImage:
        return
    assert decoded.dtype == np.uint8
    assert decoded.ndim == 3
    assert decoded.shape[2] == 3
    assert decoded.shape[0] * decoded.shape[1] <= FUZZ_LIMITS.max_pixels
