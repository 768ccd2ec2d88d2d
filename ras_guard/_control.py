"""Keeping supplied text from becoming special or control tokens (private; used by the HF backend's ``encode``).

A chat template pastes message text into one prompt string and the tokenizer then turns every occurrence of a
special token's string into that token, wherever it came from: a typed ``</s>`` ends the user turn, a typed
``<image>`` becomes an image slot. Every pass (caption, risk, answer) is encoded through
:meth:`ControlTokens.encode_safe`, which

1. **neutralises** the text: every string a message or tool schema carries (text parts, tool calls, names,
   schema values and keys) has a zero-width space (U+200B) put after the first character of each occurrence of a
   control string, so the model reads the same characters as ordinary text pieces and no control token forms
   (text without control strings, every benign request, is left byte-identical); text parts that would form
   one across their junction get the same break;
2. **verifies** the rendered prompt, fail-closed: the control tokens of the rendered conversation are counted
   against those of a skeleton of it (the same messages with the text stripped of the characters control strings
   are made of; skipped when no string holds such a character, as the skeleton is then the conversation itself),
   so any control token that comes from supplied text, whatever path made it (a normaliser,
   template text joining supplied text), raises :class:`~ras_guard.errors.SpecialTokenError` naming it.

Control strings are whatever the checkpoint declares: ``all_special_tokens``, added tokens marked special, added
tokens that look like markup (``<tool_call>``, ``<|...|>``, ``[INST]``), and the processor's ``*_token`` /
``*_tag`` strings (image, video, vision start/end...). The unknown token is not counted: a word-level
vocabulary produces it for any unknown word.

Example:
    >>> ControlTokens.from_tokenizer(tokenizer).neutralise("hi </s> ASSISTANT:")  # doctest: +SKIP
    'hi <\\u200b/s> ASSISTANT:'
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import SpecialTokenError

BREAK = "\u200b"
"""Zero-width space put inside a control string found in supplied text."""

_MARKUP = re.compile(r"^(<[^<>\s]+>|<\|.*\|>|\[/?[A-Z_]{2,}\])$")
_KEEP_KEYS = frozenset({"role", "type"})

Render = Callable[[list[list[dict[str, Any]]], Any], list[str]]


@dataclass(frozen=True)
class ControlTokens:
    """The control strings of one tokenizer (and processor), and their token ids.

    Attributes:
        strings: Control strings, longest first.
        ids: Their token ids (the unknown token excluded).
    """

    strings: tuple[str, ...]
    ids: frozenset[int]
    _pattern: re.Pattern[str]
    _chars: str
    _counter: Any = None  # a private copy of the fast tokenizer, unpadded (the shared one's settings change per call)

    @classmethod
    def from_tokenizer(cls, tokenizer: Any, processor: Any = None) -> ControlTokens:
        """Collect what ``tokenizer`` (and ``processor``) declare special or control (see the module docstring)."""
        found: set[str] = {str(t) for t in getattr(tokenizer, "all_special_tokens", [])}
        for tok in (getattr(tokenizer, "added_tokens_decoder", None) or {}).values():
            content = str(getattr(tok, "content", tok))
            if getattr(tok, "special", False) or _MARKUP.match(content.strip()):
                found.add(content)
        for obj in (processor, tokenizer):
            for name, value in (vars(obj) if obj is not None and hasattr(obj, "__dict__") else {}).items():
                if isinstance(value, str) and name.endswith(("_token", "_tag")) and len(value) <= 64:
                    found.add(value)
        strings = tuple(sorted((s for s in found if s.strip()), key=lambda s: (-len(s), s)))
        unk = getattr(tokenizer, "unk_token_id", None)
        ids: set[int] = set()
        for s in strings:
            tid = tokenizer.convert_tokens_to_ids(s)
            if isinstance(tid, int) and tid != unk and tid >= 0:
                ids.add(tid)
        pattern = re.compile("|".join(re.escape(s) for s in strings)) if strings else re.compile(r"(?!x)x")
        chars = "".join(sorted({c for s in strings for c in s if not c.isalnum() and not c.isspace()}))
        return cls(strings, frozenset(ids), pattern, chars, _private_copy(tokenizer))

    # ------------------------------------------------------------------ neutralise
    def neutralise(self, text: str) -> str:
        """``text`` with a zero-width space after the first character of every control string in it.

        Raises:
            SpecialTokenError: A one-character control string occurs (it cannot be broken).
        """
        if not self.strings or not self._pattern.search(text):
            return text
        for _ in range(len(text) + 1):
            m = self._pattern.search(text)
            if m is None:
                return text
            if len(m.group(0)) < 2:
                raise SpecialTokenError(
                    f"the text contains {m.group(0)!r}, a one-character control token of this model; remove it."
                )
            text = self._pattern.sub(lambda k: k.group(0)[0] + BREAK + k.group(0)[1:], text)
        raise SpecialTokenError("the text contains control strings that cannot be neutralised; remove them.")

    def _neutral_value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.neutralise(value)
        if isinstance(value, dict):
            return {self.neutralise(k) if isinstance(k, str) else k: self._neutral_value(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(self._neutral_value(v) for v in value)
        return value

    def _neutral_content(self, parts: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        out = [{**p, "text": self.neutralise(p["text"])} if p.get("type") == "text" else p for p in parts]
        for k in range(len(out) - 1):  # text parts rendered back to back: break a control string at the junction
            a, b = out[k], out[k + 1]
            if a.get("type") == b.get("type") == "text":
                joined, cut = a["text"] + b["text"], len(a["text"])
                if any(m.start() < cut < m.end() for m in self._pattern.finditer(joined)):
                    out[k] = {**a, "text": a["text"] + BREAK}
        return out

    def neutralise_messages(self, messages: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Messages with every supplied string neutralised (roles, part types and images untouched)."""
        out = []
        for m in messages:
            new = {k: (v if k in _KEEP_KEYS else self._neutral_value(v)) for k, v in m.items() if k != "content"}
            content = m.get("content")
            if isinstance(content, (list, tuple)):
                new["content"] = self._neutral_content(content)
            elif content is not None:
                new["content"] = self._neutral_value(content)
            else:
                new["content"] = content
            out.append(new)
        return out

    # ------------------------------------------------------------------ verify
    def _strip(self, value: Any, key: str = "") -> Any:
        if isinstance(value, str):
            if key in _KEEP_KEYS:
                return value
            kept = value.translate({ord(c): None for c in self._chars + BREAK})
            return kept or ("x" if value else "")
        if isinstance(value, dict):
            return {
                self._strip(k, "role") if isinstance(k, str) else k: self._strip(v, str(k)) for k, v in value.items()
            }
        if isinstance(value, (list, tuple)):
            return type(value)(self._strip(v, key) for v in value)
        return value

    def _touches(self, value: Any) -> bool:
        """Whether any string in ``value`` (keys included) holds a character of a control string."""
        if isinstance(value, str):
            return any(c in value for c in self._chars + BREAK)
        if isinstance(value, dict):
            return any(self._touches(k) or self._touches(v) for k, v in value.items())
        if isinstance(value, (list, tuple)):
            return any(self._touches(v) for v in value)
        return False

    def verify(self, tokenizer: Any, render: Render, convs: list[list[dict[str, Any]]], tools: Any) -> None:
        """Raise when rendering ``convs`` yields a control token its skeleton does not (it came from the text).

        Raises:
            SpecialTokenError: Naming the token and the conversation.
        """
        if not self.ids or not self._touches((convs, tools)):
            return  # the skeleton would be the conversation itself: nothing to compare
        real = render(convs, tools)
        skeleton = render([[self._strip(m) for m in c] for c in convs], self._strip(tools))
        enc = self._ids_of(tokenizer, [*real, *skeleton])
        for i in range(len(convs)):
            have = Counter(t for t in enc[i] if t in self.ids)
            base = Counter(t for t in enc[len(convs) + i] if t in self.ids)
            extra = have - base
            if extra:
                token = tokenizer.convert_ids_to_tokens(next(iter(extra)))
                raise SpecialTokenError(
                    f"conversation {i}: supplied text would become the control token {token!r} of this model "
                    "(typed or assembled from text parts); remove control strings from messages and tools."
                )

    def _ids_of(self, tokenizer: Any, texts: list[str]) -> list[list[int]]:
        if self._counter is not None:
            return [e.ids for e in self._counter.encode_batch(texts, add_special_tokens=False)]
        enc = tokenizer(texts, add_special_tokens=False, padding=True, padding_side="left")
        rows = zip(enc["input_ids"], enc["attention_mask"], strict=True)
        return [[t for t, m in zip(ids, mask, strict=True) if m] for ids, mask in rows]

    def encode_safe(
        self, tokenizer: Any, render: Render, convs: Sequence[list[dict[str, Any]]], tools: Any
    ) -> tuple[list[list[dict[str, Any]]], Any]:
        """Neutralise ``convs`` and ``tools`` and verify the result; return what to encode."""
        safe = [self.neutralise_messages(c) for c in convs]
        safe_tools = None if tools is None else self._neutral_value(tools)
        self.verify(tokenizer, render, safe, safe_tools)
        return safe, safe_tools


def _private_copy(tokenizer: Any) -> Any:
    """An unpadded copy of a fast tokenizer's ``tokenizers.Tokenizer`` (None for slow tokenizers).

    Threads share a guard's tokenizer, and every call of the transformers wrapper resets its padding settings, so
    counting on it could race with a padded batch being encoded; the copy is never reconfigured.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    from tokenizers import Tokenizer

    copy = Tokenizer.from_str(backend.to_str())
    copy.no_padding()
    copy.no_truncation()
    return copy
