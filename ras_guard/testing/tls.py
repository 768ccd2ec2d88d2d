"""A local HTTPS image server for tests and benchmarks: a self-signed certificate for ``127.0.0.1``.

The certificate is made by the ``openssl`` command line tool (no Python dependency); the server is the standard
library's ``http.server`` wrapped in TLS, bound to 127.0.0.1 on a random port, serving one body at every path.

Example:
    >>> with tls_image_server(b"\\x89PNG...", tmp_dir) as (url, context):  # doctest: +SKIP
    ...     ImageFetcher(FetchPolicy(allowed_hosts=(url.split("/")[2],), ssl_context=context)).fetch(url)
"""

from __future__ import annotations

import contextlib
import http.server
import os
import shutil
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

__all__ = ["openssl_available", "self_signed_cert", "tls_image_server"]


def openssl_available() -> bool:
    """Whether the ``openssl`` command line tool is on ``PATH``."""
    return shutil.which("openssl") is not None


def self_signed_cert(folder: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Write ``cert.pem`` / ``key.pem`` (EC P-256, one day, subjectAltName IP:127.0.0.1) into ``folder``.

    Raises:
        FileNotFoundError: ``openssl`` is not installed.
        subprocess.CalledProcessError: ``openssl`` failed.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    return cert, key


def _handler(body: bytes) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@contextlib.contextmanager
def tls_image_server(body: bytes, folder: str | os.PathLike[str]) -> Iterator[tuple[str, ssl.SSLContext]]:
    """Serve ``body`` over HTTPS on 127.0.0.1; yields ``(url, client context trusting the certificate)``.

    Args:
        body: The bytes every GET answers with.
        folder: Where the certificate and key are written.
    """
    cert, key = self_signed_cert(folder)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(body))
    srv.daemon_threads = True
    srv.socket = server_ctx.wrap_socket(srv.socket, server_side=True)
    thread = threading.Thread(target=srv.serve_forever, name="ras-guard-tls-images", daemon=True)
    thread.start()
    client_ctx = ssl.create_default_context(cafile=str(cert))
    try:
        yield f"https://127.0.0.1:{srv.server_address[1]}/image.png", client_ctx
    finally:
        srv.shutdown()
        srv.server_close()
