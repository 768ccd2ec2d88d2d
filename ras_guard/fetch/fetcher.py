"""SSRF-safe fetching of image URLs: :class:`ImageFetcher` under a :class:`~.policy.FetchPolicy`.

* **Bytes**: downloads are streamed and stop as soon as they exceed the limit (``Content-Length`` is checked
  first; compressed responses are refused, so the limit counts what is stored).
* **Time**: one wall-clock deadline per image covers DNS, connect, TLS, status line, headers, every attempt,
  every redirect and the body (:mod:`.deadline`: every socket operation is capped at the time left, and a
  watchdog shuts the sockets down when it passes, so a server dribbling its headers cannot hold the fetch).
  Running out of time raises :class:`~ras_guard.errors.ImageFetchTimeoutError`.
* **Addresses**: before any request, the host is resolved with :func:`socket.getaddrinfo` and EVERY address is
  checked (:func:`~.policy.blocked_reason`); a non-global one is refused with
  :class:`~ras_guard.errors.UnsafeURLError`. Redirects are followed by hand (bounded), each hop checked the same
  way.
* **DNS rebinding**: the connection is pinned to the address that was checked: the request goes to that IP
  literal with the original ``Host`` header and, for https, the original name as TLS SNI and certificate
  hostname (httpcore's ``sni_hostname`` extension). A second DNS answer can therefore never be used.
  Environment proxies are ignored (``trust_env=False``) so the check cannot be bypassed through a proxy.

Hosts in ``allowed_hosts`` (exact names, ``*.suffix`` wildcards, IP literals or CIDR networks, optionally with
``:PORT``; see :mod:`.allow`) skip the address check; every redirect hop is matched again, port included.
Entries that cannot be parsed raise :class:`~ras_guard.errors.AllowedHostsError` when the policy is built.
``allow_private=True`` skips the check for every host. URLs in error messages are redacted (credentials and
query values masked, :mod:`ras_guard._redact`).

Example:
    >>> ImageFetcher(FetchPolicy()).check("http://127.0.0.1/x.png")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ras_guard.errors.UnsafeURLError: ...
"""

from __future__ import annotations

import ipaddress
import threading
import time
from typing import Any
from urllib.parse import urlsplit

import httpx
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from .._redact import redact
from ..errors import ImageFetchError, ImageFetchTimeoutError, ImageTooLargeError, UnsafeURLError
from .deadline import Deadline, DeadlineTransport
from .policy import FetchPolicy, IPAddress, blocked_reason, ip_literal
from .policy import show as _show

__all__ = ["ImageFetcher"]

_REDIRECTS = (301, 302, 303, 307, 308)
_USER_AGENT = "ras-guard (image fetch)"


def _remaining(deadline: float, what: str, url: str, policy: FetchPolicy) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise ImageFetchTimeoutError(
            f"fetching {_show(url)} timed out during {what}; raise {policy.names.timeout} if the host is slow."
        )
    return left


def _resolve(host: str, port: int, policy: FetchPolicy, deadline: float, url: str) -> list[IPAddress]:
    literal = ip_literal(host)
    if literal is not None:
        return [literal]
    found: dict[str, Any] = {}

    def lookup() -> (
        None
    ):  # getaddrinfo has no timeout: run it in a daemon thread and wait at most until the deadline
        try:
            found["addresses"] = policy.resolver(host, port)
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            found["error"] = exc

    thread = threading.Thread(target=lookup, name="ras-guard-dns", daemon=True)
    thread.start()
    thread.join(_remaining(deadline, "DNS resolution", url, policy))
    if thread.is_alive():
        raise ImageFetchTimeoutError(f"resolving {host!r} for {_show(url)} timed out.")
    if "error" in found:
        if isinstance(found["error"], OSError):
            error = found["error"]
            raise ImageFetchError(f"cannot resolve {host!r} for {_show(url)}: {error}.") from error
        raise found["error"]
    raw = found["addresses"]
    out: list[IPAddress] = []
    for a in raw:
        try:
            out.append(ipaddress.ip_address(a.split("%", 1)[0]))
        except ValueError as exc:
            raise ImageFetchError(f"resolver returned an invalid address {a!r} for {host!r}.") from exc
    if not out:
        raise ImageFetchError(f"{host!r} resolves to no address.")
    return out


def _parse(url: str) -> httpx.URL:
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError, TypeError) as exc:
        host = ""
        try:
            host = urlsplit(url).hostname or ""
        except ValueError:
            pass
        legacy = ip_literal(host) if host else None
        if legacy is not None and (reason := blocked_reason(legacy)):
            raise UnsafeURLError(f"image URL {_show(url)} names {legacy} ({reason}); refused.") from None
        raise ImageFetchError(f"invalid image URL {_show(url)}: {redact(exc)}") from None
    if parsed.scheme not in ("http", "https"):
        raise UnsafeURLError(
            f"image URL scheme {parsed.scheme!r} is not allowed ({_show(url)}); use http(s), a data: URI "
            "or base64."
        )
    if not parsed.host:
        raise ImageFetchError(f"image URL {_show(url)} has no host.")
    return parsed


class _Retryable(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


def _should_retry(exc: BaseException) -> bool:
    return isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, _Retryable))


class ImageFetcher:
    """Fetches image URLs under a :class:`FetchPolicy`.

    Example:
        >>> fetcher = ImageFetcher(FetchPolicy())
        >>> fetcher.check("http://127.0.0.1/x.png")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ras_guard.errors.UnsafeURLError: ...
    """

    def __init__(self, policy: FetchPolicy) -> None:
        self.policy = policy

    def check(self, url: str, deadline: float | None = None) -> tuple[httpx.URL, IPAddress]:
        """Parse and vet a URL; return it with the address to connect to.

        Raises:
            UnsafeURLError: Bad scheme, or the host resolves to a non-global address and is not allow-listed.
            ImageFetchError: Invalid URL or failed resolution.
        """
        deadline = deadline if deadline is not None else time.monotonic() + self.policy.timeout
        parsed = _parse(url)
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        addresses = _resolve(parsed.host, port, self.policy, deadline, url)
        host = parsed.raw_host.decode("ascii", "replace")
        if not self.policy.allows(host, port, addresses):
            for a in addresses:
                if reason := blocked_reason(a):
                    raise UnsafeURLError(self._refusal(url, a, reason, host, port))
        return parsed, addresses[0]

    def _refusal(self, url: str, address: IPAddress, reason: str, host: str, port: int) -> str:
        names, listed = self.policy.names, ", ".join(map(str, self.policy.entries))
        return (
            f"image URL {_show(url)} resolves to {address} ({reason}); requests to internal addresses are refused"
            + (f" ({host}:{port} matches no {names.allowed_hosts} entry of {listed})" if listed else "")
            + f". If you trust this host, add it to {names.allowed_hosts} (host or host:port)"
            + (f" or set {names.allow_private}." if names.allow_private else ".")
        )

    def fetch(self, url: str) -> bytes:
        """Download an image, following at most ``max_redirects`` checked redirects.

        Raises:
            UnsafeURLError: Some hop points at an internal address.
            ImageTooLargeError: Over the byte limit.
            ImageFetchTimeoutError: The deadline (``timeout``) passed.
            ImageFetchError: Network error, bad status, too many redirects.
        """
        p = self.policy
        with Deadline(p.timeout) as deadline:
            return self._fetch(url, deadline)

    def _fetch(self, url: str, deadline: Deadline) -> bytes:
        p = self.policy
        current = url
        for _hop in range(p.max_redirects + 1):
            parsed, ip = self.check(current, deadline.at)
            status, location, body = self._get_with_retries(parsed, ip, deadline, url)
            if status in _REDIRECTS:
                if not location:
                    raise ImageFetchError(
                        f"{_show(current)} answered HTTP {status} without a Location header."
                    )
                current = str(parsed.join(location))
                continue
            if status != 200:
                raise ImageFetchError(f"fetching {_show(current)} failed with HTTP {status}.")
            return body
        raise ImageFetchError(f"{_show(url)} redirected more than {p.max_redirects} times.")

    def _get_with_retries(
        self, parsed: httpx.URL, ip: IPAddress, deadline: Deadline, original: str
    ) -> tuple[int, str | None, bytes]:
        def out_of_time(_state: RetryCallState) -> None:  # raises instead of sleeping past the deadline
            _remaining(deadline.at, "retries", original, self.policy)

        retrying = Retrying(
            stop=stop_after_attempt(self.policy.max_retries + 1),
            wait=wait_exponential(multiplier=0.2, max=2.0),
            retry=retry_if_exception(_should_retry),
            before_sleep=out_of_time,
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    return self._get_once(parsed, ip, deadline, original)
        except _Retryable as exc:
            raise ImageFetchError(f"fetching {_show(original)} failed with HTTP {exc.status}.") from exc
        except httpx.HTTPError as exc:
            if isinstance(exc, httpx.TimeoutException) or deadline.expired or deadline.left() <= 0:
                raise ImageFetchTimeoutError(
                    f"fetching {_show(original)} timed out after {self.policy.timeout:g} s "
                    f"({self.policy.names.timeout} covers connect, headers and body): {redact(repr(exc))}."
                ) from None
            raise ImageFetchError(f"fetching {_show(original)} failed: {redact(repr(exc))}.") from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _get_once(
        self, parsed: httpx.URL, ip: IPAddress, deadline: Deadline, original: str
    ) -> tuple[int, str | None, bytes]:
        p = self.policy
        left = _remaining(deadline.at, "connect", original, p)
        pinned = parsed.copy_with(host=str(ip))  # connect to the checked address, never re-resolve
        headers = {
            "Host": parsed.netloc.decode("ascii"),
            "Accept": "image/*",
            "Accept-Encoding": "identity",  # no decompression bombs: the byte limit counts what is stored
            "User-Agent": _USER_AGENT,
        }
        extensions: dict[str, Any] = {}
        if parsed.scheme == "https" and ip_literal(parsed.host) is None:
            extensions["sni_hostname"] = parsed.host
        client = httpx.Client(
            transport=p.transport or DeadlineTransport(deadline, p.ssl_context),
            timeout=httpx.Timeout(min(left, p.timeout)),
            follow_redirects=False,
            trust_env=False,
        )
        with client, client.stream("GET", pinned, headers=headers, extensions=extensions) as resp:
            if resp.status_code >= 500:
                raise _Retryable(resp.status_code)
            if resp.status_code in _REDIRECTS or resp.status_code != 200:
                return resp.status_code, resp.headers.get("location"), b""
            encoding = resp.headers.get("content-encoding", "identity").strip().lower()
            if encoding not in ("", "identity"):
                raise ImageFetchError(
                    f"{_show(original)} answered with Content-Encoding {encoding!r}; refused."
                )
            declared = resp.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > p.max_bytes:
                raise ImageTooLargeError(
                    f"{_show(original)} declares {declared} bytes, over the limit of {p.max_bytes} bytes "
                    f"({p.names.max_bytes})."
                )
            buf = bytearray()
            for chunk in resp.iter_raw():
                buf.extend(chunk)
                if len(buf) > p.max_bytes:
                    raise ImageTooLargeError(
                        f"{_show(original)} sent more than {p.max_bytes} bytes ({p.names.max_bytes}); "
                        "stopped reading."
                    )
                _remaining(deadline.at, "download", original, p)
            return 200, None, bytes(buf)
