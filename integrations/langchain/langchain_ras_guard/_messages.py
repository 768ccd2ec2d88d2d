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

import io
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
from PIL import Image
from ras_guard.errors import (
    ImageTooLargeError,
    InvalidMessageError,
    UnknownContentPartError,
    UnsupportedInputError,
)

from ._images import FetchPolicy, ImageFetcher, check_image_header, decode_base64, decode_data_uri

__all__ = ["ImageResolver", "to_guard_messages"]

_CHAT_ROLES = {"human": "user", "user": "user", "ai": "assistant", "assistant": "assistant", "system": "system",
               "developer": "system", "tool": "tool", "function": "tool"}
_SKIPPED = {"reasoning", "tool_call", "tool_call_chunk", "invalid_tool_call", "server_tool_call",
            "server_tool_call_chunk", "server_tool_result"}
_UNSUPPORTED = {"audio", "video", "file"}


class ImageResolver:
    """Turns a v1 image block into validated image bytes (or a PIL image passed through).

    Args:
        policy: Limits and URL rules.
    """

    def __init__(self, policy: FetchPolicy) -> None:
        self.policy = policy
        self.fetcher = ImageFetcher(policy)

    def __call__(self, block: dict[str, Any], where: str) -> bytes | Image.Image:
        """Bytes of the image a block holds or points at.

        Raises:
            UnsafeURLError, ImageFetchError, ImageTooLargeError, CorruptImageError: See :mod:`._images`.
            UnsupportedInputError: A provider file id.
            InvalidMessageError: A block without image data, or a local path.
        """
        p = self.policy
        if block.get("base64"):
            data = decode_base64(block["base64"], p.max_bytes, where)
        elif block.get("url"):
            url = str(block["url"])
            if url[:5].lower() == "data:":
                data = decode_data_uri(url, p.max_bytes, where)
            else:
                data = self.fetcher.fetch(url)
        elif block.get("image") is not None:
            return self._direct(block["image"], where)
        elif block.get("file_id"):
            raise UnsupportedInputError(
                f"{where}: image given as a provider file id ({block['file_id']!r}); a local model has no file "
                "store. Pass the image as base64 or a URL."
            )
        else:
            raise InvalidMessageError(f"{where}: image block has no 'base64', 'url' or 'image' data.")
        check_image_header(data, p.max_pixels, where)
        return data

    def _direct(self, value: Any, where: str) -> bytes | Image.Image:
        if isinstance(value, Image.Image):
            if value.width * value.height > self.policy.max_pixels:
                check_image_header(_png(value), self.policy.max_pixels, where)
            return value
        if isinstance(value, (bytes, bytearray, memoryview)):
            data = bytes(value)
            if len(data) > self.policy.max_bytes:
                raise ImageTooLargeError(f"{where}: image of {len(data)} bytes exceeds {self.policy.max_bytes} bytes.")
            check_image_header(data, self.policy.max_pixels, where)
            return data
        raise InvalidMessageError(
            f"{where}: an 'image' value must be a PIL image or bytes, got {type(value).__name__}; local file paths "
            "are not read from chat messages (read the file yourself and pass base64)."
        )


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


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
        f"{where}: cannot map a {type(message).__name__} (role {getattr(message, 'role', message.type)!r}) to "
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
