"""Chat messages: validation and the rewrites RAS needs (caption request, reformulated last turn).

Messages are chat-style dicts: ``role`` in system/user/assistant/tool and ``content`` as a string or a list of
parts ``{"type": "text", "text": ...}`` / ``{"type": "image", "image": PIL.Image | bytes | path}``. Extra keys
(``tool_calls``, ``name``, ``tool_call_id``) are kept and passed to the chat template.

Example:
    >>> from PIL import Image
    >>> conv = normalize_messages([{"role": "user", "content": [
    ...     {"type": "image", "image": Image.new("RGB", (4, 4))}, {"type": "text", "text": "What is it?"}]}])
    >>> conv.question, len(conv.images)
    ('What is it?', 1)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image

from ._redact import redact
from .errors import EmptyMessagesError, InvalidMessageError, UnknownContentPartError, UnsupportedInputError
from .images import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, image_sha256, load_image

__all__ = ["Conversation", "normalize_messages"]

_ROLES = ("system", "user", "assistant", "tool")


@dataclass(frozen=True)
class Conversation:
    """A validated conversation.

    Attributes:
        messages: Messages with ``content`` always a list of parts and every image decoded to RGB PIL.
        images: All images, in order of appearance.
        image_hashes: SHA-256 of each image's pixels.
        last_user: Index of the last user message (the turn that is answered and assessed).
        image_owners: Index of the message each image belongs to.
    """

    messages: tuple[dict[str, Any], ...]
    images: tuple[Image.Image, ...]
    image_hashes: tuple[str, ...]
    last_user: int
    image_owners: tuple[int, ...] = ()

    @property
    def question(self) -> str:
        """Text of the last user message (its text parts joined by newlines)."""
        return _text_of(self.messages[self.last_user])

    def last_user_images(self) -> list[Image.Image]:
        """Images of the last user message, in order."""
        return [p["image"] for p in self.messages[self.last_user]["content"] if p["type"] == "image"]

    def last_user_image_hashes(self) -> list[str]:
        """SHA-256 of each image of the last user message, in order."""
        return [h for h, o in zip(self.image_hashes, self.image_owners, strict=True) if o == self.last_user]

    def with_last_user_text(self, text: str, *, keep_history: bool = True) -> list[dict[str, Any]]:
        """Messages with the last user turn's text replaced by ``text``; its images stay first, in order.

        Args:
            text: The new text of the last user turn.
            keep_history: Keep the turns before it (otherwise only that turn is sent).
        """
        images = [{"type": "image", "image": im} for im in self.last_user_images()]
        new_last = {**self.messages[self.last_user], "content": [*images, {"type": "text", "text": text}]}
        before = list(self.messages[: self.last_user]) if keep_history else []
        return [*before, new_last]

    def as_list(self) -> list[dict[str, Any]]:
        """The messages as a fresh list (safe to hand to a chat template)."""
        return list(self.messages)


def _text_of(message: dict[str, Any]) -> str:
    return "\n".join(p["text"] for p in message["content"] if p["type"] == "text")


def _normalize_part(part: Any, where: str, max_pixels: int, max_bytes: int) -> dict[str, Any]:
    if isinstance(part, str):
        return {"type": "text", "text": part}
    if not isinstance(part, dict) or "type" not in part:
        raise InvalidMessageError(
            f"{where}: a content part must be a dict with a 'type', got {redact(repr(part))[:80]}."
        )
    kind = part["type"]
    if kind == "text":
        text = part.get("text")
        if not isinstance(text, str):
            raise InvalidMessageError(f"{where}: text part needs a string 'text', got {type(text).__name__}.")
        return {"type": "text", "text": text}
    if kind == "image":
        src = next((part[k] for k in ("image", "path") if part.get(k) is not None), None)
        if src is None:
            raise InvalidMessageError(
                f"{where}: image part needs an 'image' (PIL.Image, bytes or file path); got keys {sorted(part)}."
            )
        return {"type": "image", "image": load_image(src, max_pixels=max_pixels, max_bytes=max_bytes, where=where)}
    raise UnknownContentPartError(
        f"{where}: unknown content part type {kind!r}; ras-guard takes 'text' and 'image' parts "
        "(convert URLs and other blocks to image bytes first)."
    )


def normalize_messages(
    messages: Sequence[dict[str, Any]],
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
    allow_images: bool = True,
) -> Conversation:
    """Validate chat messages and decode their images.

    Args:
        messages: Chat-style dicts (see module docstring).
        max_pixels: Per-image pixel limit.
        max_bytes: Per-image encoded size limit.
        allow_images: False for text-only models: any image raises :class:`UnsupportedInputError`.

    Returns:
        A :class:`Conversation`.

    Raises:
        EmptyMessagesError: No messages, or no user message.
        InvalidMessageError: A malformed message or part.
        UnknownContentPartError: A part of an unknown type.

    Example:
        >>> normalize_messages([{"role": "user", "content": "hi"}]).question
        'hi'
    """
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
        raise InvalidMessageError(
            f"messages must be a list of {{'role', 'content'}} dicts, got {type(messages).__name__}."
        )
    if len(messages) == 0:
        raise EmptyMessagesError("messages is empty; pass at least one user message.")
    out: list[dict[str, Any]] = []
    images: list[Image.Image] = []
    owners: list[int] = []
    for i, msg in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(msg, dict):
            raise InvalidMessageError(f"{where} must be a dict with 'role' and 'content', got {type(msg).__name__}.")
        role = msg.get("role")
        if role not in _ROLES:
            raise InvalidMessageError(f"{where}: role {role!r} is not one of {_ROLES}.")
        content = msg.get("content")
        if content is None:
            parts: list[Any] = []
        elif isinstance(content, str):
            parts = [content]
        elif isinstance(content, (list, tuple)):
            parts = list(content)
        else:
            raise InvalidMessageError(
                f"{where}: content must be a string or a list of parts, got {type(content).__name__}."
            )
        norm = [_normalize_part(p, f"{where}.content[{j}]", max_pixels, max_bytes) for j, p in enumerate(parts)]
        for p in norm:
            if p["type"] == "image":
                if not allow_images:
                    raise UnsupportedInputError(
                        f"{where}: this model is text-only and cannot take images; use a vision-language checkpoint."
                    )
                images.append(p["image"])
                owners.append(i)
        out.append({**msg, "content": norm})
    user_idx = [i for i, m in enumerate(out) if m["role"] == "user"]
    if not user_idx:
        raise EmptyMessagesError("messages has no user message; the last user turn is what gets answered.")
    last = user_idx[-1]
    if not out[last]["content"]:
        raise EmptyMessagesError(f"messages[{last}] (the last user message) has no content.")
    return Conversation(
        messages=tuple(out),
        images=tuple(images),
        image_hashes=tuple(image_sha256(im) for im in images),
        last_user=last,
        image_owners=tuple(owners),
    )
