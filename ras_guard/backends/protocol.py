"""The backend seam in RAS's own terms: generation requests in, generation results out.

Like httpx's transport, a backend is one small protocol. The stage drivers above it (captions, risk probes,
steered answers) speak only these records; nothing above ``ras_guard/backends/`` imports an engine or reads a
tensor layout. A request carries a conversation (normalized content parts, images as PIL), limits, sampling, stop
strings, tools, an optional :class:`~ras_guard.steering.SteeringSpec`, an optional response format, and whether
the next-token distributions of its first steps are wanted; a result carries the generated ids and text, why it
ended, the prompt size and, when asked, those distributions.

Backends: :class:`ras_guard.backends.hf.HFBackend` (transformers, in process), the vLLM backend
(:mod:`ras_guard.backends.vllm`), and :class:`ras_guard.testing.FakeBackend` for unit tests.

Requests of one guard call (the captions, risk probes and answers of its user queries) share a ``group``; a
backend may keep what they have in common (the prompt prefix's KV cache) between calls of that group, and must not
let groups see each other's steering. The caller ends a group with the backend's optional ``release(groups)``
(backends that keep nothing need not define it); :func:`ras_guard.stages.release` calls it where it exists.

Optional members (additive, looked up with ``getattr``): ``release(groups)``; ``count_prompt_tokens_batch(requests)``
(several counts in one go); ``context_length`` (the context the
checkpoint states, or None) and ``longest_token_chars`` (characters of the longest vocabulary entry) for the
prompt limits; the iterator returned by ``stream`` may carry the finished :class:`GenerationResult` as ``result``
once exhausted, and a ``close()`` that cancels the generation.

Example:
    >>> req = GenerationRequest(messages=[{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
    ...                         max_new_tokens=3, num_distributions=3)
    >>> req.sampling.greedy, req.steering is None
    (True, True)
    >>> Sampling(temperature=0.7).greedy
    False
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch

from ..steering import SteeringSpec
from .base import ModelFingerprint

__all__ = [
    "AsyncBackend",
    "Backend",
    "GenerationRequest",
    "GenerationResult",
    "Sampling",
]


@dataclass(frozen=True)
class Sampling:
    """How tokens are picked after steering.

    Attributes:
        temperature: 0 for greedy; above 0 to sample; None leaves it to the checkpoint's generation config.
        top_p: Nucleus mass in (0, 1], or None.
        top_k: Top-k cut, or None.
        seed: Seed of this request's sampling, or None.
    """

    temperature: float | None = 0.0
    top_p: float | None = None
    top_k: int | None = None
    seed: int | None = None

    @property
    def greedy(self) -> bool:
        """Whether decoding is greedy (argmax)."""
        return self.temperature == 0.0


GREEDY = Sampling()


@dataclass(frozen=True)
class GenerationRequest:
    """One row of generation.

    Attributes:
        messages: The conversation, content as lists of parts (``text`` / ``image`` with a PIL image), as
            :meth:`ras_guard.messages.Conversation.as_list` gives it.
        max_new_tokens: Token budget of the reply.
        min_new_tokens: Tokens before EOS is allowed.
        sampling: Decoding after steering (default greedy).
        stop: Stop strings; the text is cut before the first one.
        tools: Tool schemas rendered by the chat template, or None.
        steering: The steering of the first N steps, or None for a plain generation.
        num_distributions: How many first steps' next-token log-probabilities to return (0: none).
        return_hidden: Also return the first steps' final-norm hidden states (``num_distributions`` of them).
        response_format: A :class:`ras_guard.constrained.ResponseFormat` to constrain the reply, or None.
        group: Requests of one guard call share it (see the module docstring); None: no sharing.
        options: Engine-specific generation options passed through as they are (transformers: ``generate``
            keyword arguments such as ``repetition_penalty``); a backend raises on options it does not know.
        image_hashes: Hashes of the images the conversation shows, in token order, when the caller knows them
            (:attr:`ras_guard.messages.Conversation.image_hashes`); None: the backend hashes them if it needs to.
    """

    messages: list[dict[str, Any]]
    max_new_tokens: int
    min_new_tokens: int = 0
    sampling: Sampling = GREEDY
    stop: tuple[str, ...] = ()
    tools: list[dict[str, Any]] | None = None
    steering: SteeringSpec | None = None
    num_distributions: int = 0
    return_hidden: bool = False
    response_format: Any = None
    group: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    image_hashes: tuple[str, ...] | None = None


@dataclass
class GenerationResult:
    """What one request produced.

    Attributes:
        token_ids: Generated ids, cut at the first EOS or stop string.
        text: Their text, special tokens skipped (cut before a stop string).
        finish_reason: ``"stop"`` (EOS or a stop string) or ``"length"``.
        prompt_tokens: Tokens of the rendered prompt.
        logprobs: ``[num_distributions, V]`` float32 log-softmax of the model's logits (after any soft-cap, before
            steering and sampling) at the first steps, or None when not asked.
        hidden: ``[num_distributions, H]`` final-norm hidden states (the lm_head input), or None when not asked.
        timings: Seconds spent, by phase (``"prefill"``, ``"decode"``, ...), as far as the backend knows.
    """

    token_ids: list[int]
    text: str
    finish_reason: str
    prompt_tokens: int
    logprobs: torch.Tensor | None = None
    hidden: torch.Tensor | None = None
    timings: dict[str, float] = field(default_factory=dict)


@runtime_checkable
class Backend(Protocol):
    """What the RAS stage drivers need from a model runtime."""

    name: str
    is_multimodal: bool
    softcap: float | None

    @property
    def supports_tools(self) -> bool:
        """Whether the chat template renders ``tools``."""

    def fingerprint(self) -> ModelFingerprint:
        """Identify the model for calibration checks."""

    def head_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """``lm_head(hidden)`` in float32, uncapped (the prototype logits of a calibration)."""

    def count_prompt_tokens(self, request: GenerationRequest) -> int:
        """Tokens the rendered prompt of ``request`` takes (for prompt limits)."""

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        """Run every request (batched as the engine likes) and return one result per request, in order."""

    def stream(self, request: GenerationRequest) -> Iterator[str]:
        """Text deltas of one request; closing the iterator cancels the generation."""


@runtime_checkable
class AsyncBackend(Protocol):
    """The async twin of :class:`Backend`: concurrent callers share the engine's batches."""

    async def agenerate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        """Run every request; one result per request, in order."""

    def astream(self, request: GenerationRequest) -> AsyncIterator[str]:
        """Text deltas of one request; closing the iterator cancels the generation."""
