"""The image fetcher of the core (:mod:`ras_guard.fetch`), re-exported under its former path (private).

The SSRF-safe fetcher moved into the core so the server (``ras-guard serve --allow-image-urls``) and this
package share one implementation; the names stay importable from here.

Example:
    >>> from langchain_ras_guard._fetch import FetchPolicy
    >>> FetchPolicy().timeout
    10.0
"""

from __future__ import annotations

from ras_guard.fetch import (
    AllowEntry,
    FetchPolicy,
    ImageFetcher,
    blocked_reason,
    ip_literal,
    parse_allowed_hosts,
    system_resolver,
)

__all__ = [
    "AllowEntry",
    "FetchPolicy",
    "ImageFetcher",
    "blocked_reason",
    "ip_literal",
    "parse_allowed_hosts",
    "system_resolver",
]
