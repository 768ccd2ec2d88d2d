"""The fetch policy (limits, allow-list, option names for messages) and the address rules.

Addresses are checked with :mod:`ipaddress`: loopback, private, link-local, multicast, reserved, unspecified,
shared (CGNAT) and other non-global addresses are refused, including addresses embedded in IPv6 (IPv4-mapped,
6to4, NAT64) and legacy IPv4 spellings (``2130706433``, ``0x7f.1``, ``0177.0.0.1``).

Example:
    >>> policy = FetchPolicy(allowed_hosts=("127.0.0.1:8080",))
    >>> blocked_reason(ipaddress.ip_address("169.254.169.254"))
    'link-local'
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import httpx

from .._redact import redact_url
from .allow import AllowEntry, _literal, parse_allowed_hosts

__all__ = ["FetchPolicy", "OptionNames", "blocked_reason", "ip_literal", "system_resolver"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Sequence[str]]
"""``(host, port) -> addresses``; replaceable for tests."""

_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


def system_resolver(host: str, port: int) -> list[str]:
    """All TCP addresses of ``host`` from :func:`socket.getaddrinfo`."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


@dataclass(frozen=True)
class OptionNames:
    """How the caller's configuration names the policy's fields, so error messages say what to change.

    The defaults are the Python API's names (``RASGuardedChatModel``); the server passes its flags.

    Attributes:
        allowed_hosts: The allow-list option.
        allow_private: The "trust every host" option (None: the caller has none; not suggested).
        timeout: The per-image time limit option.
        max_bytes: The byte-limit option.
    """

    allowed_hosts: str = "allowed_hosts"
    allow_private: str | None = "allow_private_urls=True"
    timeout: str = "image_timeout"
    max_bytes: str = "max_image_bytes"


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
        ssl_context: The TLS client context of https fetches (e.g. one trusting a private CA); None: the
            process-wide :func:`~.deadline.shared_ssl_context` (certifi's CA bundle), built once.
        names: The caller's names of these options, for error messages.
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
    ssl_context: ssl.SSLContext | None = field(default=None, compare=False, repr=False)
    names: OptionNames = field(default_factory=OptionNames, compare=False)
    entries: tuple[AllowEntry, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        """Parse ``allowed_hosts`` now, so a bad entry fails at configuration time."""
        object.__setattr__(self, "allowed_hosts", tuple(self.allowed_hosts))
        object.__setattr__(self, "entries", parse_allowed_hosts(self.allowed_hosts))

    def allows(self, host: str, port: int, addresses: Sequence[IPAddress]) -> bool:
        """Whether a host skips the address check (``allow_private``, or an allow-list entry matches)."""
        return self.allow_private or any(e.matches(host, port, addresses) for e in self.entries)


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


def show(url: str) -> str:
    """A URL as error messages quote it: credentials and query values masked, at most 100 characters."""
    return repr(redact_url(url, limit=100))
