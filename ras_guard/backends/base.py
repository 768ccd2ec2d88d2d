"""Engine-neutral records shared by the backends: the model fingerprint, text-only message flattening.

The backend protocol itself is :mod:`ras_guard.backends.protocol`.

Example:
    >>> ModelFingerprint("LlavaForConditionalGeneration", 32064, 4096, "ab12").vocab_size
    32064
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import InvalidMessageError

__all__ = ["ModelFingerprint", "flatten_text"]


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
