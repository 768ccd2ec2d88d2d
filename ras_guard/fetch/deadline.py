"""A wall-clock deadline over a whole image download: connect, TLS, status line, headers and body.

httpx's timeouts are per operation: a server that sends its status line or headers one byte every 0.2 s never
trips a 2 s read timeout and can hold a fetch for minutes. Two layers close that hole:

* :class:`DeadlineTransport` is an ``httpx.HTTPTransport`` whose sockets come from a network backend that caps
  every connect, read and write at the time left before the deadline, and refuses to start one once it passed
  (``httpcore.ReadTimeout`` / ``WriteTimeout`` / ``ConnectTimeout``).
* :class:`Deadline` is also a watchdog: when the deadline passes it shuts down every socket opened under it
  (``shutdown(SHUT_RDWR)`` on a duplicate of the descriptor, which also wakes a read blocked inside a TLS
  handshake), so nothing can block past it. Leaving the ``with`` block cancels the timer and closes the
  duplicates: no thread or socket outlives the fetch.

TLS: every transport uses one :class:`ssl.SSLContext` (:func:`shared_ssl_context`, built on first use: loading
the CA bundle costs milliseconds, more than a small image fetch), unless the policy passes its own.

Example:
    >>> with Deadline(5.0) as d:
    ...     0 < d.left() <= 5.0
    True
"""

from __future__ import annotations

import functools
import socket
import ssl
import threading
import time
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

__all__ = ["Deadline", "DeadlineTransport", "shared_ssl_context"]


@functools.lru_cache(maxsize=1)
def shared_ssl_context() -> ssl.SSLContext:
    """The one verifying client context of every fetch (certifi's CA bundle, no environment settings).

    Built once per process and reused: an ``SSLContext`` is safe to share between threads, and its CA store is
    never changed after this call.

    Example:
        >>> shared_ssl_context() is shared_ssl_context()
        True
    """
    return httpx.create_ssl_context(trust_env=False)


class Deadline:
    """A point in time (``time.monotonic``) and a watchdog that cuts the sockets registered with it.

    Args:
        seconds: Time from now to the deadline.
    """

    def __init__(self, seconds: float) -> None:
        self.at = time.monotonic() + seconds
        self.expired = False
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        self._timer: threading.Timer | None = None

    def left(self) -> float:
        """Seconds until the deadline (negative once it passed)."""
        return self.at - time.monotonic()

    def __enter__(self) -> Deadline:  # noqa: PYI034 - a final class
        self._timer = threading.Timer(max(self.left(), 0.0), self.expire)
        self._timer.name, self._timer.daemon = "ras-guard-fetch-deadline", True
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer.join()
        with self._lock:
            socks, self._socks = self._socks, []
        for s in socks:
            s.close()

    def register(self, sock: socket.socket) -> None:
        """Watch a connected socket (a duplicate descriptor is kept, so closing the original is fine)."""
        dup = sock.dup()
        with self._lock:
            if not self.expired:
                self._socks.append(dup)
                return
        _shutdown(dup)
        dup.close()

    def expire(self) -> None:
        """Mark the deadline passed and shut down every registered socket (called by the timer)."""
        with self._lock:
            self.expired = True
            socks = list(self._socks)
        for s in socks:
            _shutdown(s)


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:  # already closed or never connected
        pass


def _cap(timeout: float | None, deadline: Deadline, error: type[Exception], what: str) -> float:
    left = deadline.left()
    if left <= 0 or deadline.expired:
        raise error(f"the image deadline passed before {what}")
    return left if timeout is None else min(timeout, left)


class _Stream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream, deadline: Deadline) -> None:
        self._inner, self._deadline = inner, deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        data = self._inner.read(max_bytes, _cap(timeout, self._deadline, httpcore.ReadTimeout, "a read"))
        if not data and self._deadline.expired:  # the watchdog shut the socket down mid-read
            raise httpcore.ReadTimeout("the image deadline passed during a read")
        return data

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _cap(timeout, self._deadline, httpcore.WriteTimeout, "a write"))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        capped = _cap(timeout, self._deadline, httpcore.ConnectTimeout, "the TLS handshake")
        return _Stream(self._inner.start_tls(ssl_context, server_hostname, capped), self._deadline)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _Backend(httpcore.NetworkBackend):
    def __init__(self, deadline: Deadline) -> None:
        self._inner, self._deadline = httpcore.SyncBackend(), deadline

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        capped = _cap(timeout, self._deadline, httpcore.ConnectTimeout, "connecting")
        stream = self._inner.connect_tcp(host, port, capped, local_address, socket_options)
        sock = stream.get_extra_info("socket")
        if isinstance(sock, socket.socket):
            self._deadline.register(sock)
        return _Stream(stream, self._deadline)

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:  # pragma: no cover - image URLs never name unix sockets
        raise httpcore.ConnectError("unix sockets are not used for image URLs")

    def sleep(self, seconds: float) -> None:  # pragma: no cover - httpcore retries are off
        time.sleep(min(seconds, max(self._deadline.left(), 0.0)))


class DeadlineTransport(httpx.HTTPTransport):
    """``httpx.HTTPTransport`` (HTTP/1.1, TLS verified, no proxy) whose socket operations obey a deadline.

    Args:
        deadline: The :class:`Deadline` of the whole fetch.
        ssl_context: The TLS client context (default: :func:`shared_ssl_context`).
    """

    def __init__(self, deadline: Deadline, ssl_context: ssl.SSLContext | None = None) -> None:
        ssl_context = ssl_context or shared_ssl_context()
        super().__init__(verify=ssl_context, trust_env=False)
        self._pool = httpcore.ConnectionPool(  # the same pool httpx builds, with our network backend
            ssl_context=ssl_context,
            max_connections=1,
            http1=True,
            http2=False,
            network_backend=_Backend(deadline),
        )
