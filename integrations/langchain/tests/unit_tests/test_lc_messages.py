"""Every content form LangChain 1.x produces, converted to ras-guard chat dicts."""

from __future__ import annotations

import pytest
from langchain_core.messages import AIMessage, ChatMessage, HumanMessage, SystemMessage, ToolMessage
from lc_ras_testing import LocalServer, Route, b64, png_bytes
from PIL import Image
from ras_guard.errors import (
    ImageTooLargeError,
    InvalidMessageError,
    UnknownContentPartError,
    UnsafeURLError,
    UnsupportedInputError,
)

from langchain_ras_guard._fetch import FetchPolicy
from langchain_ras_guard._images import ImageResolver
from langchain_ras_guard._messages import to_guard_messages

PNG = png_bytes()
RED = png_bytes((255, 0, 0))


def _convert(messages, **policy):
    return to_guard_messages(messages, ImageResolver(FetchPolicy(**policy)))


def _images(converted) -> list:
    return [p["image"] for m in converted for p in m["content"] if p["type"] == "image"]


@pytest.mark.parametrize(
    "block",
    [
        {"type": "image", "base64": b64(PNG), "mime_type": "image/png"},
        {"type": "image", "url": f"data:image/png;base64,{b64(PNG)}"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{b64(PNG)}"}},
        {"type": "image_url", "image_url": f"data:image/png;base64,{b64(PNG)}"},
        {"type": "image", "source_type": "base64", "data": b64(PNG), "mime_type": "image/png"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": b64(PNG)}},
        {"type": "image", "image": PNG},
    ],
    ids=[
        "v1-base64",
        "v1-data-url",
        "openai-data-url",
        "openai-string",
        "legacy-base64",
        "anthropic",
        "raw-bytes",
    ],
)
def test_inline_image_forms(block) -> None:
    out = _convert([HumanMessage(content=[{"type": "text", "text": "what is it?"}, block])])
    assert out == [
        {
            "role": "user",
            "content": [{"type": "text", "text": "what is it?"}, {"type": "image", "image": PNG}],
        }
    ]


def test_pil_image_passes_through() -> None:
    img = Image.new("RGB", (4, 4))
    assert _images(_convert([HumanMessage(content=[{"type": "image", "image": img}])])) == [img]


@pytest.mark.parametrize(
    "make",
    [
        lambda u: {"type": "image", "url": u},
        lambda u: {"type": "image_url", "image_url": {"url": u, "detail": "low"}},
        lambda u: {"type": "image_url", "image_url": u},
        lambda u: {"type": "image", "source_type": "url", "url": u},
        lambda u: {"type": "image", "source": {"type": "url", "url": u}},
    ],
    ids=["v1-url", "openai-url", "openai-url-string", "legacy-url", "anthropic-url"],
)
def test_url_image_forms_fetched_from_allow_listed_host(make) -> None:
    with LocalServer() as srv:
        srv.routes["/a.png"] = Route(200, PNG)
        out = _convert([HumanMessage(content=[make(srv.url("/a.png"))])], allowed_hosts=("127.0.0.1",))
        assert _images(out) == [PNG] and srv.hits == ["/a.png"]
        with pytest.raises(UnsafeURLError):
            _convert([HumanMessage(content=[make(srv.url("/a.png"))])])
        assert srv.hits == ["/a.png"]


def test_several_images_turns_system_and_tools() -> None:
    messages = [
        SystemMessage("be safe"),
        HumanMessage(
            content=[
                {"type": "image", "base64": b64(PNG), "mime_type": "image/png"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{b64(RED)}"}},
                {"type": "text", "text": "compare"},
            ]
        ),
        AIMessage(content="checking", tool_calls=[{"name": "zoom", "args": {"factor": 2}, "id": "c1"}]),
        ToolMessage(
            content=[
                {"type": "text", "text": "zoomed"},
                {"type": "image", "base64": b64(RED), "mime_type": "image/png"},
            ],
            tool_call_id="c1",
            name="zoom",
        ),
        ToolMessage("boom", tool_call_id="c2", status="error"),
        ChatMessage(role="developer", content="note"),
        HumanMessage("and now?", name="alice"),
    ]
    out = _convert(messages)
    assert [m["role"] for m in out] == ["system", "user", "assistant", "tool", "tool", "system", "user"]
    assert _images(out) == [PNG, RED, RED]
    assert out[2]["tool_calls"] == [
        {"type": "function", "id": "c1", "function": {"name": "zoom", "arguments": {"factor": 2}}}
    ]
    assert out[2]["content"] == [{"type": "text", "text": "checking"}]
    assert out[3]["tool_call_id"] == "c1" and out[3]["name"] == "zoom"
    assert out[4]["content"] == [{"type": "text", "text": "Error: boom"}]


def test_ai_history_keeps_text_and_refusals_drops_reasoning() -> None:
    ai = AIMessage(
        content=[
            {"type": "reasoning", "reasoning": "hmm"},
            {"type": "text", "text": "ok"},
            {"type": "refusal", "refusal": "no"},
        ]
    )
    assert _convert([ai])[0]["content"] == [{"type": "text", "text": "ok"}, {"type": "text", "text": "no"}]


@pytest.mark.parametrize(
    ("block", "error"),
    [
        ({"type": "audio", "base64": "AAAA", "mime_type": "audio/wav"}, UnsupportedInputError),
        ({"type": "file", "base64": "AAAA", "mime_type": "application/pdf"}, UnsupportedInputError),
        ({"type": "image", "file_id": "file-123"}, UnsupportedInputError),
        ({"type": "hologram", "data": 1}, UnknownContentPartError),
        ({"type": "image", "image": "/etc/passwd"}, InvalidMessageError),
        ({"type": "image", "url": "data:text/plain;base64,aGk="}, InvalidMessageError),
    ],
)
def test_unusable_blocks_raise_clear_errors(block, error) -> None:
    with pytest.raises(error):
        _convert([HumanMessage(content=[block])])


def test_image_limits_apply_to_every_form() -> None:
    big = png_bytes(size=(64, 64))
    for block in (
        {"type": "image", "base64": b64(big), "mime_type": "image/png"},
        {"type": "image", "image": big},
    ):
        with pytest.raises(ImageTooLargeError):
            _convert([HumanMessage(content=[block])], max_pixels=100)
        with pytest.raises(ImageTooLargeError):
            _convert([HumanMessage(content=[block])], max_bytes=50)
