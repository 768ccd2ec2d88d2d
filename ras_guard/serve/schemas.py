"""Request models of the OpenAI-compatible chat API (pydantic, unknown fields forbidden).

Fields OpenAI defines but this server cannot honour are declared so that their default value is accepted and
anything else is refused with a clear message, instead of being silently ignored.

Example:
    >>> req = ChatCompletionRequest.model_validate({"model": "demo", "messages": [{"role": "user", "content": "hi"}]})
    >>> req.n, req.stream
    (1, False)
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["ChatCompletionRequest", "Message", "RASOptions", "StreamOptions"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ImageURL(_Strict):
    """``{"url": "data:image/png;base64,..." | "https://...", "detail": ...}``."""

    url: str = Field(min_length=1)
    detail: Literal["auto", "low", "high"] | None = None


class TextPart(_Strict):
    type: Literal["text"]
    text: str


class ImagePart(_Strict):
    type: Literal["image_url"]
    image_url: ImageURL


class RefusalPart(_Strict):
    type: Literal["refusal"]
    refusal: str


class FunctionCall(_Strict):
    name: str
    arguments: str


class ToolCall(_Strict):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class Message(_Strict):
    """One chat message (system, developer, user, assistant or tool)."""

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart | ImagePart | RefusalPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    refusal: str | None = None


class StreamOptions(_Strict):
    include_usage: bool = False
    include_obfuscation: bool | None = None


class RASOptions(_Strict):
    """The ``ras`` extension of a request: a per-request policy override."""

    policy: Literal["steer", "block", "monitor"] | None = None
    block_threshold: float | None = Field(default=None, ge=0.0, le=1.0)


class FunctionDef(_Strict):
    name: str = Field(min_length=1)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(_Strict):
    type: Literal["function"]
    function: FunctionDef


_IGNORED_DEFAULTS: dict[str, Any] = {
    "frequency_penalty": (None, 0, 0.0),
    "presence_penalty": (None, 0, 0.0),
    "logprobs": (None, False),
    "top_logprobs": (None, 0),
    "logit_bias": (None, {}),
    "modalities": (None, ["text"]),
    "audio": (None,),
    "prediction": (None,),
    "web_search_options": (None,),
    "reasoning_effort": (None,),
}
"""OpenAI fields accepted only at their default value (the engine cannot honour anything else)."""


class ChatCompletionRequest(_Strict):
    """``POST /v1/chat/completions`` body."""

    model: str = Field(min_length=1)
    messages: list[Message] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    seed: int | None = None
    stop: str | list[str] | None = None
    n: int | None = Field(default=None, ge=1)
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    tools: list[Tool] | None = None
    tool_choice: Literal["none", "auto", "required"] | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = None
    ras: RASOptions | None = None
    min_tokens: int | None = Field(default=None, ge=0)
    """vLLM's extension: generate at least this many tokens (EOS is ignored before)."""
    # accepted, no effect on generation
    user: str | None = None
    metadata: dict[str, str] | None = None
    store: bool | None = None
    service_tier: str | None = None
    # accepted only at their defaults (see _IGNORED_DEFAULTS)
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    logit_bias: dict[str, float] | None = None
    modalities: list[str] | None = None
    audio: dict[str, Any] | None = None
    prediction: dict[str, Any] | None = None
    web_search_options: dict[str, Any] | None = None
    reasoning_effort: str | None = None

    @model_validator(mode="after")
    def _defaults_only(self) -> ChatCompletionRequest:
        for name, allowed in _IGNORED_DEFAULTS.items():
            if getattr(self, name) not in allowed:
                raise ValueError(
                    f"{name}={getattr(self, name)!r} is not supported by this server; leave it out."
                )
        if self.n is None:
            self.n = 1
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        if len(stops) > 4:
            raise ValueError(f"stop has {len(stops)} entries; at most 4 are allowed.")
        return self

    @property
    def stops(self) -> list[str]:
        """The stop strings as a list."""
        return [self.stop] if isinstance(self.stop, str) else [s for s in (self.stop or []) if s]
