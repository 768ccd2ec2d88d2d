"""Image bytes from LangChain image blocks: base64, data URIs, URLs, raw bytes and PIL images (private).

Every form is size-checked (base64 before decoding) and its header is read to refuse undecodable and
over-large images before any pixel is decoded; URLs are fetched by :mod:`._fetch`.

Example:
    >>> decode_data_uri("data:image/png;base64,aGk=", 10)
    b'hi'
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import warnings
from typing import Any
from urllib.parse import unquote_to_bytes

from PIL import Image
from ras_guard._redact import redact_url
from ras_guard.errors import (
    CorruptImageError,
    ImageTooLargeError,
    InvalidMessageError,
    UnsupportedInputError,
)
from ras_guard.fetch import FetchPolicy, ImageFetcher

__all__ = ["ImageResolver", "check_image_header", "decode_base64", "decode_data_uri"]


class ImageResolver:
    """Turns a v1 image block into validated image bytes (or a PIL image passed through).

    Args:
        policy: Limits and URL rules.
    """

    def __init__(self, policy: FetchPolicy) -> None:
        self.policy = policy
        self.fetcher = ImageFetcher(policy)

    def __call__(self, block: dict[str, Any], where: str) -> bytes | Image.Image:
        """Bytes of the image a block holds or points at.

        Raises:
            UnsafeURLError, ImageFetchError, ImageTooLargeError, CorruptImageError: See :mod:`._images`.
            UnsupportedInputError: A provider file id.
            InvalidMessageError: A block without image data, or a local path.
        """
        p = self.policy
        if block.get("base64"):
            data = decode_base64(block["base64"], p.max_bytes, where)
        elif block.get("url"):
            url = str(block["url"])
            if url[:5].lower() == "data:":
                data = decode_data_uri(url, p.max_bytes, where)
            else:
                data = self.fetcher.fetch(url)
        elif block.get("image") is not None:
            return self._direct(block["image"], where)
        elif block.get("file_id"):
            raise UnsupportedInputError(
                f"{where}: image given as a provider file id ({block['file_id']!r}); a local model has no "
                "file "
                "store. Pass the image as base64 or a URL."
            )
        else:
            raise InvalidMessageError(f"{where}: image block has no 'base64', 'url' or 'image' data.")
        check_image_header(data, p.max_pixels, where)
        return data

    def _direct(self, value: Any, where: str) -> bytes | Image.Image:
        if isinstance(value, Image.Image):
            if value.width * value.height > self.policy.max_pixels:
                check_image_header(_png(value), self.policy.max_pixels, where)
            return value
        if isinstance(value, (bytes, bytearray, memoryview)):
            data = bytes(value)
            if len(data) > self.policy.max_bytes:
                raise ImageTooLargeError(
                    f"{where}: image of {len(data)} bytes exceeds {self.policy.max_bytes} bytes."
                )
            check_image_header(data, self.policy.max_pixels, where)
            return data
        raise InvalidMessageError(
            f"{where}: an 'image' value must be a PIL image or bytes, got {type(value).__name__}; local "
            "file paths "
            "are not read from chat messages (read the file yourself and pass base64)."
        )


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def decode_base64(data: str | bytes, max_bytes: int, where: str = "image") -> bytes:
    """Decode base64 (standard or URL-safe, whitespace tolerated), refusing oversized data before decoding.

    Example:
        >>> decode_base64("aGk=", 10)
        b'hi'
    """
    text = data.decode("ascii", "replace") if isinstance(data, (bytes, bytearray)) else str(data)
    text = re.sub(r"\s+", "", text)
    if len(text) * 3 // 4 > max_bytes + 3:
        raise ImageTooLargeError(
            f"{where}: base64 image of ~{len(text) * 3 // 4} bytes exceeds {max_bytes} bytes."
        )
    if "-" in text or "_" in text:
        text = text.replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    try:
        out = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise CorruptImageError(f"{where}: invalid base64 image data ({exc}).") from exc
    if len(out) > max_bytes:
        raise ImageTooLargeError(f"{where}: image of {len(out)} bytes exceeds {max_bytes} bytes.")
    return out


def decode_data_uri(uri: str, max_bytes: int, where: str = "image") -> bytes:
    """Bytes of a ``data:`` URI (base64 or percent-encoded).

    Example:
        >>> decode_data_uri("data:image/png;base64,aGk=", 10)
        b'hi'
    """
    head, sep, payload = uri.partition(",")
    if not sep or not head.lower().startswith("data:"):
        raise InvalidMessageError(f"{where}: malformed data URI {redact_url(uri, limit=60)!r}.")
    params = [p.strip().lower() for p in head[5:].split(";")]
    mime = params[0] if params and params[0] else "text/plain"
    if mime and not mime.startswith("image/") and mime != "application/octet-stream":
        raise InvalidMessageError(f"{where}: data URI has media type {mime!r}, expected an image/* type.")
    if "base64" in params[1:]:
        return decode_base64(payload, max_bytes, where)
    raw = unquote_to_bytes(payload)
    if len(raw) > max_bytes:
        raise ImageTooLargeError(f"{where}: image of {len(raw)} bytes exceeds {max_bytes} bytes.")
    return raw


def check_image_header(data: bytes, max_pixels: int, where: str = "image") -> None:
    """Refuse undecodable or over-large images from their header, before any pixel is decoded.

    Raises:
        CorruptImageError: Not an image PIL can identify.
        ImageTooLargeError: More than ``max_pixels`` pixels.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                width, height = img.size
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(f"{where}: {exc}") from exc
    except Exception as exc:  # PIL raises many types on bad data
        raise CorruptImageError(f"{where}: not a decodable image ({len(data)} bytes): {exc}") from exc
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"{where}: image of {width}x{height} pixels exceeds the limit of {max_pixels} pixels."
        )
