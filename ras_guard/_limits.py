"""Prompt-size limits, checked before any pass runs (private).

The limit is the model's context (the smaller of the text config's ``max_position_embeddings`` and the
tokenizer's ``model_max_length``, where the checkpoint states them) or ``RASConfig.max_prompt_tokens``,
whichever is smaller. Every pass must fit it: the answer prompt plus ``max_new_tokens``, and the risk prompt
(safety prompt, visual context of up to ``caption_max_new_tokens``, question) plus the N scored tokens.

Two checks, cheapest first:

1. **Raw size.** No token covers more characters than the longest entry of the vocabulary (plus one separator a
   word-level pre-tokenizer drops), so text longer than ``limit * (longest entry + 1)`` characters cannot fit and
   is refused without tokenising it (a 1 MB message is refused in well under a millisecond). Fail closed: text
   that a tokenizer squeezes harder (a long unknown word as one ``[UNK]``, runs of whitespace dropped by a
   word-level pre-tokenizer) may be refused although it would fit.
2. **Tokens.** The answer prompt and the risk prompt (empty visual context) are encoded with the chat template
   (images expanded), exactly as the passes encode them.

Example:
    >>> limits = PromptLimits(guard)  # doctest: +SKIP
    >>> limits.check([conv], max_new_tokens=256)  # raises PromptTooLongError when a pass cannot fit  # doctest: +SKIP
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .backends.protocol import GenerationRequest
from .errors import PromptTooLongError
from .messages import Conversation
from .reformulate import reformulated_text

if TYPE_CHECKING:
    from .guard import RASGuard

__all__ = ["PromptLimits", "model_context"]

_UNSTATED = 10**9  # tokenizers without a stated length report int(1e30)


def model_context(backend: Any) -> int | None:
    """The context the backend's checkpoint states (its optional ``context_length``), or None."""
    value = getattr(backend, "context_length", None)
    return value if isinstance(value, int) and 0 < value < _UNSTATED else None


def _text_chars(conv: Conversation) -> int:
    """Characters of user-controlled text: text parts and any other string or structured fields."""
    total = 0
    for msg in conv.messages:
        for part in msg["content"]:
            if part["type"] == "text":
                total += len(part["text"])
        for key, value in msg.items():
            if key not in ("role", "content") and value is not None:
                total += len(value) if isinstance(value, str) else len(json.dumps(value, default=str))
    return total


class PromptLimits:
    """The prompt limit of one guard and its checks (see the module docstring).

    Args:
        guard: The guard whose backend and configuration set the limit.
    """

    def __init__(self, guard: RASGuard) -> None:
        self.guard = guard
        self.context = model_context(guard.backend)
        configured = guard.config.max_prompt_tokens
        stated = [v for v in (self.context, configured) if v is not None]
        self.limit: int | None = min(stated) if stated else None
        self._longest_entry: int | None = None

    @property
    def source(self) -> str:
        """Where the limit comes from (for error messages)."""
        configured = self.guard.config.max_prompt_tokens
        if configured is not None and (self.context is None or configured <= self.context):
            return "RASConfig.max_prompt_tokens"
        return f"the context of {self.guard.model_name}"

    def longest_entry(self) -> int:
        """Characters of the longest vocabulary entry (the backend's ``longest_token_chars``; 64 when unknown)."""
        if self._longest_entry is None:
            value = getattr(self.guard.backend, "longest_token_chars", None)
            self._longest_entry = value if isinstance(value, int) and value > 0 else 64
        return self._longest_entry

    def _fail(self, what: str, tokens: int, extra: int, extra_name: str) -> PromptTooLongError:
        limit = self.limit
        return PromptTooLongError(
            f"{what} needs {tokens} prompt tokens + {extra} {extra_name} = {tokens + extra} tokens, over the limit "
            f"of {limit} tokens ({self.source}). Shorten the message or the history (or lower {extra_name}); "
            "RASConfig(max_prompt_tokens=...) can only lower the limit, never raise it above the model's context."
        )

    def check(
        self,
        convs: Sequence[Conversation],
        *,
        max_new_tokens: int | None,
        assess: bool = True,
        tools: list[dict] | None = None,
    ) -> None:
        """Refuse requests whose passes cannot fit the limit; nothing runs before this.

        Args:
            convs: The normalised requests.
            max_new_tokens: The answer's token budget (None: no answer pass, only the assessment).
            assess: Whether the risk pass runs (False when the risk or assessment is given).
            tools: Tool schemas rendered into the answer prompt.

        Raises:
            PromptTooLongError: A request's prompt plus its new tokens exceeds the limit.
        """
        if self.limit is None:
            return
        cfg, limit = self.guard.config, self.limit
        tool_chars = len(json.dumps(tools, default=str)) if tools else 0
        for i, conv in enumerate(convs):
            chars, span = _text_chars(conv) + tool_chars, self.longest_entry() + 1  # + a separator it drops
            if chars > limit * span:
                raise PromptTooLongError(
                    f"request {i} holds {chars} characters of text, at least {-(-chars // span)} tokens (no token of "
                    f"this tokenizer covers more than {span - 1} characters and a separator), over the limit of "
                    f"{limit} tokens ({self.source}). Shorten the message or the history."
                )
        answers = [c.as_list() for c in convs] if max_new_tokens is not None else []
        probes = [c.with_last_user_text(reformulated_text(c.question, "", cfg)) for c in convs] if assess else []
        counts = self._count(answers, tools) + self._count(probes, None) if tools else self._count(answers + probes, None)
        for i, n in enumerate(counts[: len(answers)]):
            assert max_new_tokens is not None
            if n + max_new_tokens > limit:
                raise self._fail(f"the answer of request {i}", n, max_new_tokens, "max_new_tokens")
        for i, (n, conv) in enumerate(zip(counts[len(answers) :], convs)):
            extra = cfg.num_steer_tokens + (cfg.caption_max_new_tokens if conv.last_user_image_hashes() else 0)
            if n + extra > limit:
                raise self._fail(f"the risk pass of request {i}", n, extra, "caption and scored tokens")

    def _count(self, convs: list[list[dict[str, Any]]], tools: list[dict] | None) -> list[int]:
        """Prompt tokens of each conversation, rendered as the passes render it (the backend counts, in one batch
        where it has the optional ``count_prompt_tokens_batch``)."""
        backend = self.guard.backend
        requests = [GenerationRequest(c, max_new_tokens=1, tools=tools) for c in convs]
        batch = getattr(backend, "count_prompt_tokens_batch", None)
        if callable(batch):
            return [int(n) for n in batch(requests)]
        return [int(backend.count_prompt_tokens(r)) for r in requests]
