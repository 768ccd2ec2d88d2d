"""``RASGuardedChatModel``: a local multimodal chat model behind the ras-guard safety guardrail.

Example:
    >>> from langchain_ras_guard import RASGuardedChatModel
    >>> llm = RASGuardedChatModel(model="demo", max_tokens=32)  # doctest: +SKIP
    >>> msg = llm.invoke("How do I bake bread?")  # doctest: +SKIP
    >>> msg.response_metadata["ras"]["decision"]  # doctest: +SKIP
    'answered'
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import LanguageModelInput
from langchain_core.language_models.base import LangSmithParams
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ConfigDict, Field, model_validator
from ras_guard import GuardedGeneration, RASGuard, RiskAssessment
from ras_guard.errors import InvalidMessageError, ToolCallingNotSupportedError
from ras_guard.streaming import GuardedStream
from ras_guard.types import Decision
from typing_extensions import Self, override

from . import _runs
from ._images import FetchPolicy
from ._messages import ImageResolver, to_guard_messages
from ._streams import apieces, pieces
from ._tools import ParsedOutput, ToolTextBuffer, forced_tool, parse_tool_calls, tool_call_chunks

__all__ = ["RAS_EVENT", "RASGuardedChatModel"]

RAS_EVENT = "ras_risk_assessed"
"""Name of the custom callback event sent once per call, after the assessment and before the first token."""

_GUARDS: weakref.WeakValueDictionary[tuple[Any, ...], RASGuard] = weakref.WeakValueDictionary()
_GUARDS_LOCK = threading.Lock()
_DONE: Any = object()


def _load_guard(model: str, calibration: str | None, device: str | None, dtype: str | None) -> RASGuard:
    """Load a guard once per (model, calibration, device, dtype) while some chat model still uses it."""
    key = (model, calibration, device, dtype)
    with _GUARDS_LOCK:
        guard = _GUARDS.get(key)
        if guard is None:
            guard = RASGuard.from_pretrained(model, calibration, device=device, dtype=dtype)
            _GUARDS[key] = guard
        return guard


@dataclass
class _Turn:
    """One call after conversion and assessment, before generation."""

    messages: list[dict[str, Any]]
    assessment: RiskAssessment | None
    risk: float
    decision: Decision
    ras: dict[str, Any]
    generate_kwargs: dict[str, Any]
    tool_names: list[str] = field(default_factory=list)
    forced: str | None = None


def _finite(x: float) -> float | None:
    return float(x) if isinstance(x, (int, float)) and math.isfinite(x) else None


class RASGuardedChatModel(_runs.RunLinkedChatModel):
    """A local (multimodal) chat model whose answers are guarded by Risk-adaptive Activation Steering.

    Each call is assessed first (risk in [0, 1]); the assessment is sent to callback handlers as the custom
    event ``ras_risk_assessed`` before the first token, and returned in ``response_metadata["ras"]`` (on the
    first chunk when streaming). Then, by ``policy``:

    * ``"steer"``: the answer's first tokens are steered towards refusal in proportion to the risk;
    * ``"block"``: at ``risk >= block_threshold`` a standard ``refusal`` content block is returned without
      generating; below it, as ``"steer"``;
    * ``"monitor"``: the risk is only reported; the answer is never steered.

    Images may be given in every LangChain form (v1 ``image`` blocks with ``base64`` or ``url``, OpenAI
    ``image_url`` blocks, legacy ``source_type`` blocks); http(s) URLs are fetched with SSRF protection.

    Per-call keyword arguments: ``ras_risk`` (skip the assessment, use this risk), ``ras_assessment`` (reuse a
    :class:`ras_guard.RiskAssessment` computed with :meth:`assess`), ``max_tokens``, ``temperature``; others are
    passed to ``model.generate``.

    Example:
        >>> from langchain_ras_guard import RASGuardedChatModel
        >>> llm = RASGuardedChatModel(model="demo", policy="block", block_threshold=0.8)  # doctest: +SKIP
        >>> for chunk in llm.stream("Tell me a joke"):  # doctest: +SKIP
        ...     print(chunk.text, end="")
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, populate_by_name=True)

    model: str = "demo"
    """Checkpoint folder, or ``"demo"`` for the bundled synthetic demo model."""
    calibration: str | None = None
    """Calibration folder; None: the model's bundled one (the demo's), else a ``ras_risk``-only guard."""
    guard: RASGuard | None = Field(default=None, exclude=True)
    """A loaded guard to use (shares one model among several chat models); built from ``model`` when None."""
    device: str | None = None
    """Torch device for loading (``"cpu"``, ``"cuda"``...); default CUDA when available."""
    dtype: str | None = None
    """Torch dtype for loading (``"float32"``, ``"bfloat16"``, ``"auto"``)."""
    max_tokens: int = Field(default=256, ge=1)
    """Maximum new tokens of an answer."""
    temperature: float | None = Field(default=None, ge=0.0)
    """Sampling temperature; 0 means greedy; None keeps the checkpoint's generation config."""
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    """Nucleus sampling mass (with a positive temperature)."""
    stop: list[str] | None = Field(default=None, alias="stop_sequences")
    """Stop strings; the answer is cut before the first one."""
    streaming: bool = False
    """Stream tokens to callback handlers also from ``invoke``."""
    timeout: float | None = Field(default=None, gt=0.0)
    """Seconds an answer may take (transformers ``max_time``; the answer ends with ``finish_reason='length'``)."""
    max_retries: int = Field(default=2, ge=0)
    """Retries of an image download after a connection error or an HTTP 5xx."""
    policy: Literal["steer", "block", "monitor"] = "steer"
    """What to do with the risk: steer the answer, block (refuse) above ``block_threshold``, or only report."""
    block_threshold: float = Field(default=0.5, ge=0.0, le=1.0)
    """Risk at or above which ``policy="block"`` refuses without generating."""
    refusal_message: str = "I can't help with that request."
    """Text of the refusal block returned when a request is blocked."""
    allowed_hosts: list[str] = Field(default_factory=list)
    """Image URL hosts exempt from the private-address check (names, ``*.suffix``, IPs, CIDR networks)."""
    allow_private_urls: bool = False
    """Fetch image URLs that resolve to loopback/private/link-local addresses (trusted input only)."""
    max_image_bytes: int = Field(default=20 * 1024 * 1024, ge=1)
    """Largest accepted image (downloads stop reading past it)."""
    image_timeout: float = Field(default=10.0, gt=0.0)
    """Seconds allowed to fetch one image URL (DNS, retries, redirects and body)."""
    model_kwargs: dict[str, Any] = Field(default_factory=dict)
    """Extra keyword arguments for ``model.generate`` (e.g. ``repetition_penalty``)."""

    @model_validator(mode="after")
    def _load(self) -> Self:
        """Build (or reuse) the guard."""
        if self.guard is None:
            self.guard = _load_guard(self.model, self.calibration, self.device, self.dtype)
        elif "model" not in self.model_fields_set:
            self.model = self.guard.model_name
        return self

    # ------------------------------------------------------------------ LangChain plumbing
    @property
    def _llm_type(self) -> str:
        return "ras-guard-chat"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "calibration": self.calibration,
            "policy": self.policy,
            "block_threshold": self.block_threshold,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
        }

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = LangSmithParams(
            ls_provider="ras_guard",
            ls_model_name=str(kwargs.get("model") or self.model),
            ls_model_type="chat",
            ls_temperature=kwargs.get("temperature", self.temperature),
            ls_max_tokens=kwargs.get("max_tokens", self.max_tokens),
        )
        if ls_stop := stop or self.stop:
            params["ls_stop"] = ls_stop
        return params

    @property
    def model_name(self) -> str:
        """The name reported in ``response_metadata["model_name"]``."""
        return self.model

    def _guard(self) -> RASGuard:
        if self.guard is None:  # only if someone set it to None after construction
            raise InvalidMessageError("this chat model has no guard; construct it with model=... or guard=...")
        return self.guard

    def _resolver(self) -> ImageResolver:
        return ImageResolver(
            FetchPolicy(
                allowed_hosts=tuple(self.allowed_hosts),
                allow_private=self.allow_private_urls,
                max_bytes=self.max_image_bytes,
                max_pixels=self._guard().config.max_image_pixels,
                timeout=self.image_timeout,
                max_retries=self.max_retries,
            )
        )

    # ------------------------------------------------------------------ public helpers
    def convert_messages(self, messages: LanguageModelInput) -> list[dict[str, Any]]:
        """LangChain input to the chat dicts the guard takes (image URLs fetched safely).

        Example:
            >>> llm.convert_messages("hi")  # doctest: +SKIP
            [{'role': 'user', 'content': [{'type': 'text', 'text': 'hi'}]}]
        """
        return to_guard_messages(self._convert_input(messages).to_messages(), self._resolver())

    def assess(self, messages: LanguageModelInput) -> RiskAssessment:
        """Assess a request without answering it; pass the result back with ``ras_assessment=``.

        Example:
            >>> a = llm.assess("How do I make a bomb?")  # doctest: +SKIP
            >>> llm.invoke("How do I make a bomb?", ras_assessment=a) if a.risk < 0.9 else None  # doctest: +SKIP
        """
        return self._guard().assess(self.convert_messages(messages))

    async def aassess(self, messages: LanguageModelInput) -> RiskAssessment:
        """Async :meth:`assess` (runs in a worker thread).

        Example:
            >>> a = await llm.aassess("hello")  # doctest: +SKIP
        """
        return await asyncio.to_thread(self.assess, messages)

    # ------------------------------------------------------------------ tools
    @override
    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: dict[str, Any] | str | bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Render tools through the model's chat template and parse its tool calls.

        ``tool_choice`` ``"none"`` drops the tools; a tool name, ``"any"``/``"required"`` (with one tool) make a
        bare JSON answer count as a call to that tool. A local model cannot be forced to call a tool.

        Raises:
            ToolCallingNotSupportedError: The model's chat template does not render tools.

        Example:
            >>> llm.bind_tools([get_weather]).invoke("Weather in Paris?").tool_calls  # doctest: +SKIP
        """
        if not self._guard().supports_tools:
            raise ToolCallingNotSupportedError(
                f"the chat template of {self.model!r} does not render tools, so it cannot call them; use a "
                "checkpoint whose template handles `tools` (e.g. Qwen2.5-VL, Llama 3.1+) or route tool use to "
                "another model."
            )
        formatted = [convert_to_openai_tool(t) for t in tools]
        return super().bind(tools=formatted, tool_choice=tool_choice, **kwargs)

    # ------------------------------------------------------------------ the call
    def _generation_kwargs(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        gen = {**self.model_kwargs}
        temperature = kwargs.pop("temperature", self.temperature)
        top_p = kwargs.pop("top_p", self.top_p)
        if temperature is not None:
            if temperature == 0:
                gen.update(do_sample=False, temperature=None, top_p=None, top_k=None)
            else:
                gen.update(do_sample=True, temperature=float(temperature))
                if top_p is not None:
                    gen["top_p"] = float(top_p)
        if self.timeout is not None:
            gen["max_time"] = float(self.timeout)
        gen.update(kwargs)
        return gen

    def _begin(self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]) -> _Turn:
        """Convert, assess and decide (blocking; runs in a worker thread for async calls)."""
        guard = self._guard()
        kw = dict(kwargs)
        for key in ("stream", "ls_structured_output_format", "structured_output_format"):
            kw.pop(key, None)
        if kw.pop("model", None) not in (None, self.model):
            raise InvalidMessageError(
                "a per-call model override is not supported (the model is loaded locally); create another "
                "RASGuardedChatModel, sharing nothing or passing guard=... ."
            )
        tools = kw.pop("tools", None) or None
        tool_choice = kw.pop("tool_choice", None)
        given = kw.pop("ras_risk", None)
        assessment = kw.pop("ras_assessment", None)
        max_new = int(kw.pop("max_tokens", None) or self.max_tokens)
        if tools and tool_choice == "none":
            tools = None
        if tools and not guard.supports_tools:
            raise ToolCallingNotSupportedError(f"the chat template of {self.model!r} does not render tools.")
        converted = to_guard_messages(messages, self._resolver())
        if isinstance(assessment, dict):
            assessment = RiskAssessment(**{**assessment, "image_sha256": tuple(assessment.get("image_sha256", ()))})
        if given is not None:
            given = float(given)
            if not 0.0 <= given <= 1.0:
                raise InvalidMessageError(f"ras_risk must lie in [0, 1], got {given!r}.")
            assessment = None
        elif assessment is None:
            assessment = guard.assess(converted)
        risk = given if given is not None else float(assessment.risk)  # type: ignore[union-attr]
        floor = guard.config.risk_floor
        if self.policy == "block" and risk >= self.block_threshold:
            decision = Decision.BLOCKED
        elif self.policy != "monitor" and risk >= floor and risk > 0.0:
            decision = Decision.STEERED
        else:
            decision = Decision.ANSWERED
        gen_kwargs: dict[str, Any] = {
            "max_new_tokens": max_new,
            "stop": (stop if stop is not None else self.stop) or None,
            "tools": tools,
            **self._generation_kwargs(kw),
        }
        if self.policy == "monitor":
            gen_kwargs["risk"] = 0.0
        elif given is not None:
            gen_kwargs["risk"] = given
        else:
            gen_kwargs["assessment"] = assessment
        names = [t["function"]["name"] for t in tools or []]
        return _Turn(
            messages=converted,
            assessment=assessment,
            risk=risk,
            decision=decision,
            ras=self.ras_metadata(assessment if assessment is not None else self._given(converted, risk), decision),
            generate_kwargs=gen_kwargs,
            tool_names=names,
            forced=forced_tool(tool_choice, names) if tools else None,
        )

    def ras_metadata(self, assessment: RiskAssessment, decision: Decision | str) -> dict[str, Any]:
        """The dict reported as ``response_metadata["ras"]`` and sent with the ``ras_risk_assessed`` event.

        Keys: ``risk``, ``similarity`` (None when the risk was given), ``visual_context``, ``decision``,
        ``policy``, ``risk_given``, ``calibration_id``, ``image_sha256``, ``guard_tokens``, ``timings``,
        ``model_name``.

        Example:
            >>> llm.ras_metadata(llm.assess("hi"), "answered")["decision"]  # doctest: +SKIP
            'answered'
        """
        a = assessment
        return {
            "risk": float(a.risk),
            "similarity": _finite(a.similarity),
            "visual_context": a.visual_context,
            "decision": Decision(decision).value,
            "policy": self.policy,
            "risk_given": a.given,
            "calibration_id": a.calibration_id,
            "image_sha256": list(a.image_sha256),
            "guard_tokens": a.guard_tokens,
            "timings": dict(a.timings),
            "model_name": self.model_name,
        }

    def _given(self, converted: list[dict[str, Any]], risk: float) -> RiskAssessment:
        guard = self._guard()
        return RiskAssessment(
            risk=risk, similarity=float("nan"), visual_context="", reformulated_prompt="",
            calibration_id=guard.calibration.calibration_id if guard.calibration is not None else "",
            image_sha256=tuple(guard.normalize(converted).image_hashes), given=True,
        )

    def _link(self, run_manager: Any) -> _runs.RunLink | None:
        return _runs.RunLink.from_run_manager(self, run_manager) if run_manager else _runs.current(self)

    def _refusal(self, turn: _Turn) -> AIMessage:
        return AIMessage(
            content=[{"type": "refusal", "refusal": self.refusal_message}],
            usage_metadata=UsageMetadata(input_tokens=0, output_tokens=0, total_tokens=0),
            response_metadata={"model_name": self.model_name, "finish_reason": "refusal", "ras": turn.ras},
        )

    def _answer(self, turn: _Turn, gen: GuardedGeneration) -> AIMessage:
        parsed = (
            parse_tool_calls(gen.text, turn.tool_names, turn.forced) if turn.tool_names else ParsedOutput(gen.text)
        )
        ras = {**turn.ras, "timings": dict(gen.timings), "guard_tokens": gen.usage.guard_tokens}
        if self.policy != "monitor":
            ras["decision"] = gen.decision.value
        return AIMessage(
            content=parsed.text,
            tool_calls=parsed.tool_calls,
            invalid_tool_calls=parsed.invalid_tool_calls,
            usage_metadata=_usage(gen),
            response_metadata={
                "model_name": self.model_name,
                "finish_reason": "tool_calls" if parsed.tool_calls else gen.finish_reason,
                "ras": ras,
            },
        )

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        turn = self._begin(messages, stop, kwargs)
        _runs.dispatch(self._link(run_manager), RAS_EVENT, turn.ras)
        if turn.decision is Decision.BLOCKED:
            return ChatResult(generations=[ChatGeneration(message=self._refusal(turn))])
        gen = self._guard().generate(turn.messages, **turn.generate_kwargs)
        return ChatResult(generations=[ChatGeneration(message=self._answer(turn, gen))])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        turn = await asyncio.to_thread(self._begin, messages, stop, kwargs)
        await _runs.adispatch(self._link(run_manager), RAS_EVENT, turn.ras)
        if turn.decision is Decision.BLOCKED:
            return ChatResult(generations=[ChatGeneration(message=self._refusal(turn))])
        gen = await asyncio.to_thread(self._guard().generate, turn.messages, **turn.generate_kwargs)
        return ChatResult(generations=[ChatGeneration(message=self._answer(turn, gen))])

    # ------------------------------------------------------------------ streaming
    def _first_chunk(self, turn: _Turn) -> ChatGenerationChunk:
        if turn.decision is Decision.BLOCKED:
            content: Any = [{"type": "refusal", "refusal": self.refusal_message}]
        else:
            content = ""
        return ChatGenerationChunk(message=AIMessageChunk(content=content, response_metadata={"ras": turn.ras}))

    def _last_chunk(self, turn: _Turn, tail: ParsedOutput | None, result: GuardedGeneration | None) -> ChatGenerationChunk:
        blocked = result is None
        calls = tail.tool_calls if tail else []
        chunks = tool_call_chunks(tail) if tail else []
        reason = "refusal" if blocked else ("tool_calls" if calls else result.finish_reason)  # type: ignore[union-attr]
        msg = AIMessageChunk(
            content=[] if blocked else (tail.text if tail else ""),
            tool_call_chunks=chunks,  # type: ignore[arg-type]
            usage_metadata=UsageMetadata(input_tokens=0, output_tokens=0, total_tokens=0) if blocked
            else _usage(result),  # type: ignore[arg-type]
            response_metadata={"model_name": self.model_name, "finish_reason": reason},
            chunk_position="last",
        )
        return ChatGenerationChunk(message=msg)

    def _open(self, turn: _Turn) -> tuple[GuardedStream, ToolTextBuffer | None]:
        stream = self._guard().stream(turn.messages, **turn.generate_kwargs)
        return stream, (ToolTextBuffer(turn.tool_names, turn.forced) if turn.tool_names else None)

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        turn = self._begin(messages, stop, kwargs)
        _runs.dispatch(self._link(run_manager), RAS_EVENT, turn.ras)
        if turn.decision is Decision.BLOCKED:
            yield self._first_chunk(turn)
            yield self._last_chunk(turn, None, None)
            return
        stream, buffer = self._open(turn)
        pulled = pieces(stream)
        try:
            yield self._first_chunk(turn)
            for piece in pulled:
                text = buffer.feed(piece) if buffer else piece
                if text:
                    chunk = ChatGenerationChunk(message=AIMessageChunk(content=text))
                    if run_manager:
                        run_manager.on_llm_new_token(text, chunk=chunk)
                    yield chunk
            yield self._last_chunk(turn, buffer.finish() if buffer else None, stream.result)
        finally:
            pulled.close()  # cancels generation when the consumer stopped early

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        turn = await asyncio.to_thread(self._begin, messages, stop, kwargs)
        await _runs.adispatch(self._link(run_manager), RAS_EVENT, turn.ras)
        if turn.decision is Decision.BLOCKED:
            yield self._first_chunk(turn)
            yield self._last_chunk(turn, None, None)
            return
        stream, buffer = await asyncio.to_thread(self._open, turn)
        pulled = apieces(stream)
        try:
            yield self._first_chunk(turn)
            async for piece in pulled:
                text = buffer.feed(piece) if buffer else piece
                if text:
                    chunk = ChatGenerationChunk(message=AIMessageChunk(content=text))
                    if run_manager:
                        await run_manager.on_llm_new_token(text, chunk=chunk)
                    yield chunk
            yield self._last_chunk(turn, buffer.finish() if buffer else None, stream.result)
        finally:
            await pulled.aclose()  # stops the producer thread, which cancels generation


def _usage(gen: GuardedGeneration) -> UsageMetadata:
    return UsageMetadata(
        input_tokens=int(gen.usage.input_tokens),
        output_tokens=int(gen.usage.output_tokens),
        total_tokens=int(gen.usage.input_tokens + gen.usage.output_tokens),
    )
