"""Fetch deadline over headers/TLS (slow servers), port-exact allow-lists, and redacted errors and log lines.

Every server here is real and binds 127.0.0.1 on a random port; each test stops the servers it starts.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from langchain_core.messages import HumanMessage
from lc_ras_testing import FakeGuard, LocalServer, Route, b64, png_bytes
from ras_guard.errors import AllowedHostsError, ImageFetchError, InvalidMessageError, UnsafeURLError
from ras_guard.fetch import FetchPolicy, ImageFetcher, parse_allowed_hosts

from langchain_ras_guard import RASGuardedChatModel, RiskLoggingCallbackHandler
from langchain_ras_guard._images import decode_data_uri

PNG = png_bytes()


class DribbleServer:
    """A raw TCP server that answers every connection with ``payload``, one byte every ``interval`` seconds.

    It gives up after ``max_seconds`` per connection (so the old, unbounded code fails the time assert in
    seconds instead of minutes) and records when each client closed its end.
    """

    def __init__(self, payload: bytes, interval: float = 0.2, max_seconds: float = 8.0) -> None:
        self.payload, self.interval, self.max_seconds = payload, interval, max_seconds
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.closed_by_client: list[float] = []
        self.threads: list[threading.Thread] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            t = threading.Thread(target=self._dribble, args=(conn,), daemon=True)
            self.threads.append(t)
            t.start()

    def _dribble(self, conn: socket.socket) -> None:
        start = time.monotonic()
        conn.settimeout(self.interval)
        try:
            for i in range(len(self.payload)):
                if self.stop.is_set() or time.monotonic() - start > self.max_seconds:
                    return
                try:
                    if conn.recv(65536, socket.MSG_DONTWAIT) == b"":  # the client closed its end
                        self.closed_by_client.append(time.monotonic())
                        return
                except (BlockingIOError, TimeoutError):
                    pass
                conn.sendall(self.payload[i : i + 1])
                time.sleep(self.interval)
        except OSError:  # reset by the client
            self.closed_by_client.append(time.monotonic())
        finally:
            conn.close()

    def __enter__(self) -> DribbleServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(2)
        for t in self.threads:
            t.join(2)
        self.sock.close()


SLOW_HEADERS = b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nX-Padding: " + b"a" * 400 + b"\r\n\r\n"
# A TLS handshake record header announcing 16 KiB, then junk: the client's handshake reads never end.
SLOW_TLS = b"\x16\x03\x03\x40\x00" + b"\x02" * 2000


def _fetch_deadline_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "ras-guard-fetch-deadline"]


@pytest.mark.parametrize(
    ("scheme", "payload"), [("http", SLOW_HEADERS), ("https", SLOW_TLS)], ids=["headers", "tls-handshake"]
)
def test_slow_status_line_and_headers_hit_the_deadline(scheme: str, payload: bytes) -> None:
    """A server dribbling one byte every 0.2 s used to hold the fetch for minutes with timeout=1."""
    timeout = 1.0
    with DribbleServer(payload) as srv:
        fetcher = ImageFetcher(FetchPolicy(allowed_hosts=("127.0.0.1",), timeout=timeout, max_retries=1))
        start = time.monotonic()
        with pytest.raises(ImageFetchError, match="timed out"):
            fetcher.fetch(f"{scheme}://127.0.0.1:{srv.port}/slow.png")
        elapsed = time.monotonic() - start
        assert elapsed < 3 * timeout, f"fetch took {elapsed:.1f} s with a {timeout} s deadline"
        deadline = time.monotonic() + 2
        while not srv.closed_by_client and time.monotonic() < deadline:
            time.sleep(0.05)
        assert srv.closed_by_client, "the client never closed the connection"
        assert srv.closed_by_client[0] - start < 3 * timeout + 0.5
    assert _fetch_deadline_threads() == []  # the watchdog does not outlive the fetch


def test_deadline_leaves_normal_fetches_alone() -> None:
    with LocalServer() as srv:
        srv.routes["/img.png"] = Route(200, PNG, {"Content-Type": "image/png"})
        fetcher = ImageFetcher(FetchPolicy(allowed_hosts=("127.0.0.1",), timeout=5))
        for _ in range(3):
            assert fetcher.fetch(srv.url("/img.png")) == PNG
    assert _fetch_deadline_threads() == []


# ------------------------------------------------------------------------------------------- allow-list ports


@pytest.fixture
def two_servers() -> Iterator[tuple[LocalServer, LocalServer]]:
    with LocalServer() as a, LocalServer() as b:
        for srv in (a, b):
            srv.routes["/img.png"] = Route(200, PNG, {"Content-Type": "image/png"})
        a.routes["/to-b"] = Route(302, b"", {"Location": b.url("/img.png")})
        a.routes["/to-a"] = Route(302, b"", {"Location": "/img.png"})
        yield a, b


def test_host_port_entry_admits_exactly_that_port(two_servers: tuple[LocalServer, LocalServer]) -> None:
    a, b = two_servers
    fetcher = ImageFetcher(FetchPolicy(allowed_hosts=(f"127.0.0.1:{a.port}",)))
    assert fetcher.fetch(a.url("/img.png")) == PNG
    assert fetcher.fetch(a.url("/to-a")) == PNG  # same-port redirect is fine
    with pytest.raises(UnsafeURLError, match=f"127.0.0.1:{b.port} matches no allowed_hosts entry"):
        fetcher.fetch(b.url("/img.png"))
    assert b.hits == []


def test_redirect_from_allowed_port_to_another_is_refused(
    two_servers: tuple[LocalServer, LocalServer],
) -> None:
    a, b = two_servers
    fetcher = ImageFetcher(FetchPolicy(allowed_hosts=(f"127.0.0.1:{a.port}",)))
    with pytest.raises(UnsafeURLError, match=str(b.port)):
        fetcher.fetch(a.url("/to-b"))
    assert a.hits == ["/to-b"] and b.hits == []
    # a name entry with a port, and an entry without one (every port), still work
    assert (
        ImageFetcher(FetchPolicy(allowed_hosts=(f"localhost:{a.port}",))).fetch(
            f"http://localhost:{a.port}/img.png"
        )
        == PNG
    )
    assert ImageFetcher(FetchPolicy(allowed_hosts=("127.0.0.1",))).fetch(a.url("/to-b")) == PNG


@pytest.mark.parametrize(
    "entry",
    [
        "127.0.0.1:abc",
        "127.0.0.1:0",
        "127.0.0.1:70000",
        "http://images.example.com",
        "images.example.com/cats",
        "10.0.0.0/33",
        "*",
        "*.",
        "",
        "[::1",
        "[127.0.0.1]:80",
        "::1:8080:zz",
        "bad_host!.example",
        "exämple.com",
    ],
)
def test_unparsable_entries_raise_at_configuration_time(entry: str) -> None:
    with pytest.raises(AllowedHostsError, match="allowed_hosts entry"):
        FetchPolicy(allowed_hosts=(entry,))
    with pytest.raises(ValueError, match="allowed_hosts entry"):
        RASGuardedChatModel(guard=FakeGuard(), allowed_hosts=[entry])


def test_entry_forms_parse() -> None:
    parsed = parse_allowed_hosts(["[::1]:8443", "::1", "*.corp.example:443", "Images.Internal.", "fd00::/8"])
    assert [(e.kind, e.port) for e in parsed] == [
        ("ip", 8443),
        ("ip", None),
        ("suffix", 443),
        ("name", None),
        ("net", None),
    ]
    assert parsed[3].name == "images.internal"
    with pytest.raises(AllowedHostsError, match="list of entries"):
        parse_allowed_hosts("127.0.0.1")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------ redaction

SECRET_URL = (
    "http://alice:hunter2@127.0.0.1:{port}/missing.png"
    "?X-Amz-Credential=AKIAEXAMPLE&X-Amz-Signature=3f5a9c0e8d7b6a5f4e3d2c1b0a998877665544332211ffeeddccbbaa00112233"
)
SECRETS = ("hunter2", "3f5a9c0e8d7b6a5f4e3d2c1b0a9988", "AKIAEXAMPLE")
DATA_B64 = b64(PNG)
BAD_DATA_URI = "data:image/png;base64" + DATA_B64  # no comma: malformed


def _assert_clean(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret!r} leaked into {text!r}"
    for i in range(0, len(DATA_B64) - 12, 4):  # no run of 12 characters of the base64 payload
        assert DATA_B64[i : i + 12] not in text, f"base64 leaked into {text!r}"


def test_fetch_errors_do_not_quote_credentials_or_signatures() -> None:
    with LocalServer() as srv:
        url = SECRET_URL.format(port=srv.port)
        with pytest.raises(ImageFetchError) as info:
            ImageFetcher(FetchPolicy(allowed_hosts=("127.0.0.1",))).fetch(url)
        assert "HTTP 404" in str(info.value) and "X-Amz-Signature=***" in str(info.value)
        _assert_clean(str(info.value))
        with pytest.raises(UnsafeURLError) as info:
            ImageFetcher(FetchPolicy()).fetch(url)  # loopback refused
        _assert_clean(str(info.value))


def test_malformed_data_uri_error_quotes_no_base64() -> None:
    with pytest.raises(InvalidMessageError, match="malformed data URI") as info:
        decode_data_uri(BAD_DATA_URI, 10**6)
    _assert_clean(str(info.value))


def test_safety_log_error_field_is_redacted(tmp_path: Path) -> None:
    log_path = tmp_path / "safety.jsonl"
    llm = RASGuardedChatModel(guard=FakeGuard(), allowed_hosts=["127.0.0.1"])
    with LocalServer() as srv, RiskLoggingCallbackHandler(log_path) as log:
        for block in (
            {"type": "image", "url": SECRET_URL.format(port=srv.port)},
            {"type": "image", "url": BAD_DATA_URI},
        ):
            with pytest.raises((ImageFetchError, InvalidMessageError)) as info:
                llm.invoke([HumanMessage(content=[block, "what is this?"])], config={"callbacks": [log]})
            _assert_clean(str(info.value))
    text = log_path.read_text()
    lines = [json.loads(line) for line in text.splitlines()]
    assert [line["decision"] for line in lines] == ["error", "error"]
    assert "X-Amz-Signature=***" in lines[0]["error"] and "malformed data URI" in lines[1]["error"]
    _assert_clean(text)
