"""Image de-identification: faces hidden in every mode and format, metadata gone, files written whole or not at all."""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image, ImageCms, PngImagePlugin

from tests.detection.images import animated, encode, gradient
from warden.detection import ImageLimits, decode_image
from warden.detection.image import sniff_format
from warden.errors import (
    Conflict,
    ImageErrorReason,
    InvalidArgument,
    InvalidImage,
    ModelError,
    UnsupportedFile,
)
from warden.privacy.faces import DEFAULT_MIN_SCORE, CenterFaceDetector, FaceBox, default_face_detector
from warden.privacy.images import (
    PIXELATE_CELLS,
    ImageReport,
    MetadataKind,
    Mode,
    deidentify_image,
    deidentify_images,
    find_metadata,
    hide,
)

DATA = Path(__file__).parents[1] / "detection" / "data"
ASTRONAUT_FACE = (182, 58, 270, 178)  # Eileen Collins' face in astronaut.png, checked by eye.
PERSONAL = "Jane Doe, 12 Rue de Rivoli"

RGB = npt.NDArray[np.uint8]


class FixedFaces:
    """A detector that reports the faces it is given, so synthetic images have faces exactly where wanted."""

    name = "fixed"
    version = "test-1"

    def __init__(self, *boxes: FaceBox) -> None:
        self.boxes = list(boxes)
        self.seen: list[tuple[int, int]] = []

    def detect(self, rgb: RGB, min_score: float = DEFAULT_MIN_SCORE) -> list[FaceBox]:
        self.seen.append((int(rgb.shape[0]), int(rgb.shape[1])))
        return [box for box in self.boxes if box.score >= min_score]


class BrokenDetector:
    """A detector whose model fails on every image."""

    name = "broken"
    version = "0"

    def detect(self, rgb: RGB, min_score: float = DEFAULT_MIN_SCORE) -> list[FaceBox]:
        raise ModelError("the face model failed")


@pytest.fixture(scope="module")
def centerface() -> CenterFaceDetector:
    return default_face_detector(device="cpu")


def photo(name: str) -> bytes:
    return (DATA / name).read_bytes()


def laplacian_variance(rgb: RGB) -> float:
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY) if rgb.ndim == 3 else rgb
    return float(cv2.Laplacian(gray, cv2.CV_64F).var())


def outside(mask_of: tuple[int, int, int, int], shape: tuple[int, ...], pad: int = 0) -> npt.NDArray[np.bool_]:
    x1, y1, x2, y2 = mask_of
    mask = np.ones(shape[:2], dtype=bool)
    mask[max(0, y1 - pad) : y2 + pad, max(0, x1 - pad) : x2 + pad] = False
    return mask


def chunk_types(png_bytes: bytes) -> list[bytes]:
    types, pos = [], 8
    while pos + 8 <= len(png_bytes):
        length = int.from_bytes(png_bytes[pos : pos + 4], "big")
        types.append(png_bytes[pos + 4 : pos + 8])
        pos += 12 + length
    return types


def with_segment(jpeg: bytes, marker: int, payload: bytes) -> bytes:
    """``jpeg`` with one more marker segment right after its SOI."""
    return jpeg[:2] + bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]


def with_png_chunk(png: bytes, kind: bytes, data: bytes) -> bytes:
    """``png`` with one more chunk right after its IHDR."""
    ihdr_end = 8 + 12 + int.from_bytes(png[8:12], "big")
    body = kind + data
    chunk = struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)
    return png[:ihdr_end] + chunk + png[ihdr_end:]


def gps_exif(orientation: int = 1) -> Image.Exif:
    exif = Image.Exif()
    exif[0x010F] = "SecretCam"  # Make
    exif[0x0112] = orientation
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2] = "N", (48.0, 51.0, 24.0)
    gps[3], gps[4] = "E", (2.0, 21.0, 3.0)
    return exif


def srgb_profile() -> bytes:
    profile: bytes = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    return profile


XMP = f'<x:xmpmeta xmlns:x="adobe:ns:meta/"><dc:creator xmlns:dc="http://purl.org/dc/elements/1.1/">{PERSONAL}</dc:creator></x:xmpmeta>'

# Byte strings that no de-identified output may contain.
LEAKS = [b"Exif", b"SecretCam", b"http://ns.adobe.com/xap", PERSONAL.encode(), b"ICC_PROFILE", b"Photoshop 3.0"]


def assert_no_metadata(output: bytes) -> None:
    assert find_metadata(output) == frozenset()
    for leak in LEAKS:
        assert leak not in output, leak
    with Image.open(io.BytesIO(output)) as image:
        assert not image.getexif()
        assert not {"exif", "xmp", "icc_profile", "comment", "XML:com.adobe.xmp"} & set(image.info)


# --- Faces in real photos. ------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", list(Mode))
def test_when_the_astronaut_is_deidentified_then_her_face_is_hidden_and_nothing_else_changes(
    centerface: CenterFaceDetector, mode: Mode
) -> None:
    data = photo("astronaut.png")
    output, report = deidentify_image(data, centerface, mode=mode, name="astronaut.png")

    before, after = decode_image(data), decode_image(output)
    assert report.face_count == 1
    (region,) = report.regions
    x1, y1, x2, y2 = region
    fx1, fy1, fx2, fy2 = ASTRONAUT_FACE
    assert min(fx1 - x1, fy1 - y1, x2 - fx2, y2 - fy2) >= 0, "the region covers the whole face"
    keep = outside(region, before.shape)
    assert np.array_equal(after[keep], before[keep]), "PNG pixels outside the face are untouched"
    inside_before, inside_after = before[y1:y2, x1:x2], after[y1:y2, x1:x2]
    assert np.abs(inside_after.astype(int) - inside_before).mean() > 20
    if mode is Mode.BLUR:
        assert laplacian_variance(inside_after) < 0.01 * laplacian_variance(inside_before)
    elif mode is Mode.PIXELATE:
        colours = np.unique(inside_after.reshape(-1, 3), axis=0)
        assert len(colours) <= PIXELATE_CELLS * PIXELATE_CELLS
        same_as_right = (inside_after[:, 1:] == inside_after[:, :-1]).all(axis=2).mean()
        assert same_as_right > 0.85
    else:
        assert not inside_after.any()
    assert centerface.detect(after) == [], "no face is left to find"


def test_when_a_jpeg_photo_is_deidentified_then_the_face_changes_and_the_rest_barely_moves(
    centerface: CenterFaceDetector,
) -> None:
    data = photo("astronaut_1280x720.jpg")
    output, report = deidentify_image(data, centerface, mode=Mode.BLUR)

    assert sniff_format(output) == "JPEG"
    before, after = decode_image(data), decode_image(output)
    assert after.shape == (720, 1280, 3)
    (region,) = report.regions
    x1, y1, x2, y2 = region
    assert np.abs(after[y1:y2, x1:x2].astype(int) - before[y1:y2, x1:x2]).mean() > 20
    far = outside(region, before.shape, pad=16)  # Beyond the JPEG blocks that touch the region.
    difference = np.abs(after[far].astype(int) - before[far])
    assert difference.mean() < 0.5
    assert np.percentile(difference, 99.9) <= 8
    assert report.output_bytes < 2 * report.input_bytes, "the source's quantisation tables are reused"


@pytest.mark.parametrize("name", ["chelsea.png", "coffee.png"])
def test_when_a_png_photo_has_no_face_then_its_pixels_come_back_identical(
    centerface: CenterFaceDetector, name: str
) -> None:
    data = photo(name)
    output, report = deidentify_image(data, centerface)

    assert report.face_count == 0
    assert report.regions == ()
    assert np.array_equal(decode_image(output), decode_image(data))


def test_when_a_jpeg_photo_has_no_face_then_only_its_metadata_goes(centerface: CenterFaceDetector) -> None:
    data = photo("rocket.jpg")
    output, report = deidentify_image(data, centerface)

    assert report.face_count == 0
    assert set(report.metadata_removed) == {MetadataKind.COMMENT, MetadataKind.ICC_PROFILE}
    assert np.abs(decode_image(output).astype(int) - decode_image(data)).mean() < 0.5
    assert_no_metadata(output)


def test_when_the_photo_is_gray_then_the_output_stays_gray(centerface: CenterFaceDetector) -> None:
    data = photo("camera.png")
    output, report = deidentify_image(data, centerface, mode=Mode.PIXELATE)

    assert report.face_count == 1
    with Image.open(io.BytesIO(output)) as image:
        assert image.mode == "L"


# --- Synthetic images: every mode and format. -----------------------------------------------------------------

FORMATS = [("PNG", {}), ("JPEG", {"quality": 90}), ("WEBP", {"lossless": True}), ("WEBP", {"quality": 80})]
FORMAT_IDS = ["png", "jpeg", "webp-lossless", "webp-lossy"]


@pytest.mark.parametrize(("fmt", "params"), FORMATS, ids=FORMAT_IDS)
def test_when_an_image_is_blank_then_no_face_is_found_and_it_round_trips(
    centerface: CenterFaceDetector, fmt: str, params: dict[str, object]
) -> None:
    blank = np.full((120, 160, 3), 200, dtype=np.uint8)
    data = encode(Image.fromarray(blank), fmt, **params)

    output, report = deidentify_image(data, centerface)

    assert report.face_count == 0
    assert report.format == fmt
    assert sniff_format(output) == fmt
    difference = np.abs(decode_image(output).astype(int) - decode_image(data))
    if fmt == "PNG" or params.get("lossless"):
        assert not difference.any()
    else:
        assert difference.max() <= 2


@pytest.mark.parametrize("mode", list(Mode))
@pytest.mark.parametrize(("fmt", "params"), FORMATS, ids=FORMAT_IDS)
def test_when_a_synthetic_face_is_hidden_then_every_mode_works_in_every_format(
    mode: Mode, fmt: str, params: dict[str, object]
) -> None:
    rng = np.random.default_rng(7)
    rgb = gradient(96, 128)
    rgb[30:70, 40:80] = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)  # A busy patch standing in for a face.
    data = encode(Image.fromarray(rgb), fmt, **params)
    detector = FixedFaces(FaceBox(40, 30, 80, 70, 0.9))

    output, report = deidentify_image(data, detector, mode=mode, margin=0.0)

    assert sniff_format(output) == fmt
    assert report.regions == ((40, 30, 80, 70),)
    assert report.mode is mode
    assert detector.seen == [(96, 128)]
    before, after = decode_image(data), decode_image(output)
    assert after.shape == before.shape
    patch = after[30:70, 40:80].astype(int)
    assert np.abs(patch - before[30:70, 40:80]).mean() > 30
    if mode is Mode.FILL:
        assert patch.max() <= (0 if fmt == "PNG" or params.get("lossless") else 40)
    if fmt == "PNG" or params.get("lossless"):
        keep = outside((40, 30, 80, 70), before.shape)
        assert np.array_equal(after[keep], before[keep])


@pytest.mark.parametrize("size", [6, 12, 60, 300, 900])
def test_when_a_region_is_blurred_then_its_detail_goes_whatever_its_size(size: int) -> None:
    tile = np.indices((size, size)).sum(axis=0) // max(1, size // 12) % 2
    pixels = np.repeat((tile * 255).astype(np.uint8)[:, :, None], 3, axis=2)
    original = pixels.copy()

    hide(pixels, (0, 0, size, size), Mode.BLUR)

    assert laplacian_variance(pixels) < 0.05 * laplacian_variance(original)


def test_when_a_face_is_tiny_then_pixelation_still_changes_it() -> None:
    pixels = gradient(20, 20)
    pixels[5:11, 5:11] = np.random.default_rng(1).integers(0, 256, (6, 6, 3), dtype=np.uint8)
    original = pixels.copy()

    hide(pixels, (5, 5, 11, 11), Mode.PIXELATE)

    assert len(np.unique(pixels[5:11, 5:11].reshape(-1, 3), axis=0)) <= 9
    assert not np.array_equal(pixels, original)


def test_when_faces_overlap_or_touch_the_border_then_regions_are_clipped_and_all_hidden() -> None:
    rgb = gradient(64, 64)
    detector = FixedFaces(FaceBox(-5, -5, 20, 20, 0.9), FaceBox(10, 10, 40, 40, 0.8), FaceBox(50, 50, 70, 70, 0.5))

    output, report = deidentify_image(encode(Image.fromarray(rgb), "PNG"), detector, mode=Mode.FILL, margin=0.1)

    assert report.regions == ((0, 0, 23, 23), (7, 7, 43, 43), (48, 48, 64, 64))
    after = decode_image(output)
    for x1, y1, x2, y2 in report.regions:
        assert not after[y1:y2, x1:x2].any()


def test_when_min_score_is_raised_then_weaker_faces_are_left_alone() -> None:
    detector = FixedFaces(FaceBox(10, 10, 30, 30, 0.9), FaceBox(40, 40, 60, 60, 0.3))

    _, report = deidentify_image(encode(Image.fromarray(gradient(64, 64)), "PNG"), detector, min_score=0.5)

    assert [face.score for face in report.faces] == [0.9]
    assert report.min_score == 0.5


# --- Metadata. --------------------------------------------------------------------------------------------------


def test_when_a_jpeg_carries_every_kind_of_metadata_then_none_survives() -> None:
    image = Image.fromarray(gradient(48, 64))
    data = encode(image, "JPEG", exif=gps_exif(), xmp=XMP.encode(), comment=PERSONAL, icc_profile=srgb_profile())
    data = with_segment(data, 0xED, b"Photoshop 3.0\x008BIM\x04\x04\x00\x00\x00\x00\x00\x10" + PERSONAL.encode()[:16])
    data = with_segment(data, 0xEC, b"Ducky\x00\x01\x00\x04\x00\x00\x00\x3c")

    output, report = deidentify_image(data, FixedFaces())

    assert set(report.metadata_removed) == {
        MetadataKind.EXIF,
        MetadataKind.GPS,
        MetadataKind.XMP,
        MetadataKind.IPTC,
        MetadataKind.ICC_PROFILE,
        MetadataKind.COMMENT,
        MetadataKind.OTHER,
    }
    assert_no_metadata(output)
    assert output[:4] == b"\xff\xd8\xff\xe0", "only the JFIF header precedes the image"


def test_when_a_png_carries_text_xmp_exif_icc_and_a_timestamp_then_only_image_chunks_remain() -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text("Author", PERSONAL)
    info.add_text("Comment", PERSONAL)
    info.add_text("Description", PERSONAL, zip=True)
    info.add_itxt("XML:com.adobe.xmp", XMP)
    info.add(b"tIME", struct.pack(">HBBBBB", 2024, 5, 6, 7, 8, 9))
    data = encode(Image.fromarray(gradient()), "PNG", pnginfo=info, exif=gps_exif(), icc_profile=srgb_profile())
    data = with_png_chunk(data, b"caBX", PERSONAL.encode())  # A private chunk (C2PA credentials use this name).

    output, report = deidentify_image(data, FixedFaces())

    assert set(report.metadata_removed) == set(MetadataKind) - {MetadataKind.IPTC, MetadataKind.THUMBNAIL}
    assert_no_metadata(output)
    assert set(chunk_types(output)) == {b"IHDR", b"IDAT", b"IEND"}
    assert np.array_equal(decode_image(output), gradient())


@pytest.mark.parametrize("lossless", [True, False])
def test_when_a_webp_carries_exif_xmp_and_icc_then_none_survives(lossless: bool) -> None:
    data = encode(
        Image.fromarray(gradient()),
        "WEBP",
        lossless=lossless,
        exif=gps_exif(),
        xmp=XMP.encode(),
        icc_profile=srgb_profile(),
    )

    output, report = deidentify_image(data, FixedFaces())

    assert set(report.metadata_removed) == {
        MetadataKind.EXIF,
        MetadataKind.GPS,
        MetadataKind.XMP,
        MetadataKind.ICC_PROFILE,
    }
    assert_no_metadata(output)
    assert output[12:16] == (b"VP8L" if lossless else b"VP8 "), "a plain WebP with one image chunk"
    if lossless:
        assert np.array_equal(decode_image(output), gradient())


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_when_the_exif_orientation_is_6_then_the_output_is_upright_without_exif(fmt: str) -> None:
    stored = np.zeros((40, 80, 3), dtype=np.uint8)
    stored[:, :40] = (255, 0, 0)  # Left half red: once turned 90 degrees clockwise, the top half is red.
    stored[:, 40:] = (0, 0, 255)
    params: dict[str, object] = {"lossless": True} if fmt == "WEBP" else {}
    data = encode(Image.fromarray(stored), fmt, exif=gps_exif(orientation=6), **params)

    output, report = deidentify_image(data, FixedFaces())

    upright = decode_image(output)
    assert upright.shape == (80, 40, 3)
    assert upright[:30, :, 0].min() > 200, "red on top"
    assert upright[:30, :, 2].max() < 60
    assert upright[50:, :, 2].min() > 200, "blue below"
    assert upright[50:, :, 0].max() < 60
    assert (report.width, report.height) == (40, 80)
    assert MetadataKind.EXIF in report.metadata_removed
    assert_no_metadata(output)


def test_when_a_jpeg_has_a_jfif_thumbnail_then_it_is_reported_and_dropped() -> None:
    data = encode(Image.fromarray(gradient()), "JPEG")
    assert find_metadata(data) == frozenset()
    thumbnail = b"JFXX\x00\x13" + bytes([2, 2]) + bytes(12)

    output, report = deidentify_image(with_segment(data, 0xE0, thumbnail), FixedFaces())

    assert report.metadata_removed == (MetadataKind.THUMBNAIL,)
    assert_no_metadata(output)


# --- Refusals. ----------------------------------------------------------------------------------------------------


def truncated_png() -> bytes:
    data = encode(Image.fromarray(gradient(64, 64)), "PNG")
    return data[: len(data) // 2]


def corrupt_jpeg() -> bytes:
    data = bytearray(encode(Image.fromarray(gradient(64, 64)), "JPEG"))
    start = data.index(b"\xff\xda")
    data[start + 20 : start + 400] = bytes(range(256)) + bytes(124)
    return bytes(data[:-200])


@pytest.mark.parametrize(
    ("data", "reasons"),
    [
        (b"", {ImageErrorReason.EMPTY}),
        (b"hello, this is not an image", {ImageErrorReason.UNKNOWN_FORMAT}),
        (b"%PDF-1.7 not an image", {ImageErrorReason.UNSUPPORTED_FORMAT}),
        (truncated_png(), {ImageErrorReason.TRUNCATED, ImageErrorReason.CORRUPT}),
        (corrupt_jpeg(), {ImageErrorReason.TRUNCATED, ImageErrorReason.CORRUPT}),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, {ImageErrorReason.TRUNCATED, ImageErrorReason.CORRUPT}),
        (animated("PNG"), {ImageErrorReason.ANIMATED}),
        (animated("WEBP"), {ImageErrorReason.ANIMATED}),
        (animated("MPO"), {ImageErrorReason.ANIMATED}),  # A multi-picture JPEG: its other pictures are refused too.
    ],
    ids=["empty", "unknown", "pdf", "truncated-png", "corrupt-jpeg", "garbage-png", "apng", "animated-webp", "mpo"],
)
def test_when_the_bytes_are_not_a_usable_image_then_invalid_image_with_a_reason(
    data: bytes, reasons: set[ImageErrorReason]
) -> None:
    detector = FixedFaces()
    with pytest.raises(InvalidImage) as caught:
        deidentify_image(data, detector)

    assert caught.value.code == "invalid_image"
    assert caught.value.reason in reasons
    assert detector.seen == [], "no detection runs on a refused image"


@pytest.mark.parametrize("fmt", ["TIFF", "BMP", "GIF"])
def test_when_the_format_cannot_be_written_back_then_unsupported_file(fmt: str) -> None:
    with pytest.raises(UnsupportedFile, match=f"{fmt} images") as caught:
        deidentify_image(encode(Image.fromarray(gradient()), fmt), FixedFaces())

    assert caught.value.code == "unsupported_file"


def test_when_the_image_has_too_many_pixels_then_it_is_refused_before_detection() -> None:
    with pytest.raises(InvalidImage) as caught:
        deidentify_image(encode(Image.fromarray(gradient()), "PNG"), FixedFaces(), limits=ImageLimits(max_pixels=100))

    assert caught.value.reason is ImageErrorReason.TOO_MANY_PIXELS


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"mode": "smudge"}, "unknown mode 'smudge'; use blur, pixelate, fill"),
        ({"margin": -0.1}, "margin"),
        ({"margin": 2.5}, "margin"),
        ({"min_score": 0.0}, "min_score"),
        ({"min_score": 1.2}, "min_score"),
    ],
)
def test_when_an_option_is_out_of_range_then_invalid_argument(options: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        deidentify_image(encode(Image.fromarray(gradient()), "PNG"), FixedFaces(), **options)  # type: ignore[arg-type]


def test_when_a_mode_is_given_as_text_then_it_is_accepted() -> None:
    _, report = deidentify_image(encode(Image.fromarray(gradient()), "PNG"), FixedFaces(), mode="pixelate")

    assert report.mode is Mode.PIXELATE


# --- The report. --------------------------------------------------------------------------------------------------


def test_when_a_report_is_serialised_then_it_is_plain_json_with_the_manifest_fields() -> None:
    data = encode(Image.fromarray(gradient(48, 64)), "JPEG", exif=gps_exif())
    detector = FixedFaces(FaceBox(10.123, 12.5, 30.0, 40.0, 0.87654))

    output, report = deidentify_image(data, detector, mode=Mode.FILL, name="a.jpg")
    entry = json.loads(json.dumps(report.to_dict()))

    assert isinstance(report, ImageReport)
    assert entry["name"] == "a.jpg"
    assert entry["format"] == "jpeg"
    assert (entry["width"], entry["height"]) == (64, 48)
    assert entry["input_bytes"] == len(data)
    assert entry["output_bytes"] == len(output)
    assert entry["input_sha256"] == hashlib.sha256(data).hexdigest()
    assert entry["output_sha256"] == hashlib.sha256(output).hexdigest()
    assert entry["faces"] == 1
    assert entry["boxes"] == [{"box": [10.12, 12.5, 30.0, 40.0], "score": 0.8765, "hidden": [5, 5, 35, 47]}]
    assert entry["metadata_removed"] == ["exif", "gps"]
    assert entry["mode"] == "fill"
    assert entry["detector"] == "fixed"
    assert entry["detector_version"] == "test-1"
    assert entry["margin"] == 0.25
    assert entry["min_score"] == DEFAULT_MIN_SCORE


# --- Batches of files. ------------------------------------------------------------------------------------------


def write_inputs(folder: Path, names: list[str]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, name in enumerate(names):
        fmt = {"png": "PNG", "jpg": "JPEG", "webp": "WEBP"}[name.rsplit(".", 1)[1]]
        path = folder / name
        path.write_bytes(encode(Image.fromarray(np.roll(gradient(), index, axis=1)), fmt, exif=gps_exif()))
        paths.append(path)
    return paths


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_when_a_batch_runs_then_each_output_has_its_input_s_name_and_is_clean(tmp_path: Path) -> None:
    inputs = write_inputs(tmp_path / "in", ["a.png", "b.jpg", "c.webp"])
    out_dir = tmp_path / "out" / "nested"
    seen: list[str] = []
    detector = FixedFaces(FaceBox(10, 10, 30, 30, 0.9))

    reports = deidentify_images(
        inputs, out_dir, detector=detector, mode=Mode.PIXELATE, on_image=lambda r: seen.append(r.name)
    )

    assert [r.name for r in reports] == seen == ["a.png", "b.jpg", "c.webp"]
    assert sorted(p.name for p in out_dir.iterdir()) == ["a.png", "b.jpg", "c.webp"]
    for source, report in zip(inputs, reports, strict=True):
        written = (out_dir / source.name).read_bytes()
        expected, _ = deidentify_image(source.read_bytes(), detector, mode=Mode.PIXELATE)
        assert written == expected
        assert report.output_sha256 == hashlib.sha256(written).hexdigest()
        assert report.face_count == 1
        assert MetadataKind.GPS in report.metadata_removed
        assert_no_metadata(written)


def test_when_the_output_folder_is_the_input_folder_then_the_run_is_refused_and_inputs_untouched(
    tmp_path: Path,
) -> None:
    inputs = write_inputs(tmp_path, ["a.png"])
    original = inputs[0].read_bytes()

    with pytest.raises(InvalidArgument, match="would replace its input") as caught:
        deidentify_images(inputs, tmp_path, detector=FixedFaces(), overwrite=True)

    assert caught.value.code == "invalid_argument"
    assert inputs[0].read_bytes() == original


def test_when_an_output_is_a_hard_link_to_an_input_then_the_run_is_refused(tmp_path: Path) -> None:
    inputs = write_inputs(tmp_path / "in", ["a.png"])
    (tmp_path / "out").mkdir()
    os.link(inputs[0], tmp_path / "out" / "a.png")

    with pytest.raises(InvalidArgument, match="would replace its input"):
        deidentify_images(inputs, tmp_path / "out", detector=FixedFaces(), overwrite=True)


def test_when_two_inputs_share_a_name_then_the_run_is_refused_before_any_work(tmp_path: Path) -> None:
    first = write_inputs(tmp_path / "x", ["a.png"])
    second = write_inputs(tmp_path / "y", ["A.png"])
    detector = FixedFaces()

    with pytest.raises(InvalidArgument, match="share the output name"):
        deidentify_images([*first, *second], tmp_path / "out", detector=detector)

    assert not (tmp_path / "out").exists()
    assert detector.seen == []


def test_when_an_output_exists_then_conflict_unless_overwrite(tmp_path: Path) -> None:
    inputs = write_inputs(tmp_path / "in", ["a.png"])
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a.png").write_bytes(b"old")

    with pytest.raises(Conflict) as caught:
        deidentify_images(inputs, tmp_path / "out", detector=FixedFaces())
    assert caught.value.code == "conflict"
    assert (tmp_path / "out" / "a.png").read_bytes() == b"old"

    deidentify_images(inputs, tmp_path / "out", detector=FixedFaces(), overwrite=True)
    assert sniff_format((tmp_path / "out" / "a.png").read_bytes()) == "PNG"


@pytest.mark.parametrize("bad", ["missing", "folder", "empty-list"])
def test_when_an_input_is_missing_or_not_a_file_then_invalid_argument(tmp_path: Path, bad: str) -> None:
    inputs = write_inputs(tmp_path / "in", ["a.png"])
    if bad == "missing":
        inputs.append(tmp_path / "in" / "gone.png")
    elif bad == "folder":
        inputs.append(tmp_path / "in")
    else:
        inputs = []

    with pytest.raises(InvalidArgument):
        deidentify_images(inputs, tmp_path / "out", detector=FixedFaces())

    assert not (tmp_path / "out").exists()


def test_when_an_image_fails_mid_batch_then_the_run_stops_and_leaves_nothing_for_it(tmp_path: Path) -> None:
    inputs = write_inputs(tmp_path / "in", ["a.png", "b.png", "c.png"])
    inputs[1].write_bytes(truncated_png())
    out_dir = tmp_path / "out"

    with pytest.raises(InvalidImage) as caught:
        deidentify_images(inputs, out_dir, detector=FixedFaces())

    assert caught.value.code == "invalid_image"
    assert str(inputs[1]) in caught.value.message
    assert sorted(p.name for p in out_dir.iterdir()) == ["a.png"]


def test_when_the_detector_fails_then_its_error_propagates_and_no_output_is_written(tmp_path: Path) -> None:
    inputs = write_inputs(tmp_path / "in", ["a.png"])
    out_dir = tmp_path / "out"

    with pytest.raises(ModelError) as caught:
        deidentify_images(inputs, out_dir, detector=BrokenDetector())

    assert caught.value.code == "model_error"
    assert any(str(inputs[0]) in note for note in caught.value.__notes__)
    assert list(out_dir.iterdir()) == []


def test_when_an_unsupported_file_is_in_the_batch_then_its_path_is_named(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    path = tmp_path / "in" / "scan.tif"
    path.write_bytes(encode(Image.fromarray(gradient()), "TIFF"))

    with pytest.raises(UnsupportedFile, match=r"scan\.tif: TIFF images"):
        deidentify_images([path], tmp_path / "out", detector=FixedFaces())


def test_when_a_file_is_larger_than_the_byte_limit_then_it_is_refused_before_reading(tmp_path: Path) -> None:
    inputs = write_inputs(tmp_path / "in", ["a.png"])

    with pytest.raises(InvalidImage) as caught:
        deidentify_images(inputs, tmp_path / "out", detector=FixedFaces(), limits=ImageLimits(max_bytes=100))

    assert caught.value.reason is ImageErrorReason.TOO_MANY_BYTES


def test_when_the_real_detector_runs_a_batch_of_photos_then_faces_are_counted_per_image(
    tmp_path: Path, centerface: CenterFaceDetector
) -> None:
    names = ["astronaut.png", "rocket.jpg", "camera.png"]
    inputs = [DATA / name for name in names]

    reports = deidentify_images(inputs, tmp_path / "out", detector=centerface)

    assert [r.face_count for r in reports] == [1, 0, 1]
    assert [r.detector for r in reports] == ["centerface"] * 3
    assert leftovers(tmp_path / "out") == []
