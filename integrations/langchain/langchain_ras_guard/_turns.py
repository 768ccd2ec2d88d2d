"""One guarded call between assessment and messages: decision, metadata, generation arguments (private).

Example:
    >>> max_new_tokens(None, 256)
    256
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from ras_guard import Decision, GuardedGeneration, RiskAssessment
from ras_guard.errors import GuardTimeoutError, InvalidMessageError
from ras_guard.sampling import sampling_kwargs

from ._tools import ParsedOutput, parse_tool_calls, tool_call_chunks

__all__ = ["Pending", "Turn", "generation_kwargs", "max_new_tokens", "ras_metadata", "remaining"]

MODEL_PROVIDER = "ras_guard"
"""``response_metadata["model_provider"]`` of every answer (on the last chunk when streaming)."""
_NO_USAGE = UsageMetadata(input_tokens=0, output_tokens=0, total_tokens=0)


@dataclass
class Pending:
    """One call after conversion, before its assessment.

    Attributes:
        messages: The request as ras-guard chat dicts (images as bytes).
        generate_kwargs: Arguments of ``guard.generate`` without ``risk`` / ``assessment``.
        record: The caller's risk (as a given record) or reused assessment; None: assess it.
        risk_given: The caller gave ``ras_risk`` (the answer is steered with ``risk=``).
        tool_names: Names of the bound tools.
        forced: The tool ``tool_choice`` forces, if exactly one.
        seed: Seed of torch's generator before the answer (None: not seeded).
        deadline: ``time.monotonic()`` by which the whole call must be over (the chat model's ``timeout``).
        timeout: That ``timeout`` in seconds (for messages).
    """

    messages: list[dict[str, Any]]
    generate_kwargs: dict[str, Any]
    record: RiskAssessment | None = None
    risk_given: bool = False
    tool_names: list[str] = field(default_factory=list)
    forced: str | None = None
    seed: int | None = None
    deadline: float | None = None
    timeout: float | None = None


@dataclass
class Turn:
    """One call after conversion and assessment, before generation.

    Attributes:
        messages: The request as ras-guard chat dicts (images as bytes).
        decision: What the policy decided (the answer's own decision may only confirm it).
        ras: The risk metadata, as sent with the event and on the first chunk.
        generate_kwargs: Arguments of ``guard.generate`` / ``guard.stream``.
        tool_names: Names of the bound tools (empty: no tool parsing).
        forced: The tool ``tool_choice`` forces, if exactly one.
        model_name: Reported model name.
        refusal: Text of the refusal block.
        policy: The model's policy.
        seed: Seed of torch's generator before the answer (None: not seeded).
        deadline: ``time.monotonic()`` by which the whole call must be over (the chat model's ``timeout``).
        timeout: That ``timeout`` in seconds (for messages).
    """

    messages: list[dict[str, Any]]
    decision: Decision
    ras: dict[str, Any]
    generate_kwargs: dict[str, Any]
    model_name: str
    refusal: str
    policy: str
    tool_names: list[str] = field(default_factory=list)
    forced: str | None = None
    seed: int | None = None
    deadline: float | None = None
    timeout: float | None = None

    def answer_kwargs(self) -> dict[str, Any]:
        """``guard.generate`` / ``guard.stream`` arguments, with the time left of the call's deadline."""
        if self.deadline is None:
            return self.generate_kwargs
        left = remaining(self.deadline, self.timeout, "before the answer")
        return {**self.generate_kwargs, "timeout": left}

    # ------------------------------------------------------------------ whole messages
    def result(self, gen: GuardedGeneration | None) -> ChatResult:
        """The ``ChatResult`` of the call: the refusal when ``gen`` is None (blocked), else the answer."""
        message = self.refusal_message() if gen is None else self.answer_message(gen)
        return ChatResult(generations=[ChatGeneration(message=message)])

    def refusal_message(self, gen: GuardedGeneration | None = None) -> AIMessage:
        """A standard refusal block, nothing generated: a blocked request, or ``gen`` refused by a grammar."""
        ras = dict(self.ras)
        if gen is not None:
            ras.update(decision=gen.decision.value, timings=dict(gen.timings))
        return AIMessage(
            content=[{"type": "refusal", "refusal": self.refusal}],
            usage_metadata=_NO_USAGE,
            response_metadata={
                "model_name": self.model_name,
                "model_provider": MODEL_PROVIDER,
                "finish_reason": "refusal",
                "ras": ras,
            },
        )

    def answer_message(self, gen: GuardedGeneration) -> AIMessage:
        """The answer of a generated request, tool calls parsed (refused under a grammar: a refusal)."""
        if gen.finish_reason == "refusal":
            return self.refusal_message(gen)
        parsed = self.parse(gen.text)
        ras = {**self.ras, "timings": dict(gen.timings), "guard_tokens": gen.usage.guard_tokens}
        if self.policy != "monitor":
            ras["decision"] = gen.decision.value
        return AIMessage(
            content=parsed.text,
            tool_calls=parsed.tool_calls,
            invalid_tool_calls=parsed.invalid_tool_calls,
            usage_metadata=usage(gen),
            response_metadata={
                "model_name": self.model_name,
                "model_provider": MODEL_PROVIDER,
                "finish_reason": "tool_calls" if parsed.tool_calls else gen.finish_reason,
                "ras": ras,
            },
        )

    def parse(self, text: str) -> ParsedOutput:
        """Split text into content and tool calls when tools are bound."""
        return parse_tool_calls(text, self.tool_names, self.forced) if self.tool_names else ParsedOutput(text)

    # ------------------------------------------------------------------ streamed chunks
    def first_chunk(self) -> ChatGenerationChunk:
        """The first chunk: the risk metadata (and the refusal block when blocked), before any token."""
        blocked = self.decision is Decision.BLOCKED
        content: Any = [{"type": "refusal", "refusal": self.refusal}] if blocked else ""
        return ChatGenerationChunk(
            message=AIMessageChunk(content=content, response_metadata={"ras": self.ras})
        )

    @staticmethod
    def text_chunk(text: str) -> ChatGenerationChunk:
        """One streamed piece."""
        return ChatGenerationChunk(message=AIMessageChunk(content=text))

    def last_chunk(self, tail: ParsedOutput | None, result: GuardedGeneration | None) -> ChatGenerationChunk:
        """The closing chunk: held-back text and tool calls, usage, model name, ``chunk_position="last"``."""
        if result is None:  # blocked
            msg = AIMessageChunk(
                content=[],
                usage_metadata=_NO_USAGE,
                response_metadata={
                    "model_name": self.model_name,
                    "model_provider": MODEL_PROVIDER,
                    "finish_reason": "refusal",
                },
                chunk_position="last",
            )
            return ChatGenerationChunk(message=msg)
        calls = tail.tool_calls if tail else []
        if result.finish_reason == "refusal":  # refused under a grammar
            msg = AIMessageChunk(
                content=[{"type": "refusal", "refusal": self.refusal}],
                usage_metadata=_NO_USAGE,
                response_metadata={"model_name": self.model_name, "finish_reason": "refusal"},
                chunk_position="last",
            )
            return ChatGenerationChunk(message=msg)
        msg = AIMessageChunk(
            content=tail.text if tail else "",
            tool_call_chunks=tool_call_chunks(tail) if tail else [],  # type: ignore[arg-type]
            usage_metadata=usage(result),
            response_metadata={
                "model_name": self.model_name,
                "model_provider": MODEL_PROVIDER,
                "finish_reason": "tool_calls" if calls else result.finish_reason,
            },
            chunk_position="last",
        )
        return ChatGenerationChunk(message=msg)


def usage(gen: GuardedGeneration) -> UsageMetadata:
    """LangChain usage of a guarded generation (guard tokens are reported in the risk metadata)."""
    return UsageMetadata(
        input_tokens=int(gen.usage.input_tokens),
        output_tokens=int(gen.usage.output_tokens),
        total_tokens=int(gen.usage.input_tokens + gen.usage.output_tokens),
    )


def generation_kwargs(
    extra: dict[str, Any],
    *,
    model_kwargs: dict[str, Any],
    temperature: float | None,
    top_p: float | None,
) -> dict[str, Any]:
    """``model.generate`` arguments: ``model_kwargs``, then sampling (``ras_guard.sampling.sampling_kwargs``:
    ``top_p`` alone samples at temperature 1.0), then per-call extras (the timeout is a deadline, see
    Turn)."""
    gen = dict(model_kwargs)
    gen.update(sampling_kwargs(temperature, top_p))
    gen.update(extra)
    return gen


def ras_metadata(
    assessment: RiskAssessment, decision: Decision | str, *, policy: str, model_name: str
) -> dict[str, Any]:
    """The risk metadata dict (see ``RASGuardedChatModel.ras_metadata``)."""
    a = assessment
    similarity = (
        a.similarity if isinstance(a.similarity, (int, float)) and math.isfinite(a.similarity) else None
    )
    return {
        "risk": float(a.risk),
        "similarity": None if similarity is None else float(similarity),
        "visual_context": a.visual_context,
        "decision": Decision(decision).value,
        "policy": policy,
        "risk_given": a.given,
        "calibration_id": a.calibration_id,
        "image_sha256": list(a.image_sha256),
        "guard_tokens": a.guard_tokens,
        "timings": dict(a.timings),
        "model_name": model_name,
    }


def remaining(deadline: float | None, timeout: float | None, where: str) -> float | None:
    """Seconds left until ``deadline`` (None: no deadline).

    Raises:
        GuardTimeoutError: The deadline has passed.
    """
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0.0:
        raise GuardTimeoutError(
            f"the guarded call ran past its timeout of {timeout:g} s {where}; nothing was returned. Raise "
            "the chat model's timeout, shorten the prompt or max_tokens, or use a faster device."
        )
    return left


def max_new_tokens(value: Any, default: int) -> int:
    """The per-call ``max_tokens`` (``default`` when not given).

    Raises:
        InvalidMessageError: ``value`` is not an integer >= 1 (0 used to fall back to the default silently).
    """
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidMessageError(f"max_tokens must be an integer >= 1, got {value!r}.")
    return value
