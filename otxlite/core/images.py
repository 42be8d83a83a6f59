"""The one rule for reading an image: what a viewer shows.

Phones store pixels as the sensor read them and an EXIF ``Orientation`` tag (1-8) that says how to turn them;
every viewer and annotation tool (labelme, CVAT, Label Studio) shows and annotates the turned image. Import
(image sizes), training's loader, evaluation, ``predict``, ``serve``, ``explain`` and the drawings all read
images here, so the pixels, the sizes and the annotations agree. OpenCV decodes the pixels with its own
orientation handling switched off; the tag is read once, by Pillow, and applied here. Every image becomes
8-bit BGR with 3 channels: grey and palette images are expanded, the alpha of RGBA dropped, 16-bit samples
scaled to 8 bits and CMYK converted, the same way everywhere.
"""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

# Decoding failures are otxlite's to report (by file name, with a count): OpenCV's own log lines are dropped.
cv2.setLogLevel(0)  # 0: silent
ORIENTATION_TAG = 0x0112
# Orientations that swap width and height (the stored pixels are turned by 90 degrees).
TRANSPOSED = frozenset({5, 6, 7, 8})


def _orientation_of(image: Image.Image) -> int:
    """The EXIF orientation of an opened image (1 when there is none), without decoding its pixels."""
    if image.format == "PNG":  # Pillow's getexif() on a PNG decodes the pixels to look past them
        raw = image.info.get("exif")
        exif = Image.Exif()
        if raw:
            exif.load(raw)
    else:
        exif = image.getexif()
    value = exif.get(ORIENTATION_TAG, 1)
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def exif_orientation(source: str | Path | bytes) -> int:
    """The EXIF orientation (1-8) of an image file or its bytes; 1 when it has none or is not readable."""
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
            return _orientation_of(image)
    except (OSError, SyntaxError, ValueError):
        return 1


def apply_orientation(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """Stored pixels (H, W[, C]) turned as EXIF ``orientation`` says, as a viewer shows them."""
    if orientation == 2:
        return pixels[:, ::-1].copy()
    if orientation == 3:
        return pixels[::-1, ::-1].copy()
    if orientation == 4:
        return pixels[::-1].copy()
    if orientation == 5:
        return np.ascontiguousarray(pixels.swapaxes(0, 1))
    if orientation == 6:
        return np.ascontiguousarray(pixels.swapaxes(0, 1)[:, ::-1])
    if orientation == 7:
        return np.ascontiguousarray(pixels.swapaxes(0, 1)[::-1, ::-1])
    if orientation == 8:
        return np.ascontiguousarray(pixels.swapaxes(0, 1)[::-1])
    return pixels


def decode_image(data: bytes) -> np.ndarray | None:
    """Encoded image bytes -> 8-bit BGR pixels as a viewer shows them, or None if they do not decode."""
    if not data:
        return None
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    return None if pixels is None else apply_orientation(pixels, exif_orientation(data))


def read_image(path: str | Path) -> np.ndarray | None:
    """An image file -> 8-bit BGR pixels as a viewer shows them, or None if it cannot be read or decoded."""
    try:
        data = Path(path).read_bytes()
    except OSError:
        return None
    return decode_image(data)


def viewed_size(image: Image.Image) -> tuple[int, int]:
    """(height, width) of an opened image as a viewer shows it, from its header."""
    width, height = image.size
    return (width, height) if _orientation_of(image) in TRANSPOSED else (height, width)


def read_image_size(path: str | Path) -> tuple[int, int] | None:
    """(height, width) as a viewer shows the image, from the file's header; None if it is not a readable image."""
    try:
        with Image.open(path) as image:
            return viewed_size(image)
    except (OSError, SyntaxError, ValueError):
        return None


def write_image(path: str | Path, image: np.ndarray) -> None:
    """Encode ``image`` (BGR) into ``path`` in the format its suffix names; an OSError if it cannot be written
    (OpenCV's ``imwrite`` only returns False, e.g. on a full disk)."""
    path = Path(path)
    ok, encoded = cv2.imencode(path.suffix or ".png", image)
    if not ok:
        raise OSError(f"OpenCV cannot encode an image as {path.suffix}")
    with path.open("wb") as stream:
        stream.write(encoded.tobytes())
