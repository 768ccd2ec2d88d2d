"""Image parts of chat requests: data URI decoding, URL fetching under the server's policy, and the limits.

* ``data:<mime>;base64,<data>`` URIs are decoded here; their size is checked before decoding.
* http(s) URLs are fetched only when the server runs with ``--allow-image-urls``: :func:`url_fetcher` builds a
  fetcher on :class:`ras_guard.fetch.ImageFetcher` (SSRF-safe, one wall-clock deadline per image, never past
  the request's deadline); without it they are refused with a message naming the two ways out.
* At most ``max_images`` images per request and ``max_bytes`` per image; decoding the pixels (corrupt images)
  is the guard's ``normalize``.

Every failure is a typed error that the app answers with HTTP 400 and the code of :func:`error_code`.

Example:
    >>> image_bytes("data:image/png;base64,iVBORw0KGgo=", "messages[0].content[0]", 1024, None)
    b'\\x89PNG\\r\\n\\x1a\\n'
    >>> error_code(ImageTooLargeError("too big"))
    'image_too_large'
"""

from __future__ import annotations

import base64
import binascii
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import replace

from ..errors import (
    ImageError,
    ImageFetchError,
    ImageFetchTimeoutError,
    ImageTooLargeError,
    InvalidMessageError,
    UnsafeURLError,
    UnsupportedRequestError,
)
from .schemas import ChatCompletionRequest, ImagePart

__all__ = ["Fetcher", "check_image_count", "error_code", "image_bytes", "url_fetcher"]

Fetcher = Callable[[str], bytes]
"""``url -> bytes`` for one request (its deadline already bound)."""

_DATA_URI = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(;[^;,]*)*?);base64,(?P<data>.*)$", re.DOTALL)
_CODES = ((ImageFetchTimeoutError, "image_fetch_timeout"), (UnsafeURLError, "unsafe_image_url"),
          (ImageFetchError, "invalid_image_url"), (ImageTooLargeError, "image_too_large"),
          (ImageError, "invalid_image"))


def error_code(exc: BaseException) -> str | None:
    """The error ``code`` of an image failure (None: not an image error).

    ``image_fetch_timeout`` (slow server: a 400, not 408 / 504, so clients do not retry a download that will
    time out again), ``unsafe_image_url`` (an internal address, a redirect to one, a host off the allow-list),
    ``invalid_image_url`` (bad status, network error), ``image_too_large``, ``invalid_image`` (cannot be decoded).
    """
    for cls, code in _CODES:
        if isinstance(exc, cls):
            return code
    return None


def _decode_data_uri(url: str, where: str, max_bytes: int) -> bytes:
    m = _DATA_URI.match(url)
    if m is None:
        raise InvalidMessageError(f"{where}: a data URI must be 'data:<mime>;base64,<data>' (got {url[:40]!r}).")
    data = m.group("data")
    if len(data) * 3 // 4 > max_bytes:
        raise ImageTooLargeError(f"{where}: the image of about {len(data) * 3 // 4} bytes exceeds {max_bytes}.")
    try:
        return base64.b64decode(re.sub(r"\s+", "", data), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidMessageError(f"{where}: the data URI holds invalid base64 ({exc}).") from exc


def image_bytes(url: str, where: str, max_bytes: int, fetcher: Fetcher | None) -> bytes:
    """The bytes of one ``image_url``: a decoded data URI, or a fetched http(s) URL.

    Args:
        url: The part's ``image_url.url``.
        where: Its place in the request, for messages (``messages[2].content[0]``).
        max_bytes: Largest image accepted.
        fetcher: Fetches URLs (None: the server does not fetch URLs).

    Raises:
        UnsupportedRequestError: An http(s) URL and no fetcher.
        ImageTooLargeError: Over ``max_bytes``.
        InvalidMessageError: A malformed data URI, or another scheme.
        ImageFetchError: The fetch failed (see :func:`error_code`).
    """
    if url.startswith("data:"):
        return _decode_data_uri(url, where, max_bytes)
    if url.startswith(("http://", "https://")):
        if fetcher is None:
            raise UnsupportedRequestError(
                f"{where}: this server does not fetch image URLs; send the image as a 'data:image/png;base64,...' "
                "URI, or start the server with --allow-image-urls (SSRF-safe fetching; internal hosts only with "
                "--allowed-image-hosts)."
            )
        return fetcher(url)
    raise InvalidMessageError(f"{where}: image_url must be a data: URI or an http(s) URL, got {url[:40]!r}.")


def check_image_count(req: ChatCompletionRequest, max_images: int) -> None:
    """Refuse a request with more than ``max_images`` image parts.

    Raises:
        InvalidMessageError: Too many images.
    """
    images = sum(isinstance(p, ImagePart) for m in req.messages if isinstance(m.content, list) for p in m.content)
    if images > max_images:
        raise InvalidMessageError(f"the request holds {images} images; this server takes at most {max_images}.")


def url_fetcher(
    *, allow: bool, allowed_hosts: Sequence[str], max_bytes: int, timeout: float,
) -> Callable[[str, float], bytes] | None:
    """``(url, request deadline) -> bytes`` under the server's fetch policy, or None when URLs are off.

    Args:
        allow: ``--allow-image-urls``.
        allowed_hosts: ``--allowed-image-hosts`` entries (hosts exempt from the internal-address check).
        max_bytes: ``--max-image-mb`` in bytes.
        timeout: ``--image-timeout``: seconds for one image (cut to what the request has left).

    Raises:
        InvalidMessageError: ``allowed_hosts`` without ``allow``.
        AllowedHostsError: An allow-list entry that cannot be parsed.
    """
    if not allow:
        if allowed_hosts:
            raise InvalidMessageError("--allowed-image-hosts has no effect without --allow-image-urls; add it.")
        return None
    from ..fetch import FetchPolicy, ImageFetcher, OptionNames

    names = OptionNames(allowed_hosts="--allowed-image-hosts", allow_private=None, timeout="--image-timeout",
                        max_bytes="--max-image-mb")
    policy = FetchPolicy(allowed_hosts=tuple(allowed_hosts), max_bytes=max_bytes, timeout=timeout, names=names)
    full = ImageFetcher(policy)

    def fetch(url: str, deadline: float) -> bytes:
        left = deadline - time.monotonic()
        if left <= 0:
            raise ImageFetchTimeoutError("the request's deadline passed before its images were fetched.")
        return (full if left >= policy.timeout else ImageFetcher(replace(policy, timeout=left))).fetch(url)

    return fetch
