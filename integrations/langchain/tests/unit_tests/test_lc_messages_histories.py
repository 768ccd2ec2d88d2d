"""Histories other providers produce: Anthropic ``tool_use`` / ``tool_result``, thinking blocks, and the image
forms langchain-core's converter leaves to us (issue 13.2)."""

from __future__ import annotations

from typing import Any

from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from lc_ras_testing import FakeGuard, LocalServer, Route, b64, png_bytes

from langchain_ras_guard import RASGuardedChatModel
from langchain_ras_guard._fetch import FetchPolicy
from langchain_ras_guard._images import ImageResolver
from langchain_ras_guard._messages import to_guard_messages

PNG = png_bytes()


def _convert(messages: list[Any], **policy: Any) -> list[dict[str, Any]]:
    return to_guard_messages(messages, ImageResolver(FetchPolicy(**policy)))


def anthropic_history() -> list[Any]:
    return [
        SystemMessage("you're a good assistant"),
        HumanMessage(
            [{"type": "text", "text": "what's your favorite color", "cache_control": {"type": "x"}}]
        ),
        AIMessage(
            [
                {"type": "text", "text": "Hmm let me think about that"},
                {"type": "tool_use", "input": {"fav_color": "purple"}, "id": "foo", "name": "color_picker"},
            ],
            tool_calls=[
                {"name": "color_picker", "args": {"fav_color": "purple"}, "id": "foo", "type": "tool_call"}
            ],
        ),
        ToolMessage("That's a great pick!", tool_call_id="foo"),
        HumanMessage(
            [
                {"type": "tool_result", "tool_use_id": "foo", "content": [{"type": "text", "text": "green"}]},
                {"type": "text", "text": "what's my sister's favorite color"},
            ]
        ),
        AIMessage(
            [
                {"type": "thinking", "thinking": "a greeting", "signature": "abc"},
                {"type": "text", "text": "Hi"},
            ]
        ),
    ]


def test_anthropic_tool_use_history_converts() -> None:
    out = _convert(anthropic_history())
    roles = [m["role"] for m in out]
    assert roles == ["system", "user", "assistant", "tool", "user", "tool", "assistant"]
    ai = out[2]
    assert ai["content"] == [{"type": "text", "text": "Hmm let me think about that"}]
    assert ai["tool_calls"] == [
        {
            "type": "function",
            "function": {"name": "color_picker", "arguments": {"fav_color": "purple"}},
            "id": "foo",
        }
    ]
    assert out[3] == {
        "role": "tool",
        "content": [{"type": "text", "text": "That's a great pick!"}],
        "tool_call_id": "foo",
    }
    assert out[5]["content"] == [{"type": "text", "text": "green"}] and out[5]["tool_call_id"] == "foo"
    assert out[6]["content"] == [
        {"type": "text", "text": "Hi"}
    ]  # the thinking block is not sent to the model


def test_tool_use_without_tool_calls_still_becomes_a_call() -> None:
    msg = AIMessage([{"type": "tool_use", "input": {"q": 1}, "id": "t1", "name": "search"}])
    (entry,) = _convert([msg])
    assert entry["tool_calls"][0]["function"] == {"name": "search", "arguments": {"q": 1}}


def test_chat_model_answers_an_anthropic_history() -> None:
    llm = RASGuardedChatModel(guard=FakeGuard())
    assert llm.invoke(anthropic_history()).content == "Hello there, friend."


def test_image_forms_the_converter_leaves_to_us() -> None:
    with LocalServer() as server:
        server.routes["/a.png"] = Route(200, PNG, {"Content-Type": "image/png"})
        blocks = [
            {"type": "image", "source": {"type": "url", "url": server.url("/a.png")}},  # Anthropic url source
            {"type": "image", "base64": b64(PNG)},  # no mime_type
            {"type": "image", "image": PNG},  # raw bytes
        ]
        out = _convert([HumanMessage([*blocks, "what?"])], allowed_hosts=("127.0.0.1",))
        assert server.hits == ["/a.png"]
    images = [p["image"] for p in out[0]["content"] if p["type"] == "image"]
    assert images == [PNG, PNG, PNG]
    assert out[0]["content"][-1] == {"type": "text", "text": "what?"}


def test_error_tool_message_is_marked() -> None:
    (entry,) = _convert([ToolMessage("boom", tool_call_id="1", status="error")])
    assert entry["content"] == [{"type": "text", "text": "Error: boom"}]
