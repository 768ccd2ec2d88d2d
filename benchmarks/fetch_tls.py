"""What one shared ``ssl.SSLContext`` saves per fetched image: ``ras_guard.fetch`` against a local TLS server.

Before, every fetch attempt built its own verifying context (``httpx.create_ssl_context``: loading certifi's CA
bundle), for http and https URLs alike; now :func:`ras_guard.fetch.shared_ssl_context` is built once. Both modes
fetch the same image from a local HTTPS server on 127.0.0.1 (self-signed certificate,
:mod:`ras_guard.testing.tls`), alternating fetch by fetch so drifts of a shared machine hit both alike:

* ``per_fetch``: the old cost: a new ``create_ssl_context(trust_env=False)`` per fetch (plus trusting the local
  certificate, which a real CA would not need; measured and reported separately as ``trust_local_ms``);
* ``shared``: one context, built once.

Reported: median ms per fetched image in each mode, their ratio, and ``context_build_ms`` (the median time to
build one context alone). Usage::

    python -m benchmarks.fetch_tls --fetches 200 --json benchmarks/results/fetch_tls_cpu.json
"""

from __future__ import annotations

import argparse
import json
import platform
import ssl
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from ras_guard.fetch import FetchPolicy, ImageFetcher
from ras_guard.testing.tls import tls_image_server

BODY = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 16  # about 4 KB, a small image


def _ms(xs: list[float]) -> float:
    return round(statistics.median(xs) * 1000, 3)


def _fetch(url: str, context: ssl.SSLContext) -> float:
    policy = FetchPolicy(allowed_hosts=(url.split("/")[2],), timeout=10.0, max_retries=0, ssl_context=context)
    t = time.perf_counter()
    ImageFetcher(policy).fetch(url)
    return time.perf_counter() - t


def run(fetches: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp, tls_image_server(BODY, tmp) as (url, shared):
        cafile = str(Path(tmp) / "cert.pem")
        per_fetch, shared_t, build, trust = [], [], [], []
        for _ in range(5):  # warm-up: connections, imports, page cache
            _fetch(url, shared)
        for _ in range(fetches):
            t = time.perf_counter()
            ctx = httpx.create_ssl_context(trust_env=False)
            built = time.perf_counter()
            ctx.load_verify_locations(cafile)
            trusted = time.perf_counter()
            per_fetch.append(trusted - t + _fetch(url, ctx) - (trusted - built))  # without the local trust step
            build.append(built - t)
            trust.append(trusted - built)
            shared_t.append(_fetch(url, shared))
    return {
        "benchmark": "fetch_tls", "fetches": fetches, "image_bytes": len(BODY),
        "per_fetch_ms": _ms(per_fetch), "shared_ms": _ms(shared_t),
        "ratio_shared_to_per_fetch": round(statistics.median(shared_t) / statistics.median(per_fetch), 3),
        "context_build_ms": _ms(build), "trust_local_ms": _ms(trust),
        "machine": {"python": platform.python_version(), "processor": platform.processor() or platform.machine()},
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.fetch_tls", description=__doc__.split("\n\n")[0])
    p.add_argument("--fetches", type=int, default=200, help="fetches per mode (200)")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    doc = run(args.fetches)
    print(json.dumps(doc, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
