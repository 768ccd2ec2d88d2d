"""Images through ``ras-guard serve``: data URIs, http URLs (refused unless ``--allow-image-urls``; fetched from a
local image server the test starts, allow-listed by ``host:port``), limits, corrupt images, several images and turns.

Every refusal is an HTTP 400 with an OpenAI error body whose ``code`` says why, never a 500.
"""

from __future__ import annotations

import http.server
import threading
import time
from typing import ClassVar

import httpx
import openai
import pytest
from _serve_kit import IMAGE_Q, data_uri, demo_guard, drawing, image_message

from ras_guard.serve import ServeSettings, create_app, serve_in_thread

MAX = 16
LIMIT = 4096  # bytes: the demo drawings are a few hundred bytes


class _Images(http.server.BaseHTTPRequestHandler):
    """Serves ``routes`` (path -> (status, headers, body)); ``/slow`` waits before answering."""

    routes: ClassVar[dict[str, tuple[int, dict[str, str], bytes]]] = {}

    def do_GET(self) -> None:
        if self.path == "/slow":
            time.sleep(3.0)
        status, headers, body = self.routes.get(self.path, (404, {}, b"not found"))
        self.send_response(status)
        for k, v in {"Content-Type": "image/png", "Content-Length": str(len(body)), **headers}.items():
            self.send_header(k, v)
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def image_host():
    bomb, cake = drawing("bomb"), drawing("cake")
    _Images.routes = {
        "/bomb.png": (200, {}, bomb),
        "/cake.png": (200, {}, cake),
        "/big.png": (200, {}, b"\x89PNG" + b"0" * (2 * LIMIT)),
        "/corrupt.png": (200, {}, b"\x89PNG\r\n\x1a\n" + b"garbage" * 10),
        "/moved": (302, {"Location": "/cake.png"}, b""),
        "/escape": (302, {"Location": "http://127.0.0.2:9/secret.png"}, b""),
        "/slow": (200, {}, cake),
    }
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Images)
    srv.daemon_threads = True
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield {"base": f"http://127.0.0.1:{srv.server_address[1]}", "port": srv.server_address[1], "bomb": bomb,
           "cake": cake}
    srv.shutdown()
    srv.server_close()


def _multi(a: str | bytes, b: str | bytes) -> list:
    """Two turns, three images as OpenAI JSON (a URL as it is, bytes as a data URI); see ``_guard_multi``."""

    def part(x):
        return {"type": "image_url", "image_url": {"url": x if isinstance(x, str) else data_uri(x)}}

    return (
        [{"role": "user", "content": [part(a), {"type": "text", "text": "What is this?"}]},
         {"role": "assistant", "content": "a drawing ."},
         {"role": "user", "content": [part(b), part(a), {"type": "text", "text": IMAGE_Q}]}]
    )


def _guard_multi(a: bytes, b: bytes) -> list:
    return [{"role": "user", "content": [{"type": "image", "image": a}, {"type": "text", "text": "What is this?"}]},
            {"role": "assistant", "content": "a drawing ."},
            {"role": "user", "content": [{"type": "image", "image": b}, {"type": "image", "image": a},
                                         {"type": "text", "text": IMAGE_Q}]}]


@pytest.fixture(scope="module")
def servers(image_host):
    g = demo_guard()
    bomb, cake = image_host["bomb"], image_host["cake"]
    _, gm_bomb = image_message("bomb")
    expected = {
        "bomb": g.generate([gm_bomb], max_new_tokens=MAX),
        "multi": g.generate(_guard_multi(cake, bomb), max_new_tokens=MAX),
        "cake": g.generate([{"role": "user", "content": [{"type": "image", "image": cake},
                                                         {"type": "text", "text": IMAGE_Q}]}], max_new_tokens=MAX),
    }
    plain = create_app(g, ServeSettings(model_name="demo", max_image_bytes=LIMIT))
    fetching = create_app(g, ServeSettings(model_name="demo", max_image_bytes=LIMIT, allow_image_urls=True,
                                           allowed_image_hosts=(f"127.0.0.1:{image_host['port']}",),
                                           image_timeout_s=1.0))
    with serve_in_thread(plain) as plain_url, serve_in_thread(fetching) as fetch_url:
        yield {"plain": plain_url, "fetch": fetch_url, "expected": expected}


def _client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)


def _post(url: str, messages: list) -> httpx.Response:
    body = {"model": "demo", "messages": messages, "max_tokens": MAX}
    return httpx.post(url + "/v1/chat/completions", json=body, timeout=60)


def _image_turn(url: str) -> list:
    return [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                         {"type": "text", "text": IMAGE_Q}]}]


def _error(r: httpx.Response, code: str) -> dict:
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["code"] == code and err["type"] == "invalid_request_error", err
    assert "Traceback" not in r.text
    return err


def test_data_uri_answers_like_the_in_process_guard(servers):
    om, _ = image_message("bomb")
    out = _client(servers["plain"]).chat.completions.create(model="demo", messages=[om], max_tokens=MAX)
    want = servers["expected"]["bomb"]
    assert out.choices[0].message.content == want.text
    assert out.model_extra["ras"]["risk"] == pytest.approx(want.assessment.risk, abs=1e-6)


def test_several_images_and_turns_as_data_uris(servers, image_host):
    messages = _multi(image_host["cake"], image_host["bomb"])
    out = _client(servers["plain"]).chat.completions.create(model="demo", messages=messages, max_tokens=MAX)
    want = servers["expected"]["multi"]
    assert out.choices[0].message.content == want.text
    assert out.usage.prompt_tokens == want.usage.input_tokens


def test_url_refused_without_allow_image_urls(servers, image_host):
    err = _error(_post(servers["plain"], _image_turn(image_host["base"] + "/cake.png")), "unsupported")
    assert "--allow-image-urls" in err["message"] and "data:image/png;base64" in err["message"]


def test_url_fetched_from_an_allow_listed_local_host(servers, image_host):
    out = _client(servers["fetch"]).chat.completions.create(
        model="demo", messages=_image_turn(image_host["base"] + "/cake.png"), max_tokens=MAX)
    assert out.choices[0].message.content == servers["expected"]["cake"].text


def test_urls_and_data_uris_mix_over_several_turns(servers, image_host):
    messages = _multi(image_host["base"] + "/cake.png", image_host["bomb"])
    out = _client(servers["fetch"]).chat.completions.create(model="demo", messages=messages, max_tokens=MAX)
    assert out.choices[0].message.content == servers["expected"]["multi"].text


def test_checked_redirect_is_followed(servers, image_host):
    out = _client(servers["fetch"]).chat.completions.create(
        model="demo", messages=_image_turn(image_host["base"] + "/moved"), max_tokens=MAX)
    assert out.choices[0].message.content == servers["expected"]["cake"].text


@pytest.mark.parametrize(
    "path, code, needle",
    [
        ("/escape", "unsafe_image_url", "127.0.0.2"),  # a redirect off the allow-list to an internal address
        ("/big.png", "image_too_large", str(LIMIT)),
        ("/missing.png", "invalid_image_url", "404"),
        ("/corrupt.png", "invalid_image", ""),
        ("/slow", "image_fetch_timeout", "timed out"),
    ],
)
def test_fetch_failures_answer_400_with_a_code(servers, image_host, path, code, needle):
    err = _error(_post(servers["fetch"], _image_turn(image_host["base"] + path)), code)
    assert needle in err["message"]


def test_internal_address_off_the_allow_list_is_refused(servers, image_host):
    other = f"http://127.0.0.1:{image_host['port'] + 1 if image_host['port'] < 65535 else 1}/cake.png"
    err = _error(_post(servers["fetch"], _image_turn(other)), "unsafe_image_url")
    assert "loopback" in err["message"] and "--allowed-image-hosts" in err["message"]


def test_oversize_and_corrupt_data_uris_answer_400(servers):
    _error(_post(servers["plain"], _image_turn(data_uri(b"\x89PNG" + b"0" * (2 * LIMIT)))), "image_too_large")
    _error(_post(servers["plain"], _image_turn(data_uri(b"\x89PNG\r\n\x1a\n" + b"junk" * 20))), "invalid_image")
    _error(_post(servers["plain"], _image_turn("data:image/png;base64,@@@")), "invalid_request")


def test_images_only_in_user_messages(servers, image_host):
    messages = [{"role": "system", "content": [{"type": "image_url",
                                                "image_url": {"url": data_uri(image_host["cake"])}}]},
                {"role": "user", "content": "hi"}]
    err = _error(_post(servers["plain"], messages), "invalid_request")
    assert "only user messages" in err["message"]


def test_server_answers_after_the_failures(servers):
    om, _ = image_message("bomb")
    out = _client(servers["fetch"]).chat.completions.create(model="demo", messages=[om], max_tokens=MAX)
    assert out.choices[0].message.content == servers["expected"]["bomb"].text
