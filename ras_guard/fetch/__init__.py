"""SSRF-safe fetching of image URLs (the server's ``--allow-image-urls`` and the LangChain package use it).

The rest of the core never fetches URLs. This subpackage does, under a :class:`FetchPolicy`: a byte limit, one
wall-clock deadline over DNS, connect, TLS, headers, redirects and body, every address of every redirect hop
checked against internal ranges (loopback, private, link-local...), the connection pinned to the checked
address, and an allow-list (names, ``*.suffix``, IP literals, CIDR networks, optionally with ``:PORT``).

Modules: :mod:`.allow` (allow-list entries), :mod:`.policy` (limits and address rules), :mod:`.deadline`
(sockets that obey the deadline), :mod:`.fetcher` (:class:`ImageFetcher`). Needs httpx and tenacity (the
``serve`` extra, or the LangChain package).

Example:
    >>> fetcher = ImageFetcher(FetchPolicy(allowed_hosts=("127.0.0.1:8080",), timeout=5.0))
    >>> fetcher.fetch("http://127.0.0.1:8080/cat.png")  # doctest: +SKIP
    b'\\x89PNG...'
"""

from __future__ import annotations

from .allow import AllowEntry, parse_allowed_hosts
from .deadline import Deadline, DeadlineTransport, shared_ssl_context
from .fetcher import ImageFetcher
from .policy import FetchPolicy, OptionNames, blocked_reason, ip_literal, system_resolver

__all__ = [
    "AllowEntry",
    "Deadline",
    "DeadlineTransport",
    "FetchPolicy",
    "ImageFetcher",
    "OptionNames",
    "blocked_reason",
    "ip_literal",
    "parse_allowed_hosts",
    "shared_ssl_context",
    "system_resolver",
]
