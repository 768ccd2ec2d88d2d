"""SSRF-safe image fetching against a real HTTP server on 127.0.0.1 (and mock transports for public hops).

No test sends traffic to any address other than 127.0.0.1: "public" hosts are answered by an
``httpx.MockTransport`` and resolved by a fake resolver.
"""

from __future__ import annotations

import ipaddress

import httpx
import pytest
from lc_ras_testing import LocalServer, Route, png_bytes
from ras_guard.errors import CorruptImageError, ImageFetchError, ImageTooLargeError, UnsafeURLError
from ras_guard.fetch import FetchPolicy, ImageFetcher, blocked_reason, ip_literal

from langchain_ras_guard._images import ImageResolver, check_image_header, decode_base64, decode_data_uri

PNG = png_bytes()
PUBLIC_IP = "93.184.216.34"


def _no_dns(host: str, port: int) -> list[str]:
    raise AssertionError(f"DNS must not be used for {host!r}")


def _no_network(request: httpx.Request) -> httpx.Response:
    raise AssertionError(f"no request may be sent, got {request.url}")


@pytest.fixture
def server():
    with LocalServer() as srv:
        srv.routes["/img.png"] = Route(200, PNG, {"Content-Type": "image/png"})
        yield srv


def test_allow_listed_loopback_fetch_works(server: LocalServer) -> None:
    fetcher = ImageFetcher(FetchPolicy(allowed_hosts=("127.0.0.1",)))
    assert fetcher.fetch(server.url("/img.png")) == PNG
    assert server.hits == ["/img.png"]


def test_allow_listed_by_cidr(server: LocalServer) -> None:
    assert ImageFetcher(FetchPolicy(allowed_hosts=("127.0.0.0/8",))).fetch(server.url("/img.png")) == PNG


def test_loopback_refused_without_any_request(server: LocalServer) -> None:
    with pytest.raises(UnsafeURLError, match="loopback"):
        ImageFetcher(FetchPolicy()).fetch(server.url("/img.png"))
    with pytest.raises(UnsafeURLError):
        ImageFetcher(FetchPolicy()).fetch(f"http://localhost:{server.port}/img.png")
    assert server.hits == []


def test_allow_private_urls_fetches(server: LocalServer) -> None:
    assert ImageFetcher(FetchPolicy(allow_private=True)).fetch(server.url("/img.png")) == PNG


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/x.png",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/x.png",
        "http://10.0.0.1/x.png",
        "http://172.16.5.4/x.png",
        "http://192.168.1.1/x.png",
        "http://2130706433/x.png",  # decimal 127.0.0.1
        "http://0x7f000001/x.png",  # hex
        "http://0177.0.0.1/x.png",  # octal
        "http://127.1/x.png",  # short form
        "http://[::ffff:127.0.0.1]/x.png",  # IPv4-mapped IPv6
        "http://[::ffff:a9fe:a9fe]/x.png",  # IPv4-mapped metadata address
        "http://[2002:7f00:1::]/x.png",  # 6to4 around 127.0.0.1
        "http://[64:ff9b::a00:1]/x.png",  # NAT64 around 10.0.0.1
        "http://0.0.0.0/x.png",
        "http://[::]/x.png",
        "http://224.0.0.1/x.png",
        "http://100.64.0.1/x.png",  # shared address space (CGNAT)
        "http://[fe80::1]/x.png",
        "http://[fc00::1]/x.png",
        "http://240.0.0.1/x.png",  # reserved
    ],
)
def test_internal_addresses_refused_without_dns_or_request(url: str) -> None:
    fetcher = ImageFetcher(FetchPolicy(resolver=_no_dns, transport=httpx.MockTransport(_no_network)))
    with pytest.raises(UnsafeURLError):
        fetcher.fetch(url)


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.com/a.png", "gopher://example.com/"])
def test_non_http_schemes_refused(url: str) -> None:
    with pytest.raises(UnsafeURLError, match="scheme"):
        ImageFetcher(FetchPolicy(resolver=_no_dns)).fetch(url)


def test_name_with_any_private_address_refused() -> None:
    policy = FetchPolicy(
        resolver=lambda h, p: [PUBLIC_IP, "10.1.2.3"], transport=httpx.MockTransport(_no_network)
    )
    with pytest.raises(UnsafeURLError, match="10.1.2.3"):
        ImageFetcher(policy).fetch("http://dual.example/x.png")


def test_public_host_redirecting_to_loopback_is_refused(server: LocalServer) -> None:
    seen: list[httpx.Request] = []

    def public_hop(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(302, headers={"Location": server.url("/img.png")})

    policy = FetchPolicy(resolver=lambda h, p: [PUBLIC_IP], transport=httpx.MockTransport(public_hop))
    with pytest.raises(UnsafeURLError, match="loopback"):
        ImageFetcher(policy).fetch("http://images.example.com/cat.png")
    assert len(seen) == 1 and seen[0].url.host == PUBLIC_IP  # only the public hop was requested
    assert server.hits == []


def test_redirect_to_a_name_resolving_privately_is_refused() -> None:
    seen: list[str] = []

    def transport(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(301, headers={"Location": "http://intranet.example/secret.png"})

    resolver = {"images.example.com": [PUBLIC_IP], "intranet.example": ["192.168.0.10"]}
    policy = FetchPolicy(resolver=lambda h, p: resolver[h], transport=httpx.MockTransport(transport))
    with pytest.raises(UnsafeURLError, match="192.168.0.10"):
        ImageFetcher(policy).fetch("http://images.example.com/a.png")
    assert len(seen) == 1


def test_connection_is_pinned_to_the_checked_address() -> None:
    """DNS rebinding: a second, private answer is never used; the request goes to the checked IP."""
    answers = iter([[PUBLIC_IP], ["127.0.0.1"]])
    calls: list[str] = []
    seen: list[httpx.Request] = []

    def resolver(host: str, port: int) -> list[str]:
        calls.append(host)
        return next(answers)

    def transport(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, stream=httpx.ByteStream(PNG))

    policy = FetchPolicy(resolver=resolver, transport=httpx.MockTransport(transport))
    assert ImageFetcher(policy).fetch("https://cdn.example.com:8443/a.png?x=1") == PNG
    assert calls == ["cdn.example.com"]
    req = seen[0]
    assert req.url.host == PUBLIC_IP and req.url.port == 8443 and req.url.path == "/a.png"
    assert req.headers["host"] == "cdn.example.com:8443"
    assert req.extensions["sni_hostname"] == "cdn.example.com"


def test_same_host_redirect_followed_and_loop_bounded(server: LocalServer) -> None:
    server.routes["/r1"] = Route(302, b"", {"Location": "/img.png"})
    server.routes["/loop"] = Route(302, b"", {"Location": "/loop"})
    fetcher = ImageFetcher(FetchPolicy(allowed_hosts=("127.0.0.1",), max_redirects=3))
    assert fetcher.fetch(server.url("/r1")) == PNG
    with pytest.raises(ImageFetchError, match="redirected more than 3"):
        fetcher.fetch(server.url("/loop"))
    assert server.hits.count("/loop") == 4


def test_5xx_retried_then_succeeds(server: LocalServer) -> None:
    server.routes["/flaky.png"] = Route(200, PNG, fail_first=2)
    assert (
        ImageFetcher(FetchPolicy(allowed_hosts=("127.0.0.1",), max_retries=2)).fetch(server.url("/flaky.png"))
        == PNG
    )
    assert server.hits == ["/flaky.png"] * 3


def test_4xx_not_retried(server: LocalServer) -> None:
    with pytest.raises(ImageFetchError, match="HTTP 404"):
        ImageFetcher(FetchPolicy(allowed_hosts=("127.0.0.1",), max_retries=3)).fetch(
            server.url("/missing.png")
        )
    assert server.hits == ["/missing.png"]


def test_connect_errors_retried_then_reported() -> None:
    attempts: list[int] = []

    def refuse(request: httpx.Request) -> httpx.Response:
        attempts.append(1)
        raise httpx.ConnectError("refused", request=request)

    policy = FetchPolicy(
        resolver=lambda h, p: [PUBLIC_IP], transport=httpx.MockTransport(refuse), max_retries=2
    )
    with pytest.raises(ImageFetchError, match="failed"):
        ImageFetcher(policy).fetch("http://images.example.com/a.png")
    assert len(attempts) == 3


def test_declared_oversize_refused_before_reading(server: LocalServer) -> None:
    server.routes["/big.png"] = Route(200, b"x" * 5000, {"Content-Length": "5000"})
    with pytest.raises(ImageTooLargeError, match="declares 5000"):
        ImageFetcher(FetchPolicy(allowed_hosts=("127.0.0.1",), max_bytes=1000)).fetch(server.url("/big.png"))


def test_undeclared_oversize_stops_reading(server: LocalServer) -> None:
    server.routes["/stream.png"] = Route(200, b"x" * 3_000_000)  # HTTP/1.0, no Content-Length
    with pytest.raises(ImageTooLargeError, match="stopped reading"):
        ImageFetcher(FetchPolicy(allowed_hosts=("127.0.0.1",), max_bytes=100_000)).fetch(
            server.url("/stream.png")
        )


def test_compressed_response_refused() -> None:
    def gz(request: httpx.Request) -> httpx.Response:
        assert request.headers["accept-encoding"] == "identity"
        return httpx.Response(
            200, stream=httpx.ByteStream(b"\x1f\x8b..."), headers={"Content-Encoding": "gzip"}
        )

    policy = FetchPolicy(resolver=lambda h, p: [PUBLIC_IP], transport=httpx.MockTransport(gz))
    with pytest.raises(ImageFetchError, match="Content-Encoding"):
        ImageFetcher(policy).fetch("http://images.example.com/a.png")


def test_slow_server_times_out(server: LocalServer) -> None:
    server.routes["/slow.png"] = Route(200, PNG, delay=2.0)
    with pytest.raises(ImageFetchError, match="timed out"):
        ImageFetcher(FetchPolicy(allowed_hosts=("127.0.0.1",), timeout=0.3, max_retries=0)).fetch(
            server.url("/slow.png")
        )


def test_corrupt_and_huge_images_refused_from_header() -> None:
    with pytest.raises(CorruptImageError):
        check_image_header(b"this is not an image", 1000)
    with pytest.raises(ImageTooLargeError, match="pixels"):
        check_image_header(png_bytes(size=(100, 100)), 99 * 99)
    check_image_header(PNG, 16 * 12)


def test_resolver_checks_fetched_bytes(server: LocalServer) -> None:
    server.routes["/notimg.png"] = Route(200, b"<html>hello</html>", {"Content-Type": "text/html"})
    resolve = ImageResolver(FetchPolicy(allowed_hosts=("127.0.0.1",)))
    with pytest.raises(CorruptImageError):
        resolve({"url": server.url("/notimg.png")}, "img")
    assert resolve({"url": server.url("/img.png")}, "img") == PNG


def test_base64_and_data_uris() -> None:
    assert decode_base64("aGk=", 10) == b"hi"
    assert decode_base64("aGk", 10) == b"hi"  # padding restored
    assert decode_base64("a G\nk=", 10) == b"hi"
    with pytest.raises(ImageTooLargeError):
        decode_base64("A" * 4000, 100)
    with pytest.raises(CorruptImageError):
        decode_base64("!!!not base64!!!", 100)
    assert decode_data_uri("data:image/png;base64,aGk=", 10) == b"hi"
    assert decode_data_uri("data:image/png,%68%69", 10) == b"hi"
    with pytest.raises(ValueError, match="media type"):
        decode_data_uri("data:text/html;base64,aGk=", 10)


def test_address_helpers() -> None:
    assert str(ip_literal("2130706433")) == "127.0.0.1"
    assert str(ip_literal("0x7f.1")) == "127.0.0.1"
    assert ip_literal("example.com") is None
    assert ip_literal("123.example.com") is None
    assert blocked_reason(ipaddress.ip_address("8.8.8.8")) is None
    assert blocked_reason(ipaddress.ip_address("2606:4700:4700::1111")) is None
    assert "loopback" in (blocked_reason(ipaddress.ip_address("::ffff:127.0.0.1")) or "")


def test_resolution_is_bounded_in_time() -> None:
    import time

    def slow(host: str, port: int) -> list[str]:
        time.sleep(2)
        return [PUBLIC_IP]

    start = time.monotonic()
    with pytest.raises(ImageFetchError, match="resolving"):
        ImageFetcher(FetchPolicy(resolver=slow, timeout=0.2)).fetch("http://slow-dns.example/a.png")
    assert time.monotonic() - start < 1.5


def test_resolution_errors_are_fetch_errors() -> None:
    def fail(host: str, port: int) -> list[str]:
        raise OSError("Name or service not known")

    with pytest.raises(ImageFetchError, match="cannot resolve"):
        ImageFetcher(FetchPolicy(resolver=fail)).fetch("http://nowhere.example/a.png")
