"""SSRF-safe fetching of image URLs (private).

The core never fetches URLs; this module does, under limits:

* **Bytes**: downloads are streamed and stop as soon as they exceed the limit (``Content-Length`` is checked
  first; compressed responses are refused, so the limit counts what is stored).
* **Time**: one wall-clock deadline per image covers DNS, connect, TLS, status line, headers, every attempt,
  every redirect and the body (:mod:`._deadline`: every socket operation is capped at the time left, and a
  watchdog shuts the sockets down when it passes, so a server dribbling its headers cannot hold the fetch).
* **Addresses**: before any request, the host is resolved with :func:`socket.getaddrinfo` and EVERY address is
  checked with :mod:`ipaddress`; loopback, private, link-local, multicast, reserved, unspecified, shared
  (CGNAT) and other non-global addresses are refused with :class:`~ras_guard.errors.UnsafeURLError`, including
  addresses embedded in IPv6 (IPv4-mapped, 6to4, NAT64) and legacy IPv4 spellings (``2130706433``,
  ``0x7f.1``, ``0177.0.0.1``). Redirects are followed by hand (bounded), each hop checked the same way.
* **DNS rebinding**: the connection is pinned to the address that was checked: the request goes to that IP
  literal with the original ``Host`` header and, for https, the original name as TLS SNI and certificate
  hostname (httpcore's ``sni_hostname`` extension). A second DNS answer can therefore never be used.
  Environment proxies are ignored (``trust_env=False``) so the check cannot be bypassed through a proxy.

Hosts in ``allowed_hosts`` (exact names, ``*.suffix`` wildcards, IP literals or CIDR networks, optionally with
``:PORT``; see :mod:`._allow`) skip the address check; every redirect hop is matched again, port included.
Entries that cannot be parsed raise :class:`~ras_guard.errors.AllowedHostsError` when the policy is built.
``allow_private=True`` skips the check for every host. URLs in error messages are redacted (credentials and
query values masked, :mod:`ras_guard._redact`).

Example:
    >>> policy = FetchPolicy(allowed_hosts=("127.0.0.1:8080",))
    >>> blocked_reason(ipaddress.ip_address("169.254.169.254"))
    'link-local'
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
from ras_guard._redact import redact, redact_url
from ras_guard.errors import (
    ImageFetchError,
    ImageTooLargeError,
    UnsafeURLError,
)
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from ._allow import AllowEntry, _literal, parse_allowed_hosts
from ._deadline import Deadline, DeadlineTransport

__all__ = ["FetchPolicy", "ImageFetcher", "blocked_reason", "ip_literal", "system_resolver"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Sequence[str]]
"""``(host, port) -> addresses``; replaceable for tests."""

_REDIRECTS = (301, 302, 303, 307, 308)
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_USER_AGENT = "langchain-ras-guard (image fetch)"


def system_resolver(host: str, port: int) -> list[str]:
    """All TCP addresses of ``host`` from :func:`socket.getaddrinfo`."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


@dataclass(frozen=True)
class FetchPolicy:
    """Limits and address rules for image fetching.

    Attributes:
        allowed_hosts: Hosts exempt from the address check: names (``images.internal``), wildcards
            (``*.corp.example``), IP literals or CIDR networks (``10.0.0.0/8``), each optionally with
            ``:PORT`` (``127.0.0.1:8080``, ``[::1]:8443``): then only that port matches.
        allow_private: Skip the address check for every host (only for fully trusted input).
        max_bytes: Largest accepted encoded image.
        max_pixels: Largest accepted width * height, read from the header.
        timeout: Wall-clock seconds for one image: DNS, connect, headers, retries, redirects and body.
        max_redirects: Redirect hops followed (each one re-checked).
        max_retries: Extra attempts after a connection error or an HTTP 5xx.
        resolver: Name resolution function (``socket.getaddrinfo`` by default).
        transport: An httpx transport (tests use ``httpx.MockTransport``); None: a real one.
    """

    allowed_hosts: tuple[str, ...] = ()
    allow_private: bool = False
    max_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 4096 * 4096
    timeout: float = 10.0
    max_redirects: int = 3
    max_retries: int = 2
    resolver: Resolver = field(default=system_resolver, compare=False)
    transport: httpx.BaseTransport | None = field(default=None, compare=False)
    entries: tuple[AllowEntry, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        """Parse ``allowed_hosts`` now, so a bad entry fails at configuration time."""
        object.__setattr__(self, "allowed_hosts", tuple(self.allowed_hosts))
        object.__setattr__(self, "entries", parse_allowed_hosts(self.allowed_hosts))


def blocked_reason(ip: IPAddress) -> str | None:
    """Why an address must not be fetched from, or None when it is globally routable.

    Example:
        >>> blocked_reason(ipaddress.ip_address("::ffff:127.0.0.1"))
        'IPv4-mapped 127.0.0.1: loopback'
        >>> blocked_reason(ipaddress.ip_address("93.184.216.34")) is None
        True
    """
    if isinstance(ip, ipaddress.IPv6Address):
        embedded: list[tuple[str, ipaddress.IPv4Address | None]] = [
            ("IPv4-mapped", ip.ipv4_mapped),
            ("6to4", ip.sixtofour),
        ]
        if any(ip in net for net in _NAT64):
            embedded.append(("NAT64", ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)))
        for label, v4 in embedded:
            if v4 is not None and (inner := blocked_reason(v4)):
                return f"{label} {v4}: {inner}"
    checks = (
        ("is_unspecified", "unspecified"),
        ("is_loopback", "loopback"),
        ("is_link_local", "link-local"),
        ("is_multicast", "multicast"),
        ("is_private", "private"),
        ("is_reserved", "reserved"),
        ("is_site_local", "site-local"),
    )
    for attr, label in checks:
        if getattr(ip, attr, False):
            return label
    if not ip.is_global:
        return "not globally routable"
    return None


def ip_literal(host: str) -> IPAddress | None:
    """The address a host names literally, legacy IPv4 spellings included; None for a DNS name.

    Example:
        >>> str(ip_literal("2130706433")), str(ip_literal("0x7f.1")), str(ip_literal("[::1]"))
        ('127.0.0.1', '127.0.0.1', '::1')
    """
    return _literal(host.strip().strip("[]").rstrip("."))


def _host_allowed(host: str, port: int, addresses: Sequence[IPAddress], policy: FetchPolicy) -> bool:
    return policy.allow_private or any(e.matches(host, port, addresses) for e in policy.entries)


def _show(url: str) -> str:
    """A URL as error messages quote it: credentials and query values masked, at most 100 characters."""
    return repr(redact_url(url, limit=100))


def _remaining(deadline: float, what: str, url: str) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise ImageFetchError(
            f"fetching {_show(url)} timed out during {what}; raise image_timeout if the host is slow."
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
        except BaseException as exc:  # re-raised below
            found["error"] = exc

    thread = threading.Thread(target=lookup, name="ras-guard-dns", daemon=True)
    thread.start()
    thread.join(_remaining(deadline, "DNS resolution", url))
    if thread.is_alive():
        raise ImageFetchError(f"resolving {host!r} for {_show(url)} timed out.")
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
        if not _host_allowed(host, port, addresses, self.policy):
            for a in addresses:
                if reason := blocked_reason(a):
                    listed = ", ".join(map(str, self.policy.entries))
                    raise UnsafeURLError(
                        f"image URL {_show(url)} resolves to {a} ({reason}); requests to internal "
                        "addresses are refused"
                        + (f" ({host}:{port} matches no allowed_hosts entry of {listed})" if listed else "")
                        + ". If you trust this host, add it to allowed_hosts (host or host:port) or set "
                        "allow_private_urls=True."
                    )
        return parsed, addresses[0]

    def fetch(self, url: str) -> bytes:
        """Download an image, following at most ``max_redirects`` checked redirects.

        Raises:
            UnsafeURLError: Some hop points at an internal address.
            ImageTooLargeError: Over the byte limit.
            ImageFetchError: Network error, bad status, timeout, too many redirects.
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
            _remaining(deadline.at, "retries", original)

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
                raise ImageFetchError(
                    f"fetching {_show(original)} timed out after {self.policy.timeout:g} s (image_timeout "
                    f"covers connect, headers and body): {redact(repr(exc))}."
                ) from None
            raise ImageFetchError(f"fetching {_show(original)} failed: {redact(repr(exc))}.") from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _get_once(
        self, parsed: httpx.URL, ip: IPAddress, deadline: Deadline, original: str
    ) -> tuple[int, str | None, bytes]:
        p = self.policy
        left = _remaining(deadline.at, "connect", original)
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
            transport=p.transport or DeadlineTransport(deadline),
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
                    "(max_image_bytes)."
                )
            buf = bytearray()
            for chunk in resp.iter_raw():
                buf.extend(chunk)
                if len(buf) > p.max_bytes:
                    raise ImageTooLargeError(
                        f"{_show(original)} sent more than {p.max_bytes} bytes (max_image_bytes); "
                        "stopped reading."
                    )
                _remaining(deadline.at, "download", original)
            return 200, None, bytes(buf)
