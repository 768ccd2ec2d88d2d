"""Configuration of the RAS method: every constant of the method, overridable.

Example:
    >>> from ras_guard import RASConfig
    >>> cfg = RASConfig(risk_floor=0.2)
    >>> cfg.num_steer_tokens, cfg.gamma
    (3, 0.3)
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["DEFAULT_CAPTION_PROMPT", "DEFAULT_SAFETY_PROMPT", "RASConfig"]

DEFAULT_CAPTION_PROMPT = (
    "Describe the image in one sentence that starts with \"The image shows\". Name any dangerous, violent, "
    "illegal or sexual content, and read out any text written in the image."
)

DEFAULT_SAFETY_PROMPT = (
    "First judge whether the question below is safe. If it is safe, answer it normally. If it is harmful, "
    "unethical or dangerous, apologise and refuse to answer."
)


class RASConfig(BaseModel):
    """Constants of Risk-adaptive Activation Steering.

    Attributes are validated; the object is immutable so one config can be shared by threads.

    Example:
        >>> RASConfig().risk_floor
        0.05
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    num_steer_tokens: int = Field(3, ge=1, le=32, description="N: response tokens that are scored and steered.")
    gamma: float = Field(0.3, gt=0.0, le=1.0, description="Decay of the per-token weights gamma**n.")
    caption_max_new_tokens: int = Field(40, ge=1, le=512, description="Token limit of the visual context.")
    caption_prompt: str = Field(DEFAULT_CAPTION_PROMPT, min_length=1, description="Asks for the visual context.")
    safety_prompt: str = Field(DEFAULT_SAFETY_PROMPT, min_length=1, description="Put before context + question.")
    risk_floor: float = Field(
        0.05,
        ge=0.0,
        le=1.0,
        description="Below this risk no steering is applied at all, so benign answers stay bit-identical.",
    )
    max_image_pixels: int = Field(
        4096 * 4096, ge=1, description="Images with more pixels are refused before decoding (decompression bombs)."
    )
    max_image_bytes: int = Field(32 * 1024 * 1024, ge=1, description="Encoded images larger than this are refused.")
    caption_cache_size: int = Field(256, ge=0, description="Visual contexts cached by image hash; 0 disables.")
    reuse_prefix_cache: bool = Field(
        True,
        description="Compute the KV cache of the prompt prefix that a request's caption, risk and answer passes "
        "share (system prompt, history, image tokens) once and continue every pass from it, so the image is "
        "encoded once per request. Outputs are unchanged; architectures not verified for it use the plain path.",
    )
    prefix_min_tokens: int = Field(
        16, ge=1, description="Shortest shared prefix worth caching when it holds no image token (text-only chats)."
    )
    max_prompt_tokens: int | None = Field(
        None,
        ge=1,
        description="Longest prompt accepted, in tokens, for every pass (answer prompt + max_new_tokens, risk prompt "
        "+ caption and scored tokens); None: the model's context (max_position_embeddings / model_max_length, the "
        "smaller one the checkpoint states). It can only lower the model's context. Longer requests raise "
        "PromptTooLongError before any pass runs.",
    )
    speculative_answer: bool = Field(
        False,
        description="Kept for compatibility and currently ignored: speculative answers (the unsteered greedy answer "
        "riding in the caption and risk calls) did not survive the move behind the backend protocol (issue 14); "
        "the answer runs after the assessment, continuing from the request's prompt-prefix cache.",
    )
    assess_scope: Literal["max", "conversation", "last_turn"] = Field(
        "max",
        description="What the risk pass scores: 'conversation' (the last user turn inside the whole transcript: "
        "system prompt and history), 'last_turn' (the last user turn alone), or 'max' (both, keeping the higher "
        "risk: fail-closed, so a harmless history cannot dilute a harmful turn). Requests without anything "
        "before their last user turn are scored once whatever the scope.",
    )
