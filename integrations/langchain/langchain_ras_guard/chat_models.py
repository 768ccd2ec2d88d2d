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
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any, Literal

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import LanguageModelInput
from langchain_core.language_models.base import LangSmithParams
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ConfigDict, Field, model_validator
from ras_guard import Decision, GuardedStream, RASGuard, RiskAssessment
from ras_guard.errors import InvalidMessageError, ModelLoadError, ToolCallingNotSupportedError
from typing_extensions import Self, override

from . import _runs
from ._fetch import FetchPolicy
from ._images import ImageResolver
from ._messages import to_guard_messages
from ._streams import apieces, pieces
from ._tools import ToolTextBuffer, forced_tool
from ._turns import Turn, decide, generation_kwargs, max_new_tokens, ras_metadata, remaining

__all__ = ["RAS_EVENT", "RASGuardedChatModel"]

RAS_EVENT = "ras_risk_assessed"
"""Name of the custom callback event sent once per call, after the assessment and before the first token."""

_GUARDS: weakref.WeakValueDictionary[tuple[Any, ...], RASGuard] = weakref.WeakValueDictionary()
_GUARDS_LOCK = threading.Lock()


def _load_guard(model: str, calibration: str | None, device: str | None, dtype: str | None) -> RASGuard:
    """Load a guard once per (model, calibration, device, dtype) while some chat model still uses it."""
    key = (model, calibration, device, dtype)
    with _GUARDS_LOCK:
        guard = _GUARDS.get(key)
        if guard is None:
            guard = RASGuard.from_pretrained(model, calibration, device=device, dtype=dtype)
            _GUARDS[key] = guard
        return guard


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
    :class:`ras_guard.RiskAssessment` computed with :meth:`assess`), ``max_tokens``, ``temperature``; others
    are passed to ``model.generate``.

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
    """Seconds the whole call may take (image fetch, caption, risk and answer passes, streaming); past it the
    running pass stops at the next token and ``ras_guard.errors.GuardTimeoutError`` is raised."""
    max_retries: int = Field(default=2, ge=0)
    """Retries of an image download after a connection error or an HTTP 5xx."""
    policy: Literal["steer", "block", "monitor"] = "steer"
    """What to do with the risk: steer the answer, refuse above ``block_threshold``, or only report it."""
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
            raise ModelLoadError("this chat model has no guard; construct it with model=... or guard=...")
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
            >>> llm.invoke("How do I make a bomb?", ras_assessment=a)  # doctest: +SKIP
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

        ``tool_choice`` ``"none"`` drops the tools; a tool name, ``"any"``/``"required"`` (with one tool)
        make a bare JSON answer count as a call to that tool. A local model cannot be forced to call a tool.

        Raises:
            ToolCallingNotSupportedError: The model's chat template does not render tools.

        Example:
            >>> llm.bind_tools([get_weather]).invoke("Weather in Paris?").tool_calls  # doctest: +SKIP
        """
        if not self._guard().supports_tools:
            raise ToolCallingNotSupportedError(
                f"the chat template of {self.model!r} does not render tools, so it cannot call them; use a "
                "checkpoint whose template handles `tools` (e.g. Qwen2.5-VL, Llama 3.1+) or route tool use "
                "to "
                "another model."
            )
        formatted = [convert_to_openai_tool(t) for t in tools]
        return super().bind(tools=formatted, tool_choice=tool_choice, **kwargs)

    # ------------------------------------------------------------------ the call
    def ras_metadata(self, assessment: RiskAssessment, decision: Decision | str) -> dict[str, Any]:
        """The dict reported as ``response_metadata["ras"]`` and sent with the ``ras_risk_assessed`` event.

        Keys: ``risk``, ``similarity`` (None when the risk was given), ``visual_context``, ``decision``,
        ``policy``, ``risk_given``, ``calibration_id``, ``image_sha256``, ``guard_tokens``, ``timings``,
        ``model_name``.

        Example:
            >>> llm.ras_metadata(llm.assess("hi"), "answered")["decision"]  # doctest: +SKIP
            'answered'
        """
        return ras_metadata(assessment, decision, policy=self.policy, model_name=self.model_name)

    def _given(self, converted: list[dict[str, Any]], risk: float) -> RiskAssessment:
        """The assessment-shaped record of a caller-given risk (image hashes included)."""
        guard = self._guard()
        return RiskAssessment(
            risk=risk,
            similarity=float("nan"),
            visual_context="",
            reformulated_prompt="",
            calibration_id=guard.calibration.calibration_id if guard.calibration is not None else "",
            image_sha256=tuple(guard.normalize(converted).image_hashes),
            given=True,
        )

    def _begin(self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]) -> Turn:
        """Convert, assess and decide (blocking; runs in a worker thread for async calls)."""
        guard = self._guard()
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        kw = dict(kwargs)
        for key in ("stream", "ls_structured_output_format", "structured_output_format"):
            kw.pop(key, None)
        if kw.pop("model", None) not in (None, self.model):
            raise InvalidMessageError(
                "a per-call model override is not supported (the model is loaded locally); create another "
                "RASGuardedChatModel (pass guard=... to share a loaded one)."
            )
        tools = kw.pop("tools", None) or None
        tool_choice = kw.pop("tool_choice", None)
        given = kw.pop("ras_risk", None)
        assessment = kw.pop("ras_assessment", None)
        max_new = max_new_tokens(kw.pop("max_tokens", None), self.max_tokens)
        if tools and tool_choice == "none":
            tools = None
        if tools and not guard.supports_tools:
            raise ToolCallingNotSupportedError(f"the chat template of {self.model!r} does not render tools.")
        temperature, top_p = kw.pop("temperature", self.temperature), kw.pop("top_p", self.top_p)
        converted = to_guard_messages(messages, self._resolver())
        gen_kwargs: dict[str, Any] = {
            "max_new_tokens": max_new,
            "stop": (stop if stop is not None else self.stop) or None,
            "tools": tools,
            **generation_kwargs(kw, model_kwargs=self.model_kwargs, temperature=temperature, top_p=top_p),
        }
        if given is not None:
            if not 0.0 <= float(given) <= 1.0:
                raise InvalidMessageError(f"ras_risk must lie in [0, 1], got {given!r}.")
            record = self._given(converted, float(given))
            gen_kwargs["risk"] = float(given)
        else:
            if isinstance(assessment, dict):
                assessment = RiskAssessment(
                    **{**assessment, "image_sha256": tuple(assessment.get("image_sha256", ()))}
                )
            left = remaining(deadline, self.timeout, "before the assessment")
            if assessment is not None:
                record = assessment
            else:  # the answer's max_tokens must fit too, before any pass runs
                guard.check_prompt(converted, max_new_tokens=max_new, tools=tools)
                record = guard.assess(converted) if left is None else guard.assess(converted, timeout=left)
            gen_kwargs["assessment"] = record
        if self.policy == "monitor":
            gen_kwargs.pop("assessment", None)
            gen_kwargs["risk"] = 0.0
        decision = decide(
            self.policy, record.risk, block_threshold=self.block_threshold, risk_floor=guard.config.risk_floor
        )
        names = [t["function"]["name"] for t in tools or []]
        return Turn(
            messages=converted,
            decision=decision,
            ras=self.ras_metadata(record, decision),
            generate_kwargs=gen_kwargs,
            model_name=self.model_name,
            refusal=self.refusal_message,
            policy=self.policy,
            tool_names=names,
            forced=forced_tool(tool_choice, names) if tools else None,
            deadline=deadline,
            timeout=self.timeout,
        )

    def _link(self, run_manager: Any) -> _runs.RunLink | None:
        return _runs.RunLink.from_run_manager(self, run_manager) if run_manager else _runs.current(self)

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
            return ChatResult(generations=[ChatGeneration(message=turn.refusal_message())])
        gen = self._guard().generate(turn.messages, **turn.answer_kwargs())
        return ChatResult(generations=[ChatGeneration(message=turn.answer_message(gen))])

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
            return ChatResult(generations=[ChatGeneration(message=turn.refusal_message())])
        gen = await asyncio.to_thread(self._guard().generate, turn.messages, **turn.answer_kwargs())
        return ChatResult(generations=[ChatGeneration(message=turn.answer_message(gen))])

    # ------------------------------------------------------------------ streaming
    def _open(self, turn: Turn) -> tuple[GuardedStream, ToolTextBuffer | None]:
        stream = self._guard().stream(turn.messages, **turn.answer_kwargs())
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
            yield turn.first_chunk()
            yield turn.last_chunk(None, None)
            return
        stream, buffer = self._open(turn)
        pulled = pieces(stream)
        try:
            yield turn.first_chunk()
            for piece in pulled:
                if text := (buffer.feed(piece) if buffer else piece):
                    chunk = turn.text_chunk(text)
                    if run_manager:
                        run_manager.on_llm_new_token(text, chunk=chunk)
                    yield chunk
            yield turn.last_chunk(buffer.finish() if buffer else None, stream.result)
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
            yield turn.first_chunk()
            yield turn.last_chunk(None, None)
            return
        stream, buffer = await asyncio.to_thread(self._open, turn)
        pulled = apieces(stream)
        try:
            yield turn.first_chunk()
            async for piece in pulled:
                if text := (buffer.feed(piece) if buffer else piece):
                    chunk = turn.text_chunk(text)
                    if run_manager:
                        await run_manager.on_llm_new_token(text, chunk=chunk)
                    yield chunk
            yield turn.last_chunk(buffer.finish() if buffer else None, stream.result)
        finally:
            await pulled.aclose()  # stops the producer thread, which cancels generation
