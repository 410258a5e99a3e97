"""Drawing detections onto a copy of an image, for people who would rather look than read."""

from __future__ import annotations

from typing import Final

from PIL import Image, ImageDraw, ImageFont

from warden.detection.image import RGBImage
from warden.detection.results import Detections

_PALETTE: Final = (
    (255, 56, 56),
    (72, 249, 10),
    (0, 194, 255),
    (255, 157, 151),
    (146, 204, 23),
    (255, 178, 29),
    (52, 69, 147),
    (207, 210, 49),
)


def annotate(rgb: RGBImage, detections: Detections) -> Image.Image:
    """Return a new image with each box drawn and labelled ``name score``, in a colour per class."""
    image = Image.fromarray(rgb)
    draw = ImageDraw.Draw(image)
    line = max(2, round(min(image.size) / 300))
    font = ImageFont.load_default(size=max(12, line * 6))
    for detection in detections:
        colour = _PALETTE[detection.class_id % len(_PALETTE)]
        x1, y1, x2, y2 = detection.box
        draw.rectangle((x1, y1, x2, y2), outline=colour, width=line)
        label = f"{detection.class_name} {detection.score:.2f}"
        left, top, right, bottom = draw.textbbox((x1, y1), label, font=font)
        height = bottom - top + 2 * line
        width = right - left + 2 * line
        x = max(0, min(x1, image.width - width))
        y = y1 - height if y1 - height >= 0 else y1
        draw.rectangle((x, y, x + width, y + height), fill=colour)
        draw.text((x + line, y + line - (top - y1)), label, fill=(255, 255, 255), font=font)
    return image
