"""Allow-list entries for image hosts: parsing (strict, at configuration time) and matching.

An entry is one of

* a host name (``images.internal``) or a wildcard (``*.corp.example``: every subdomain, not the name itself),
* an IP literal (``10.1.2.3``, ``::1`` or ``[::1]``),
* a CIDR network (``10.0.0.0/8``, ``fd00::/8``): matches a host whose every resolved address lies inside,

each optionally with ``:PORT`` (``127.0.0.1:8080``, ``[::1]:8443``, ``images.internal:443``,
``*.corp.example:8443``; not for CIDR networks). An entry with a port matches that port only (the URL's port,
or 80 / 443 by scheme when it names none); an entry without one matches every port. Anything else (a URL, a
path, a port out of range, a bare ``*``, a non-ASCII name) is refused with
:class:`~ras_guard.errors.AllowedHostsError` when the policy is built, never silently ignored.

Example:
    >>> [str(e) for e in parse_allowed_hosts(["127.0.0.1:8080", "*.Example.COM", "[::1]:443", "10.0.0.0/8"])]
    ['127.0.0.1:8080', '*.example.com', '[::1]:443', '10.0.0.0/8']
    >>> parse_allowed_hosts(["http://images.example.com"])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ras_guard.errors.AllowedHostsError: allowed_hosts entry 'http://images.example.com' is not ...
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ras_guard.errors import AllowedHostsError

__all__ = ["AllowEntry", "parse_allowed_hosts"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_NAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_LEGACY_V4 = re.compile(r"(0[xX][0-9a-fA-F]*|[0-9]+)(\.(0[xX][0-9a-fA-F]*|[0-9]+)){0,3}")
_FORMS = (
    "a host name, *.suffix, an IP literal ([::1] for IPv6 with a port) or a CIDR network, optionally "
    "with :PORT "
    "(e.g. 'images.internal', '*.corp.example', '127.0.0.1:8080', '[::1]:8443', '10.0.0.0/8')"
)


@dataclass(frozen=True)
class AllowEntry:
    """One parsed allow-list entry.

    Attributes:
        kind: ``"name"``, ``"suffix"`` (wildcard), ``"ip"`` or ``"net"``.
        name: Lower-case host name (for ``name``) or suffix without ``*.`` (for ``suffix``).
        ip: The address of an ``ip`` entry.
        net: The network of a ``net`` entry.
        port: Only this port matches; None: every port.
    """

    kind: str
    name: str = ""
    ip: IPAddress | None = None
    net: IPNetwork | None = None
    port: int | None = None

    def matches(self, host: str, port: int, addresses: Sequence[IPAddress]) -> bool:
        """Whether a URL's host (lower-case, IDNA-encoded), effective port and resolved addresses match."""
        if self.port is not None and port != self.port:
            return False
        name = host.lower().strip("[]").rstrip(".")
        if self.kind == "name":
            return name == self.name
        if self.kind == "suffix":
            return name.endswith("." + self.name)
        if self.kind == "ip":
            return _literal(name) == self.ip
        assert self.net is not None
        return bool(addresses) and all(a in self.net for a in addresses)

    def __str__(self) -> str:
        if self.kind == "net":
            return str(self.net)
        if self.kind == "ip":
            host = (
                f"[{self.ip}]"
                if isinstance(self.ip, ipaddress.IPv6Address) and self.port is not None
                else str(self.ip)
            )
        else:
            host = self.name if self.kind == "name" else f"*.{self.name}"
        return host if self.port is None else f"{host}:{self.port}"


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if _LEGACY_V4.fullmatch(host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def _refuse(entry: object, why: str) -> AllowedHostsError:
    return AllowedHostsError(f"allowed_hosts entry {entry!r} is not {_FORMS}: {why}.")


def _port(text: str, entry: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise _refuse(entry, f"port {text!r} is not a number from 1 to 65535")
    return int(text)


def _parse_one(entry: object) -> AllowEntry:
    if not isinstance(entry, str):
        raise _refuse(entry, f"it is a {type(entry).__name__}, not a string")
    e = entry.strip().lower()
    if not e:
        raise _refuse(entry, "it is empty")
    if not e.isascii():
        raise _refuse(entry, "write international names in their IDNA (xn--) form")
    if "/" in e:
        try:
            return AllowEntry("net", net=ipaddress.ip_network(e, strict=False))
        except ValueError:
            raise _refuse(
                entry, "it has a '/' but is not a CIDR network (URLs and paths are not hosts)"
            ) from None
    port: int | None = None
    if e.startswith("["):
        host, close, rest = e[1:].partition("]")
        if not close or (rest and not rest.startswith(":")):
            raise _refuse(entry, "a bracketed IPv6 address must look like [::1] or [::1]:PORT")
        if rest:
            port = _port(rest[1:], entry)
        ip = _literal(host)
        if not isinstance(ip, ipaddress.IPv6Address):
            raise _refuse(entry, f"{host!r} in brackets is not an IPv6 address")
        return AllowEntry("ip", ip=ip, port=port)
    if e.count(":") > 1:  # a bare IPv6 literal (no port possible without brackets)
        ip = _literal(e)
        if ip is None:
            raise _refuse(
                entry, "it is not an IPv6 address; write [addr]:PORT for an IPv6 address with a port"
            )
        return AllowEntry("ip", ip=ip)
    if ":" in e:
        e, _, port_text = e.partition(":")
        port = _port(port_text, entry)
    e = e.rstrip(".")
    if e.startswith("*."):
        suffix = e[2:]
        if not _NAME.fullmatch(suffix):
            raise _refuse(entry, f"{suffix!r} is not a domain name")
        return AllowEntry("suffix", name=suffix, port=port)
    if (ip := _literal(e)) is not None:
        return AllowEntry("ip", ip=ip, port=port)
    if not _NAME.fullmatch(e) or "*" in e:
        raise _refuse(entry, "it is not a valid host name (a wildcard is written *.suffix)")
    return AllowEntry("name", name=e, port=port)


def parse_allowed_hosts(entries: Iterable[object]) -> tuple[AllowEntry, ...]:
    """Parse allow-list entries; raise :class:`~ras_guard.errors.AllowedHostsError` on the first bad one.

    Example:
        >>> parse_allowed_hosts(["images.internal:443"])[0].port
        443
    """
    if isinstance(entries, (str, bytes)):
        raise AllowedHostsError(
            f"allowed_hosts must be a list of entries, got the string {entries!r}; write [{entries!r}]."
        )
    return tuple(_parse_one(e) for e in entries)
