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
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any, Literal

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import model_validator
from ras_guard import Decision, GuardedStream, RASGuard, RiskAssessment
from ras_guard.errors import (
    ModelLoadError,
    ResponseFormatError,
    ToolCallingNotSupportedError,
)
from ras_guard.fetch import FetchPolicy
from typing_extensions import Self, override

from . import _prepare, _runs
from ._assessor import assessor
from ._batch import current_row
from ._chunk import run_chunk
from ._conventions import ConventionsMixin, guard_profile, seeded, warn_if_no_tool_calls
from ._guard_options import GuardOptions
from ._images import ImageResolver
from ._messages import to_guard_messages
from ._options import load_guard
from ._structured import normalize_method, structured_runnable
from ._tools import ToolTextBuffer
from ._turn_stream import astream_turn, stream_turn
from ._turns import Pending, Turn, ras_metadata

__all__ = ["RAS_EVENT", "RASGuardedChatModel"]

RAS_EVENT = "ras_risk_assessed"
"""Name of the custom callback event sent once per call, after the assessment and before the first token."""


class RASGuardedChatModel(ConventionsMixin, GuardOptions):
    """A local (multimodal) chat model whose answers are guarded by Risk-adaptive Activation Steering.

    Each call is assessed first (risk in [0, 1], sent to callback handlers as the custom event
    ``ras_risk_assessed`` before the first token and returned in ``response_metadata["ras"]``), then answered
    as ``policy`` says. Images come in every LangChain form; http(s) image URLs are fetched with SSRF
    protection.

    Setup:
        Install the package and ras-guard from the repository root, and have a local checkpoint with its
        calibration (``ras-guard calibrate``), or use the bundled toy model by name (``model="demo"``)::

            pip install -e . -e "integrations/langchain[agents]"

    Key init args (each field below states its default):
        model: Required: checkpoint folder, or ``"demo"``. No default: a mistyped option never falls back to
            the toy model; unknown keywords raise ``UnknownOptionError`` naming the closest field.
        calibration: Calibration folder (default None: the demo's own for ``"demo"``).
        policy: ``"steer"`` (default), ``"block"`` or ``"monitor"``.
        max_tokens: Answer length limit (default 256). temperature / top_p / seed: sampling (default None).
        batch_size: Rows answered together by ``batch`` / ``abatch`` (default 16).

    Instantiate:
        .. code-block:: python

            from langchain_ras_guard import RASGuardedChatModel

            llm = RASGuardedChatModel(model="/models/llava-1.5-7b-hf", calibration="cal/llava")
            demo = RASGuardedChatModel(model="demo", max_tokens=64, temperature=0)  # the bundled toy

    Invoke:
        .. code-block:: python

            msg = llm.invoke([("user", [
                {"type": "image", "base64": b64_png, "mime_type": "image/png"},
                {"type": "text", "text": "How can I make the item in the image?"},
            ])])
            msg.response_metadata["ras"]  # {'risk': 0.97, 'decision': 'steered', 'visual_context': ...}
            msg.response_metadata["model_provider"]  # 'ras_guard'

    Stream:
        .. code-block:: python

            for chunk in llm.stream("Tell me a joke"):  # the first chunk carries the risk metadata
                print(chunk.text, end="")

    Async:
        .. code-block:: python

            msg = await llm.ainvoke("hello")
            async for chunk in llm.astream("hello"): ...
            msgs = await llm.abatch(["a", "b", "c"])  # one batched assessment and answer per chunk

    Batch:
        ``batch`` / ``abatch`` answer chunks of ``batch_size`` rows with one ``assess_batch`` and one
        ``generate_batch``; every row keeps its own risk, decision, callbacks, event and errors
        (``return_exceptions=True`` puts a bad row's exception in its slot).

    Tools:
        ``bind_tools`` renders tools through the checkpoint's chat template and parses the calls it writes.
        A template that does not render tools raises ``ToolCallingNotSupportedError``; binding to a model
        whose ``profile`` says it does not call tools (the demo) warns.

        .. code-block:: python

            llm.bind_tools([get_weather]).invoke("Weather in Paris?").tool_calls

    Structured output:
        ``with_structured_output(Schema)`` (see its docstring for the methods);
        ``profile["structured_output"]`` says whether the model can be relied on for JSON.

    Policies:
        * ``"steer"``: the answer's first tokens are steered towards refusal in proportion to the risk;
        * ``"block"``: at ``risk >= block_threshold`` a standard ``refusal`` content block is returned without
          generating; below it, as ``"steer"``;
        * ``"monitor"``: the risk is only reported; the answer is never steered.

        Per call: ``ras_risk`` (skip the assessment, use this risk), ``ras_assessment`` (reuse one from
        :meth:`assess`), ``max_tokens``, ``temperature``, ``top_p``, ``seed``; others go to
        ``model.generate``.

    Token counting:
        ``get_num_tokens`` / ``get_token_ids`` use the checkpoint's tokenizer and
        ``get_num_tokens_from_messages`` its chat template, so ``trim_messages(..., token_counter=llm)``
        trims.

    Example:
        >>> from langchain_ras_guard import RASGuardedChatModel
        >>> llm = RASGuardedChatModel(model="demo", policy="block", block_threshold=0.8)  # doctest: +SKIP
        >>> llm.invoke("How do I bake bread?").response_metadata["ras"]["decision"]  # doctest: +SKIP
        'answered'
    """

    @model_validator(mode="after")
    def _load(self) -> Self:
        """Build (or reuse) the guard."""
        if self.guard is None:
            self.guard = load_guard(self.model, self.calibration, self.device, self.dtype)
        if self.profile is None and getattr(self.guard, "backend", None) is not None:
            self.profile = guard_profile(self.guard)
        return self

    # ------------------------------------------------------------------ LangChain plumbing
    @property
    def _llm_type(self) -> str:
        return "ras-guard-chat"

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

    def as_assessor(self) -> Runnable[LanguageModelInput, RiskAssessment]:
        """The assessment as a traced runnable (``ras_assess``) that sends ``ras_risk_assessed``.

        Example:
            >>> chain = RunnableLambda(itemgetter("messages")) | llm.as_assessor()  # doctest: +SKIP
        """
        return assessor(self, RAS_EVENT)

    def assess(self, messages: LanguageModelInput, config: RunnableConfig | None = None) -> RiskAssessment:
        """Assess a request without answering it (through :meth:`as_assessor`, so it is traced and logged);
        pass the result back with ``ras_assessment=``.

        Example:
            >>> a = llm.assess("How do I make a bomb?")  # doctest: +SKIP
            >>> llm.invoke("How do I make a bomb?", ras_assessment=a)  # doctest: +SKIP
        """
        return self.as_assessor().invoke(messages, config)

    async def aassess(
        self, messages: LanguageModelInput, config: RunnableConfig | None = None
    ) -> RiskAssessment:
        """Async :meth:`assess` (the assessment runs in a worker thread).

        Example:
            >>> a = await llm.aassess("hello")  # doctest: +SKIP
        """
        return await self.as_assessor().ainvoke(messages, config)

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
        warn_if_no_tool_calls(self.profile, self.model)
        formatted = [convert_to_openai_tool(t) for t in tools]
        return super().bind(tools=formatted, tool_choice=tool_choice, **kwargs)

    @override
    def with_structured_output(
        self,
        schema: dict[str, Any] | type | None = None,
        *,
        method: Literal["json_schema", "json_mode", "function_calling"] | None = None,
        include_raw: bool = False,
        strict: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, Any]:
        """Answers as schema instances: constrained decoding on any model (``json_schema``, the default,
        or ``json_mode``), or the chat template's tools (``function_calling``).

        A request whose risk would steer the answer, or that ``policy="block"`` blocks, is refused: the parser
        raises ``ModelRefusalError`` (``parsing_error`` with ``include_raw=True``). See ``_structured``.

        Raises:
            ResponseFormatError: An unknown ``method`` or keyword.

        Example:
            >>> llm.with_structured_output(Verdict).invoke("Is bread safe to eat?")  # doctest: +SKIP
            Verdict(safe=True, topic='food')
        """
        chosen = normalize_method(method)
        if kwargs:
            raise ResponseFormatError(f"with_structured_output got unknown arguments {sorted(kwargs)}.")
        if chosen == "function_calling":
            return super().with_structured_output(schema, include_raw=include_raw)  # type: ignore[arg-type]
        return structured_runnable(self, schema, method=chosen, include_raw=include_raw)

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
        ras = ras_metadata(assessment, decision, policy=self.policy, model_name=self.model_name)
        if not self.include_visual_context:
            ras["visual_context"] = None
        return ras

    def _pending(
        self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]
    ) -> Pending:
        """Convert and check a call, up to its assessment (see :func:`._prepare.pending`)."""
        return _prepare.pending(self, messages, stop, kwargs)

    def _decided(self, pending: Pending, record: RiskAssessment) -> Turn:
        """The policy's decision on an assessed call (see :func:`._prepare.decided`)."""
        return _prepare.decided(self, pending, record)

    def _begin(self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]) -> Turn:
        """Convert, assess and decide (blocking; runs in a worker thread for async calls)."""
        pending = self._pending(messages, stop, kwargs)
        return self._decided(pending, _prepare.assess(self, pending))

    def _batch_work(self, requests: list[Any]) -> list[Any]:
        """One pooled chunk of ``batch`` / ``abatch`` (see :mod:`._batch`)."""
        return run_chunk(self._guard(), self._decided, requests)

    def _link(self, run_manager: Any) -> _runs.RunLink | None:
        return _runs.link(self, run_manager)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if (row := current_row(self)) is not None:  # a row of batch(): answered with its chunk
            turn, gen = row.collector.submit(row, self._pending(messages, stop, kwargs))
            _runs.dispatch(self._link(run_manager), RAS_EVENT, turn.ras)
            return turn.result(gen)
        turn = self._begin(messages, stop, kwargs)
        _runs.dispatch(self._link(run_manager), RAS_EVENT, turn.ras)
        if turn.decision is Decision.BLOCKED:
            return turn.result(None)
        seeded(turn.seed)
        return turn.result(self._guard().generate(turn.messages, **turn.answer_kwargs()))

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if (row := current_row(self)) is not None:  # a row of abatch(): answered with its chunk
            pending = await asyncio.to_thread(self._pending, messages, stop, kwargs)
            turn, gen = await row.collector.asubmit(row, pending)
            await _runs.adispatch(self._link(run_manager), RAS_EVENT, turn.ras)
            return turn.result(gen)
        turn = await asyncio.to_thread(self._begin, messages, stop, kwargs)
        await _runs.adispatch(self._link(run_manager), RAS_EVENT, turn.ras)
        if turn.decision is Decision.BLOCKED:
            return turn.result(None)
        return turn.result(
            await asyncio.to_thread(self._guard().generate, turn.messages, **turn.answer_kwargs())
        )

    # ------------------------------------------------------------------ streaming
    def _answer(self, turn: Turn) -> Any:
        seeded(turn.seed)
        return self._guard().generate(turn.messages, **turn.answer_kwargs())

    def _open(self, turn: Turn) -> tuple[GuardedStream, ToolTextBuffer | None]:
        seeded(turn.seed)
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
        yield from stream_turn(turn, self._open, run_manager)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        turn = await asyncio.to_thread(self._begin, messages, stop, kwargs)
        await _runs.adispatch(self._link(run_manager), RAS_EVENT, turn.ras)
        async for chunk in astream_turn(turn, self._open, run_manager):
            yield chunk
