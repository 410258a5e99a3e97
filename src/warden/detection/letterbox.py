"""Letterboxing into the model's input and mapping boxes back, as Ultralytics does.

The arithmetic (rounding of the resized size, the uneven split of the padding,
gray 114 borders, OpenCV's bilinear resize) is reproduced exactly, because each
of those moves boxes and scores visibly when it differs.
"""

from __future__ import annotations

from typing import Final

import cv2
import numpy as np
import numpy.typing as npt

from warden.detection.image import RGBImage

PAD_VALUE: Final = 114


def letterbox_geometry(
    height: int, width: int, target: tuple[int, int], *, auto: bool = False, stride: int = 32
) -> tuple[tuple[int, int], tuple[int, int, int, int]]:
    """Compute the resized size ``(w, h)`` and the padding ``(top, bottom, left, right)``.

    With ``auto`` the padding is reduced to the smallest multiple of ``stride``
    (Ultralytics' "rect" mode for models with dynamic height and width).
    """
    target_h, target_w = target
    gain = min(target_h / height, target_w / width)
    new_w, new_h = max(round(width * gain), 1), max(round(height * gain), 1)
    dw, dh = float(target_w - new_w), float(target_h - new_h)
    if auto:
        dw, dh = float(np.mod(dw, stride)), float(np.mod(dh, stride))
    dw, dh = dw / 2, dh / 2
    top, bottom = round(dh - 0.1), round(dh + 0.1)
    left, right = round(dw - 0.1), round(dw + 0.1)
    return (new_w, new_h), (top, bottom, left, right)


def letterbox(rgb: RGBImage, target: tuple[int, int], *, auto: bool = False, stride: int = 32) -> npt.NDArray[np.uint8]:
    """Resize ``rgb`` keeping its aspect ratio and pad it with gray to ``target`` ``(h, w)``."""
    height, width = rgb.shape[:2]
    (new_w, new_h), (top, bottom, left, right) = letterbox_geometry(height, width, target, auto=auto, stride=stride)
    resized: npt.NDArray[np.uint8] = rgb
    if (width, height) != (new_w, new_h):
        resized = np.asarray(cv2.resize(rgb, (new_w, new_h), interpolation=cv2.INTER_LINEAR), dtype=np.uint8)
    padded = cv2.copyMakeBorder(resized, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(PAD_VALUE,) * 3)
    return np.asarray(padded, dtype=np.uint8)


def to_tensor(images: list[npt.NDArray[np.uint8]], dtype: npt.DTypeLike) -> npt.NDArray[np.floating]:
    """Stack letterboxed RGB images into an NCHW tensor scaled to ``[0, 1]``."""
    batch = np.stack(images).transpose(0, 3, 1, 2)
    tensor = np.ascontiguousarray(batch, dtype=np.float32)
    tensor /= np.float32(255)
    return tensor.astype(dtype, copy=False)


def scale_boxes(boxes: npt.NDArray[np.float32], input_shape: tuple[int, int], original_shape: tuple[int, int]) -> None:
    """Map ``xyxy`` boxes from model-input pixels back to the original image, in place, and clip.

    As Ultralytics 8.4 does: per-axis gains from the rounded resized size, and the
    padding recomputed from the shapes (so ``auto`` padding maps back correctly too).
    """
    in_h, in_w = input_shape
    height, width = original_shape
    gain = min(in_h / height, in_w / width)
    new_w, new_h = max(round(width * gain), 1), max(round(height * gain), 1)
    pad_x, pad_y = round((in_w - new_w) / 2 - 0.1), round((in_h - new_h) / 2 - 0.1)
    boxes[:, [0, 2]] = ((boxes[:, [0, 2]] - pad_x) / (new_w / width)).clip(0, width)
    boxes[:, [1, 3]] = ((boxes[:, [1, 3]] - pad_y) / (new_h / height)).clip(0, height)
