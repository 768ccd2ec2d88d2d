"""HTTPS image fetches through ``ras_guard.fetch``: one shared verifying SSL context by default, a policy's own
context (trusting a private CA) when given; a local TLS server on 127.0.0.1 with a self-signed certificate."""

from __future__ import annotations

import pytest

from ras_guard.errors import ImageFetchError
from ras_guard.fetch import FetchPolicy, ImageFetcher, shared_ssl_context
from ras_guard.testing.tls import openssl_available, tls_image_server

pytestmark = pytest.mark.skipif(not openssl_available(), reason="needs the openssl command line tool")
BODY = b"\x89PNG\r\n\x1a\n" + b"x" * 500


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    with tls_image_server(BODY, tmp_path_factory.mktemp("tls")) as (url, context):
        yield url, context


def _policy(url: str, **kw) -> FetchPolicy:
    return FetchPolicy(allowed_hosts=(url.split("/")[2],), timeout=5.0, max_retries=0, **kw)


def test_a_policy_context_trusting_the_local_ca_fetches(tls):
    url, context = tls
    fetcher = ImageFetcher(_policy(url, ssl_context=context))
    assert [fetcher.fetch(url) for _ in range(3)] == [BODY] * 3


def test_the_shared_default_context_verifies_certificates(tls):
    url, _ = tls
    with pytest.raises(ImageFetchError, match="CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
        ImageFetcher(_policy(url)).fetch(url)
    assert shared_ssl_context() is shared_ssl_context()  # built once, reused by every fetch
    assert shared_ssl_context().verify_mode.name == "CERT_REQUIRED" and shared_ssl_context().check_hostname
