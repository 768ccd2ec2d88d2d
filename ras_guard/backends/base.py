"""The small protocol a backend implements for RAS.

A backend turns conversations into model inputs and runs generation; the RAS logic (reformulation, risk,
steering decisions, calibration) lives above it and never touches a framework directly.

Example:
    >>> from ras_guard.backends.base import Backend
    >>> hasattr(Backend, "generate")
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch

from ..errors import InvalidMessageError

__all__ = ["Backend", "GenerationResult", "ModelFingerprint", "flatten_text"]


@dataclass(frozen=True)
class ModelFingerprint:
    """What identifies a model for calibration purposes.

    Attributes:
        architecture: ``config.architectures[0]`` or the class name.
        vocab_size: Rows of ``lm_head``.
        hidden_size: Columns of ``lm_head``.
        lm_head_sha256: Hash of a deterministic sample of ``lm_head`` rows, rounded to bfloat16 so that fp32, bf16
            and fp16 loads of one checkpoint agree.
    """

    architecture: str
    vocab_size: int
    hidden_size: int
    lm_head_sha256: str


@dataclass
class GenerationResult:
    """What one generate call produced.

    Attributes:
        sequences: ``[B, new_tokens]`` generated ids (prompt removed; finished rows padded).
        prompt_length: Padded prompt length.
        prompt_tokens: Unpadded prompt length of each row.
        logits: ``[B, steps, V]`` raw logits per step when requested, else None.
        last_hidden: ``[B, steps, H]`` final-norm hidden state (lm_head input) per step when requested, else None.
        cache: The KV cache the call ended with (``want_cache=True``), else None. It holds every position but the
            last generated one.
    """

    sequences: torch.Tensor
    prompt_length: int
    prompt_tokens: list[int]
    logits: torch.Tensor | None = None
    last_hidden: torch.Tensor | None = None
    cache: Any = None


@runtime_checkable
class Backend(Protocol):
    """What the guard needs from a model runtime."""

    name: str
    is_multimodal: bool
    softcap: float | None
    tokenizer: Any
    model: Any

    def encode(self, conversations: Sequence[list[dict[str, Any]]], *, tools: list[dict] | None = None) -> Any:
        """Render and tokenize a batch of conversations with the generation prompt, left-padded."""

    def generate(
        self,
        inputs: Any,
        *,
        max_new_tokens: int,
        logits_processors: Sequence[Any] = (),
        want_logits: bool = False,
        want_hidden: bool = False,
        streamer: Any | None = None,
        **kwargs: Any,
    ) -> GenerationResult:
        """Run generation on encoded inputs."""

    def decode(self, token_ids: Sequence[int]) -> str:
        """Token ids to text, special tokens skipped."""

    def trim(self, row: torch.Tensor) -> tuple[list[int], str]:
        """Cut a generated row at its first EOS; return the kept ids and ``"stop"`` or ``"length"``."""

    def lm_head_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """``lm_head(hidden)`` in float32, uncapped."""

    def fingerprint(self) -> ModelFingerprint:
        """Identify the model for calibration checks."""

    @property
    def supports_tools(self) -> bool:
        """Whether the chat template renders ``tools``."""


def flatten_text(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Messages for a text-only chat template: each message's text parts joined into one string.

    Raises:
        InvalidMessageError: A message holds a non-text part (an image sent to a text-only model).

    Example:
        >>> parts = [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]
        >>> flatten_text([{"role": "user", "content": parts}])
        [{'role': 'user', 'content': 'a\\nb'}]
    """
    out = []
    for m in messages:
        parts = m.get("content") or []
        if any(p["type"] != "text" for p in parts):
            raise InvalidMessageError("a text-only model got a non-text content part; remove the images.")
        out.append({**m, "content": "\n".join(p["text"] for p in parts)})
    return out
