"""One ``data`` item (base64 text or URL) -> encoded image bytes whose header passed the size checks.

Nothing here decodes pixels: the base64 length, the byte count and the width x height in the image header are all
checked first, so a small request cannot make the server allocate a huge image.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import warnings

from PIL import Image, UnidentifiedImageError

from otxlite.core.images import viewed_size
from otxlite.serve.errors import RequestError
from otxlite.serve.fetch import fetch_url
from otxlite.serve.settings import MIN_IMAGE_SIDE, ServeSettings

# Our own pixel limit (ServeSettings.max_megapixels) is stricter than Pillow's warning threshold.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

URL_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


def is_url(item: str) -> bool:
    """Whether a ``data`` item is a URL (any scheme) rather than base64 text."""
    return bool(URL_SCHEME.match(item[:32]))


async def fetch_image(item: str, settings: ServeSettings, what: str) -> bytes:
    """Download a URL item (403 unless ``allow_urls``; only http and https)."""
    if not settings.allow_urls:
        raise RequestError(403, f"{what} is a URL; this server does not fetch URLs (start it with --allow-urls), "
                                "send the image base64-encoded instead.")
    if not item.lower().startswith(("http://", "https://")):
        raise RequestError(422, f"{what}: only http:// and https:// URLs are fetched.")
    return await fetch_url(item, settings.max_image_bytes, settings.url_timeout_s, what)


def decode_base64(item: str, settings: ServeSettings, what: str) -> bytes:
    """Base64 text (optionally a ``data:...;base64,`` URI, line breaks allowed) -> bytes; 413 over the size limit."""
    if item.startswith("data:"):
        header, _, item = item.partition(",")
        if not header.endswith(";base64"):
            raise RequestError(422, f"{what}: a data URI must be base64-encoded ('data:image/png;base64,...').")
    if len(item) * 3 // 4 > settings.max_image_bytes + 2:
        raise RequestError(413, _too_many_bytes(what, len(item) * 3 // 4, settings))
    try:
        data = base64.b64decode("".join(item.split()), validate=True)
    except (binascii.Error, ValueError) as err:
        raise RequestError(422, f"{what}: not valid base64 ({err}).") from err
    if len(data) > settings.max_image_bytes:
        raise RequestError(413, _too_many_bytes(what, len(data), settings))
    return data


def check_image_header(data: bytes, settings: ServeSettings, what: str) -> None:
    """Read only the image header: 422 if it is no image or too small, 413 if it has too many pixels."""
    if len(data) > settings.max_image_bytes:
        raise RequestError(413, _too_many_bytes(what, len(data), settings))
    try:
        with Image.open(io.BytesIO(data)) as image:
            height, width = viewed_size(image)
    except Image.DecompressionBombError:  # Pillow's own limit, far above ours
        raise RequestError(413, f"{what}: the image has more pixels than this server's limit of "
                                f"{settings.max_megapixels:g} megapixels.") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        start = data[:8].hex(" ") if data else "nothing"
        raise RequestError(422, f"{what}: the {len(data)} bytes are not an image in a known format "
                                f"(JPEG, PNG, BMP, TIFF, WebP); they start with {start}.") from err
    if width * height > settings.max_pixels:
        raise RequestError(413, f"{what}: the image is {width}x{height} pixels, more than this server's limit of "
                                f"{settings.max_megapixels:g} megapixels.")
    if min(width, height) < MIN_IMAGE_SIDE:
        raise RequestError(422, f"{what}: the image is {width}x{height} pixels; images need at least "
                                f"{MIN_IMAGE_SIDE} pixels on each side.")


def _too_many_bytes(what: str, size: int, settings: ServeSettings) -> str:
    return (f"{what}: the image is {size / 2**20:.1f} MiB, over this server's limit of "
            f"{settings.max_image_mb:g} MiB (--max-image-mb).")
