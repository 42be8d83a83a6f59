"""The service's limits and switches, shared by the app, its middleware and the input loaders."""

from __future__ import annotations

from dataclasses import dataclass

MIB = 1024 * 1024
MIN_IMAGE_SIDE = 16  # smaller images (a 1x1 pixel, a favicon) are refused with 422: nothing to segment in them
JSON_OVERHEAD_BYTES = MIB  # room for the JSON around the base64 strings


@dataclass(frozen=True)
class ServeSettings:
    """Limits of ``otxlite serve``; every one is checked before the work it guards is done."""

    api_key: str | None = None  # when set, /score and /metadata need ``Authorization: Bearer <api_key>``
    max_image_mb: float = 20.0  # largest encoded image (bytes after base64 decoding, or fetched), in MiB
    max_images: int = 16  # images per request
    max_megapixels: float = 40.0  # largest image by its header's width x height, checked before decoding
    allow_urls: bool = False  # whether ``data`` items may be http(s) URLs to fetch
    url_timeout_s: float = 10.0  # whole fetch of one URL, redirects included
    performance_hint: str = "THROUGHPUT"  # OpenVINO hint: several infer requests in flight

    @property
    def max_image_bytes(self) -> int:
        return int(self.max_image_mb * MIB)

    @property
    def max_pixels(self) -> int:
        return int(self.max_megapixels * 1_000_000)

    @property
    def max_body_bytes(self) -> int:
        """Largest request body: ``max_images`` base64 images of ``max_image_mb`` each, plus the JSON around them."""
        return self.max_images * (self.max_image_bytes * 4 // 3 + 4) + JSON_OVERHEAD_BYTES
