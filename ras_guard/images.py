"""Image decoding with limits: bytes, paths and PIL images in, validated RGB PIL images out.

The pixel limit is checked from the header before any pixel is decoded, so a decompression bomb costs nothing.

Example:
    >>> from PIL import Image
    >>> from ras_guard.images import load_image
    >>> load_image(Image.new("RGB", (8, 8))).size
    (8, 8)
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from pathlib import Path
from typing import Any

from PIL import Image

from ._redact import redact, redact_url
from .errors import CorruptImageError, ImageTooLargeError, InvalidMessageError

__all__ = ["DEFAULT_MAX_BYTES", "DEFAULT_MAX_PIXELS", "image_sha256", "load_image"]

DEFAULT_MAX_PIXELS = 4096 * 4096
DEFAULT_MAX_BYTES = 32 * 1024 * 1024


def _check_pixels(width: int, height: int, max_pixels: int, where: str) -> None:
    if width <= 0 or height <= 0:
        raise CorruptImageError(f"{where}: image has an empty size {width}x{height}.")
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"{where}: image of {width}x{height} = {width * height} pixels exceeds the limit of {max_pixels} pixels; "
            "resize it, or raise RASConfig.max_image_pixels if you trust the source."
        )


def _decode(data: bytes, max_pixels: int, where: str) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            _check_pixels(img.width, img.height, max_pixels, where)
            img.load()
    except ImageTooLargeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLargeError(
            f"{where}: image exceeds the limit of {max_pixels} pixels (Pillow: {exc}); resize the image."
        ) from exc
    except Exception as exc:  # PIL raises many types for bad data
        raise CorruptImageError(
            f"{where}: cannot decode image bytes ({len(data)} bytes, starting {data[:8]!r}): {exc}. "
            "Pass a valid PNG/JPEG/WebP/GIF file."
        ) from exc
    return img


def load_image(
    source: Any, *, max_pixels: int = DEFAULT_MAX_PIXELS, max_bytes: int = DEFAULT_MAX_BYTES, where: str = "image"
) -> Image.Image:
    """Turn a PIL image, raw bytes or a file path into a validated RGB PIL image.

    Args:
        source: ``PIL.Image.Image``, ``bytes``/``bytearray``, or a ``str``/``os.PathLike`` path to a local file.
        max_pixels: Refuse images with more pixels than this (checked before decoding).
        max_bytes: Refuse encoded images larger than this.
        where: Name of the input in error messages (e.g. ``"messages[0].content[1]"``).

    Returns:
        An RGB image, fully loaded.

    Raises:
        CorruptImageError: The bytes are not a decodable image.
        ImageTooLargeError: Over the byte or pixel limit.
        InvalidMessageError: The source is of an unsupported type or the path does not exist.

    Example:
        >>> import io
        >>> from PIL import Image
        >>> buf = io.BytesIO(); Image.new("L", (4, 3)).save(buf, "PNG")
        >>> load_image(buf.getvalue()).mode
        'RGB'
    """
    if isinstance(source, Image.Image):
        _check_pixels(source.width, source.height, max_pixels, where)
        img = source
    elif isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if len(data) > max_bytes:
            raise ImageTooLargeError(f"{where}: {len(data)} bytes exceeds the limit of {max_bytes} bytes.")
        img = _decode(data, max_pixels, where)
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if isinstance(source, str) and source.startswith(("http://", "https://", "data:")):
            raise InvalidMessageError(
                f"{where}: the core takes no URLs ({redact_url(source, limit=80)!r}); fetch the image first "
                "(the LangChain integration does this safely) and pass bytes."
            )
        if not path.is_file():
            raise InvalidMessageError(f"{where}: image file {redact(str(source))!r} does not exist.")
        size = path.stat().st_size
        if size > max_bytes:
            raise ImageTooLargeError(f"{where}: file {str(path)!r} has {size} bytes, over {max_bytes}.")
        img = _decode(path.read_bytes(), max_pixels, where)
    else:
        raise InvalidMessageError(
            f"{where}: unsupported image type {type(source).__name__}; pass a PIL.Image, bytes or a file path."
        )
    if img.mode != "RGB":
        img = img.convert("RGB")
    return img


def image_sha256(img: Image.Image) -> str:
    """SHA-256 of an image's decoded RGB pixels and size (stable across encodings of the same pixels).

    Example:
        >>> from PIL import Image
        >>> len(image_sha256(Image.new("RGB", (2, 2))))
        64
    """
    h = hashlib.sha256(f"{img.width}x{img.height}:{img.mode}:".encode())
    h.update(img.tobytes())
    return h.hexdigest()
