"""LangChain messages to ras-guard chat dicts (private).

Every content form LangChain 1.x produces is read through ``message.content_blocks`` (which turns OpenAI
``image_url`` blocks, legacy ``source_type`` blocks and Anthropic ``source`` blocks into v1 blocks), plus the
few forms it leaves as ``non_standard`` (an ``image_url`` given as a bare string). Images become bytes here
(fetched safely when they are URLs), so the core never sees a URL.

Example:
    >>> from langchain_core.messages import HumanMessage
    >>> to_guard_messages([HumanMessage("hi")], ImageResolver(FetchPolicy()))
    [{'role': 'user', 'content': [{'type': 'text', 'text': 'hi'}]}]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    ChatMessage,
    FunctionMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from ras_guard.errors import (
    InvalidMessageError,
    UnknownContentPartError,
    UnsupportedInputError,
)

from ._images import ImageResolver

__all__ = ["to_guard_messages"]

_CHAT_ROLES = {
    "human": "user",
    "user": "user",
    "ai": "assistant",
    "assistant": "assistant",
    "system": "system",
    "developer": "system",
    "tool": "tool",
    "function": "tool",
}
_SKIPPED = {
    "reasoning",
    "tool_call",
    "tool_call_chunk",
    "invalid_tool_call",
    "server_tool_call",
    "server_tool_call_chunk",
    "server_tool_result",
}
_UNSUPPORTED = {"audio", "video", "file"}


def _role(message: BaseMessage, where: str) -> str:
    if isinstance(message, HumanMessage):
        return "user"
    if isinstance(message, AIMessage):
        return "assistant"
    if isinstance(message, SystemMessage):
        return "system"
    if isinstance(message, (ToolMessage, FunctionMessage)):
        return "tool"
    if isinstance(message, ChatMessage) and message.role.lower() in _CHAT_ROLES:
        return _CHAT_ROLES[message.role.lower()]
    raise InvalidMessageError(
        f"{where}: cannot map a {type(message).__name__} "
        f"(role {getattr(message, 'role', message.type)!r}) to "
        "system/user/assistant/tool."
    )


def _block_parts(block: Any, where: str, images: ImageResolver) -> list[dict[str, Any]]:
    if isinstance(block, str):
        return [{"type": "text", "text": block}]
    kind = block.get("type")
    if kind in ("text", "text-plain"):
        text = block.get("text")
        return [{"type": "text", "text": text}] if text else []
    if kind == "refusal":
        return [{"type": "text", "text": block.get("refusal") or ""}]
    if kind == "image":
        return [{"type": "image", "image": images(block, where)}]
    if kind in _SKIPPED:
        return []
    if kind in _UNSUPPORTED:
        raise UnsupportedInputError(
            f"{where}: {kind!r} content is not supported by ras-guard models (text and images only)."
        )
    if kind == "non_standard":
        value = block.get("value")
        if isinstance(value, dict) and value.get("type") == "image_url":
            url = value.get("image_url")
            url = url.get("url") if isinstance(url, dict) else url
            if isinstance(url, str) and url:
                return [{"type": "image", "image": images({"url": url}, where)}]
        shown = value.get("type") if isinstance(value, dict) else type(value).__name__
        raise UnknownContentPartError(
            f"{where}: unknown content block {shown!r}; use text blocks and image blocks "
            "({'type': 'image', 'base64' | 'url': ...} or OpenAI 'image_url')."
        )
    raise UnknownContentPartError(f"{where}: unknown content block type {kind!r}.")


def _tool_calls(message: AIMessage) -> list[dict[str, Any]]:
    calls = []
    for tc in message.tool_calls:
        call: dict[str, Any] = {"type": "function", "function": {"name": tc["name"], "arguments": tc["args"]}}
        if tc.get("id"):
            call["id"] = tc["id"]
        calls.append(call)
    return calls


def to_guard_messages(messages: Sequence[BaseMessage], images: ImageResolver) -> list[dict[str, Any]]:
    """Convert LangChain messages into the chat dicts :class:`ras_guard.RASGuard` takes.

    Args:
        messages: Any LangChain messages (system, human, AI with tool calls, tool, chat).
        images: Resolves image blocks to bytes.

    Returns:
        ``[{"role": ..., "content": [parts], ...}]``; AI tool calls in Hugging Face format, tool messages with
        ``tool_call_id`` and ``name``.

    Raises:
        InvalidMessageError: A message that maps to no role, or an unusable image.
        UnknownContentPartError: A content block of unknown type.
        UnsupportedInputError: Audio, video, files, or provider file ids.
    """
    out: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        role = _role(message, where)
        parts: list[dict[str, Any]] = []
        for j, block in enumerate(message.content_blocks):
            parts.extend(_block_parts(block, f"{where}.content[{j}]", images))
        entry: dict[str, Any] = {"role": role, "content": parts}
        if isinstance(message, AIMessage) and message.tool_calls:
            entry["tool_calls"] = _tool_calls(message)
        if isinstance(message, ToolMessage):
            entry["tool_call_id"] = message.tool_call_id
            if message.name:
                entry["name"] = message.name
            if message.status == "error" and parts and parts[0]["type"] == "text":
                parts[0] = {"type": "text", "text": f"Error: {parts[0]['text']}"}
        if isinstance(message, FunctionMessage):
            entry["name"] = message.name
        out.append(entry)
    return out
