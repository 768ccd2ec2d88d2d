"""A scripted backend for unit tests of the guard logic, without transformers or a model.

:class:`FakeBackend` implements :class:`~ras_guard.backends.protocol.Backend`: every request gets a deterministic
reply (a text, its word ids, the next-token log-probabilities it was scripted with) and is recorded, so tests can
check what the stages asked for (captions, risk probes, steering specs) and what the guard made of the answers.

Example:
    >>> from ras_guard import RASGuard
    >>> fake = FakeBackend(text="hello there .")
    >>> out = RASGuard(fake).generate([{"role": "user", "content": "hi"}], risk=0.0, max_new_tokens=2)
    >>> out.text, out.token_ids == fake.ids("hello there"), fake.requests[-1].max_new_tokens
    ('hello there', True, 2)
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch

from .._decoding import cut_at_stop
from ..backends.base import ModelFingerprint
from ..backends.protocol import GenerationRequest, GenerationResult

__all__ = ["FakeBackend", "FakeStream", "request_text"]

IMAGE_TOKENS = 4
"""Prompt tokens the fake counts per image."""


def request_text(request: GenerationRequest) -> str:
    """The text parts of the request's last message, joined by spaces (what scripts usually look at)."""
    if not request.messages:
        return ""
    content = request.messages[-1].get("content") or []
    if isinstance(content, str):
        return content
    return " ".join(p["text"] for p in content if isinstance(p, dict) and p.get("type") == "text")


@dataclass
class FakeStream:
    """Text deltas of one fake reply (one word at a time); ``result`` once exhausted; ``close()`` stops early."""

    pieces: list[str]
    final: GenerationResult
    result: GenerationResult | None = None
    closed: bool = False
    _pos: int = field(default=0, repr=False)

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        if self.closed or self._pos >= len(self.pieces):
            self.result = self.final
            raise StopIteration
        self._pos += 1
        return self.pieces[self._pos - 1]

    def close(self) -> None:
        """Stop the stream."""
        self.closed = True


class FakeBackend:
    """A deterministic scripted backend that records every request.

    Args:
        text: The reply of unsteered requests.
        steered_text: The reply of requests with an active steering spec.
        caption: The reply of caption requests (those asking for no distributions and showing one image only);
            default ``text``.
        logprobs: The ``[num_distributions, V]`` logits (log-softmaxed) of every request asking for them: a tensor
            (its first rows are used), or a function of the request; default ``lm_head(hidden)`` of the request's
            hidden states, so that fitting a calibration on the fake works.
        vocab_size: V.
        hidden_size: H of the hidden states and of :meth:`head_logits`.
        multimodal: Whether images are accepted.
        softcap: The final logit soft-cap the fake claims.
        context_length: The context it states (None: no limit).
        supports_tools: Whether its "chat template" renders tools.
        script: ``request -> text`` overriding the replies above where it returns a string.

    Attributes:
        requests: Every request received, in order.
        calls: How many ``generate`` / ``stream`` calls were made.
        released: Groups released by the caller.
    """

    name = "fake-backend"

    def __init__(
        self,
        *,
        text: str = "ok .",
        steered_text: str = "sorry , i cannot help with that .",
        caption: str | None = None,
        logprobs: torch.Tensor | Callable[[GenerationRequest], torch.Tensor] | None = None,
        vocab_size: int = 16,
        hidden_size: int = 4,
        multimodal: bool = True,
        softcap: float | None = None,
        context_length: int | None = None,
        supports_tools: bool = True,
        script: Callable[[GenerationRequest], str | None] | None = None,
    ) -> None:
        self.text, self.steered_text, self.caption = text, steered_text, caption
        self.logprobs = logprobs
        self.vocab_size, self.hidden_size = vocab_size, hidden_size
        self.is_multimodal = multimodal
        self.softcap = softcap
        self.context_length = context_length
        self.longest_token_chars = 16
        self._tools = supports_tools
        self.script = script
        self.requests: list[GenerationRequest] = []
        self.calls = 0
        self.released: list[str] = []
        gen = torch.Generator().manual_seed(0)
        self._head = torch.randn(vocab_size, hidden_size, generator=gen)

    @property
    def supports_tools(self) -> bool:
        """Whether tools are accepted."""
        return self._tools

    def ids(self, text: str) -> list[int]:
        """The fake's token ids of ``text`` (one per word, a stable hash)."""
        return [int(hashlib.sha256(w.encode()).hexdigest(), 16) % self.vocab_size for w in text.split()]

    def fingerprint(self) -> ModelFingerprint:
        """The fake model's fingerprint (a hash of its head)."""
        digest = hashlib.sha256(self._head.numpy().tobytes()).hexdigest()
        return ModelFingerprint("FakeForCausalLM", self.vocab_size, self.hidden_size, digest)

    def head_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """A fixed random linear head."""
        return hidden.float() @ self._head.T

    def count_prompt_tokens(self, request: GenerationRequest) -> int:
        """Words of every text part plus :data:`IMAGE_TOKENS` per image (tools: their JSON's characters / 8)."""
        n = 2
        for m in request.messages:
            content = m.get("content") or []
            parts = [{"type": "text", "text": content}] if isinstance(content, str) else content
            for p in parts:
                n += len(p["text"].split()) if p.get("type") == "text" else IMAGE_TOKENS
        return n + (len(repr(request.tools)) // 8 if request.tools else 0)

    def _reply(self, request: GenerationRequest) -> str:
        scripted = self.script(request) if self.script is not None else None
        if scripted is not None:
            return scripted
        if request.steering is not None and request.steering.active:
            return self.steered_text
        images = [p for m in request.messages for p in (m.get("content") or []) if isinstance(p, dict)
                  and p.get("type") == "image"]
        if self.caption is not None and request.num_distributions == 0 and len(images) == 1:
            return self.caption
        return self.text

    def hidden(self, request: GenerationRequest) -> torch.Tensor:
        """``[num_distributions, H]`` hidden states of a request: seeded by its text (deterministic)."""
        seed = int(hashlib.sha256(request_text(request).encode()).hexdigest()[:8], 16)
        gen = torch.Generator().manual_seed(seed)
        return 3.0 * torch.randn(request.num_distributions, self.hidden_size, generator=gen)

    def _distributions(self, request: GenerationRequest) -> torch.Tensor | None:
        n = request.num_distributions
        if n == 0:
            return None
        lp = self.logprobs(request) if callable(self.logprobs) else self.logprobs
        if lp is None:
            lp = self.head_logits(self.hidden(request))
        return torch.log_softmax(lp[:n].float(), dim=-1)

    def _result(self, request: GenerationRequest) -> GenerationResult:
        words = self._reply(request).split()
        words = words[: request.max_new_tokens]
        text, stopped = cut_at_stop(" ".join(words), list(request.stop))
        finish = "stop" if stopped or len(words) < request.max_new_tokens else "length"
        hidden = self.hidden(request) if request.return_hidden else None
        return GenerationResult(self.ids(" ".join(words)), text, finish, self.count_prompt_tokens(request),
                                self._distributions(request), hidden)

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        """One scripted result per request (recorded)."""
        self.calls += 1
        self.requests.extend(requests)
        return [self._result(r) for r in requests]

    def stream(self, request: GenerationRequest) -> FakeStream:
        """The scripted reply one word at a time."""
        self.calls += 1
        self.requests.append(request)
        res = self._result(request)
        words = res.text.split()
        return FakeStream([w if i == 0 else " " + w for i, w in enumerate(words)], res)

    def release(self, groups: Sequence[str]) -> None:
        """Record released groups."""
        self.released.extend(groups)
