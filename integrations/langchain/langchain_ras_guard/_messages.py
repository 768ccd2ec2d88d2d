"""LangChain messages to ras-guard chat dicts, through langchain-core's own converter (private).

Every message form LangChain produces (v1 blocks, OpenAI ``image_url`` blocks, legacy ``source_type``
blocks, Anthropic ``source`` images, ``tool_use`` / ``tool_result`` histories, ``thinking`` blocks) is first
turned into OpenAI chat dicts by ``langchain_core.messages.convert_to_openai_messages``. What is ours is only
the images: every ``image_url`` (a data URI or an http(s) URL, fetched with SSRF protection) becomes validated
bytes here, so the core never sees a URL, plus three image forms the converter does not take (a PIL image or
raw bytes in an ``image`` block, base64 without a ``mime_type``, an Anthropic ``url`` source), resolved before
it runs.

Example:
    >>> from langchain_core.messages import HumanMessage
    >>> to_guard_messages([HumanMessage("hi")], ImageResolver(FetchPolicy()))
    [{'role': 'user', 'content': [{'type': 'text', 'text': 'hi'}]}]
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from langchain_core.messages import BaseMessage, ToolMessage, convert_to_openai_messages
from PIL import Image
from ras_guard.errors import InvalidMessageError, UnknownContentPartError, UnsupportedInputError

from ._images import ImageResolver

__all__ = ["to_guard_messages"]

_ROLES = {"user": "user", "assistant": "assistant", "system": "system", "developer": "system"}
_ROLES |= {"tool": "tool", "function": "tool", "human": "user", "ai": "assistant"}
_SKIPPED = {"thinking", "redacted_thinking", "reasoning"}
_UNSUPPORTED = {"input_audio", "audio", "file", "video", "document"}
_LOCAL = "ras-guard-local:"  # placeholder URL of an image resolved before the converter ran


def _pre_block(block: Any, where: str, images: ImageResolver, local: list[Any]) -> Any:
    """An image block the converter cannot take, as one it can (or as a placeholder of resolved bytes)."""
    if isinstance(block, dict) and block.get("type") in _UNSUPPORTED:
        raise UnsupportedInputError(
            f"{where}: {block['type']!r} content is not supported by ras-guard models (text and images only)."
        )
    if not isinstance(block, dict) or block.get("type") != "image":
        return block
    source = block.get("source")
    if isinstance(source, dict) and source.get("type") == "url" and source.get("url"):
        return {"type": "image", "url": source["url"]}  # Anthropic url source
    if block.get("image") is not None or (
        block.get("file_id") and not block.get("url") and not block.get("base64")
    ):
        local.append(images(block, where))  # PIL / bytes, or a file id (raises UnsupportedInputError)
        return {"type": "image_url", "image_url": {"url": f"{_LOCAL}{len(local) - 1}"}}
    if block.get("base64") and not block.get("mime_type"):
        return {**block, "mime_type": "application/octet-stream"}  # the header check identifies it
    return block


def _pre(message: BaseMessage, where: str, images: ImageResolver, local: list[Any]) -> BaseMessage:
    if isinstance(message.content, str):
        return message
    content = [_pre_block(b, f"{where}.content[{j}]", images, local) for j, b in enumerate(message.content)]
    return message.model_copy(update={"content": content})


def _image(url: Any, where: str, images: ImageResolver, local: list[Any]) -> bytes | Image.Image:
    url = url.get("url") if isinstance(url, dict) else url
    if not isinstance(url, str) or not url:
        raise InvalidMessageError(f"{where}: an image_url block without a URL.")
    if url.startswith(_LOCAL):
        return local[int(url[len(_LOCAL) :])]  # type: ignore[no-any-return]
    return images({"url": url}, where)


def _parts(content: Any, where: str, images: ImageResolver, local: list[Any]) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    parts: list[dict[str, Any]] = []
    for j, part in enumerate(content or []):
        here = f"{where}.content[{j}]"
        kind = part.get("type") if isinstance(part, dict) else type(part).__name__
        if kind == "text":
            if part.get("text"):
                parts.append({"type": "text", "text": part["text"]})
        elif kind == "refusal":
            parts.append({"type": "text", "text": part.get("refusal") or ""})
        elif kind == "image_url":
            parts.append({"type": "image", "image": _image(part.get("image_url"), here, images, local)})
        elif kind in _SKIPPED:
            continue
        elif kind in _UNSUPPORTED:
            raise UnsupportedInputError(
                f"{here}: {kind!r} content is not supported by ras-guard models (text and images only)."
            )
        else:
            raise UnknownContentPartError(
                f"{here}: unknown content block type {kind!r}; use text blocks and image blocks "
                "({'type': 'image', 'base64' | 'url': ...} or OpenAI 'image_url')."
            )
    return parts


def _tool_calls(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """OpenAI tool calls with their arguments as dicts (what chat templates render)."""
    out = []
    for call in calls:
        fn = dict(call.get("function") or {})
        args = fn.get("arguments")
        if isinstance(args, str):
            try:
                fn["arguments"] = json.loads(args) if args.strip() else {}
            except ValueError:
                pass  # kept as the model wrote it
        entry: dict[str, Any] = {"type": "function", "function": fn}
        if call.get("id"):
            entry["id"] = call["id"]
        out.append(entry)
    return out


def _convert(message: BaseMessage, where: str) -> list[dict[str, Any]]:
    try:
        return convert_to_openai_messages([message], text_format="block")  # type: ignore[return-value]
    except (ValueError, TypeError, KeyError) as exc:
        text = str(exc)
        error = (
            UnsupportedInputError if "not supported" in text or "Unsupported" in text else InvalidMessageError
        )
        raise error(f"{where}: {text[:300]}") from exc


def to_guard_messages(messages: Sequence[BaseMessage], images: ImageResolver) -> list[dict[str, Any]]:
    """Convert LangChain messages into the chat dicts :class:`ras_guard.RASGuard` takes.

    Args:
        messages: Any LangChain messages (system, human, AI with tool calls or ``tool_use`` blocks, tool,
            chat).
        images: Resolves image blocks to bytes.

    Returns:
        ``[{"role": ..., "content": [parts], ...}]``; assistant tool calls in Hugging Face format (arguments
        as dicts), tool messages with ``tool_call_id`` and ``name``; ``tool_result`` blocks become tool
        messages.

    Raises:
        InvalidMessageError: A message that maps to no role, or an unusable image.
        UnknownContentPartError: A content block of unknown type.
        UnsupportedInputError: Audio, video, files, or provider file ids.
    """
    out: list[dict[str, Any]] = []
    local: list[Any] = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        for entry in _convert(_pre(message, where, images, local), where):
            role = _ROLES.get(str(entry.get("role", "")).lower())
            if role is None:
                raise InvalidMessageError(
                    f"{where}: cannot map a {type(message).__name__} (role {entry.get('role')!r}) to "
                    "system/user/assistant/tool."
                )
            guard_entry: dict[str, Any] = {
                "role": role,
                "content": _parts(entry.get("content"), where, images, local),
            }
            if entry.get("tool_calls"):
                guard_entry["tool_calls"] = _tool_calls(entry["tool_calls"])
            if role == "tool":
                if entry.get("tool_call_id"):
                    guard_entry["tool_call_id"] = entry["tool_call_id"]
                if entry.get("name"):
                    guard_entry["name"] = entry["name"]
                parts = guard_entry["content"]
                if isinstance(message, ToolMessage) and message.status == "error" and parts:
                    if parts[0]["type"] == "text":
                        parts[0] = {"type": "text", "text": f"Error: {parts[0]['text']}"}
            out.append(guard_entry)
    return out
