"""Redaction of secrets in text that goes into error messages and log lines (private).

One helper, :func:`redact`, used wherever ras-guard (and langchain-ras-guard) writes an error or a log line that
may quote user input. It removes:

* **Credentials in URLs**: ``scheme://user:password@host`` becomes ``scheme://***@host``.
* **Query strings and fragments**: every value is replaced (``?X-Amz-Signature=***&X-Amz-Expires=***``); the
  parameter names stay, so the message still says what kind of URL it was. Signed URLs (S3, GCS, Azure SAS) keep
  their secret in the query, so no query value is ever shown.
* **Data URIs**: the payload is replaced by its length (``data:image/png;base64,[1234 chars]``).
* **Long base64 runs** anywhere else (32 characters or more that are not plain hex, so SHA-256 digests and
  calibration ids stay readable): ``[base64, N chars]``.
* **Key = value secrets** in free text: ``password=``, ``token=``, ``secret=``, ``signature=``, ``api_key=``
  (and ``:`` forms) keep the key and lose the value; so do ``Bearer <token>`` / ``Basic <token>``.

Redaction only shortens or masks; it never raises, so it is safe inside ``except`` blocks.

Example:
    >>> redact("GET https://bob:hunter2@s3.example.com/a.png?X-Amz-Signature=abc123&v=1#frag failed")
    'GET https://***@s3.example.com/a.png?X-Amz-Signature=***&v=*** failed'
    >>> redact("bad data URI 'data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJ'")
    "bad data URI 'data:image/png;base64,[44 chars]'"
    >>> redact_url("http://example.com/cat.png")
    'http://example.com/cat.png'
"""

from __future__ import annotations

import re

__all__ = ["redact", "redact_url"]

_MASK = "***"
# A URL: scheme://... up to whitespace or a quote/bracket that usually ends a quoted value.
_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.\-]{1,15}://[^\s'\"<>`]+")
# data:[<media type>][;params],<payload>; the payload runs to whitespace or a quote.
_DATA_URI = re.compile(r"\bdata:([a-zA-Z0-9!#$&^_.+\-/;=]*),([^\s'\"<>`]*)", re.IGNORECASE)
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/_\-]{32,}={0,2}")
_HEX = re.compile(r"[0-9a-fA-F\-]+")
_SECRET_KV = re.compile(
    r"(?i)\b((?:x-amz-|x-goog-)?(?:password|passwd|pwd|secret|token|access[_-]?token|api[_-]?key|apikey|"
    r"signature|sig|credential|auth|authorization)[\"']?\s*[=:]\s*[\"']?)([^\s'\"&,;)}\]]+)"
)

_BEARER = re.compile(r"(?i)\b(bearer|basic|token)\s+[A-Za-z0-9._~+/=\-]{6,}")


def redact_url(url: str, *, limit: int = 200) -> str:
    """A URL with credentials, query values and fragment masked, cut to ``limit`` characters.

    Args:
        url: Any string meant as a URL (it need not parse).
        limit: Longest result; longer ones end in ``...``.

    Example:
        >>> redact_url("https://u:p@h.example/x?sig=1&a")
        'https://***@h.example/x?sig=***&a'
    """
    text = str(url)
    if text[:5].lower() == "data:":
        out = _DATA_URI.sub(_data_uri, text, count=1)
        if out == text:  # no comma: mask everything after the scheme
            out = f"data:[{len(text) - 5} chars]"
    else:
        out = _one_url(text)
    out = _BASE64_RUN.sub(_base64_run, out)
    return out if len(out) <= limit else out[: max(limit - 3, 0)] + "..."


def redact(text: object) -> str:
    """``str(text)`` with every secret this module knows about masked (see the module docstring).

    Example:
        >>> redact("token=abc.def in ftp://u:pw@host/x")
        'token=*** in ftp://***@host/x'
    """
    s = str(text)
    s = _DATA_URI.sub(_data_uri, s)
    s = _URL.sub(lambda m: _one_url(m.group(0)), s)
    s = _BEARER.sub(lambda m: f"{m.group(1)} {_MASK}", s)
    s = _SECRET_KV.sub(lambda m: m.group(1) + _MASK, s)
    return _BASE64_RUN.sub(_base64_run, s)


def _data_uri(match: re.Match[str]) -> str:
    return f"data:{match.group(1)},[{len(match.group(2))} chars]"


def _base64_run(match: re.Match[str]) -> str:
    run = match.group(0)
    if _HEX.fullmatch(run):  # digests and ids stay readable
        return run
    if "/" in run and max(len(seg) for seg in run.split("/")) < 24 and "+" not in run:
        return run  # a file path or URL path, not a blob
    mixed = any(c.isupper() for c in run) and any(c.islower() for c in run) and any(c.isdigit() for c in run)
    if mixed or "+" in run or run.endswith("="):
        return f"[base64, {len(run)} chars]"
    return run


def _one_url(url: str) -> str:
    head, sep, rest = url.partition("://")
    if not sep:
        return url
    # authority ends at the first "/", "?" or "#"
    cut = min((i for i in (rest.find("/"), rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    authority, tail = rest[:cut], rest[cut:]
    if "@" in authority:
        authority = _MASK + "@" + authority.rsplit("@", 1)[1]
    path = tail.partition("#")[0]
    path, qsep, query = path.partition("?")
    if qsep:
        masked = []
        for item in query.split("&"):
            key, eq, _value = item.partition("=")
            masked.append(f"{key}={_MASK}" if eq else key)
        path = path + "?" + "&".join(masked)
    return f"{head}://{authority}{path}"
