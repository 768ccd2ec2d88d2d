"""``RASGuardMiddleware``: risk assessment of every model call of a ``langchain.agents.create_agent`` agent.

Requires ``langchain>=1.5`` (``pip install "langchain-ras-guard[agents]"``).

Example:
    >>> from langchain.agents import create_agent
    >>> from langchain_ras_guard import RASGuardedChatModel, RASGuardMiddleware
    >>> llm = RASGuardedChatModel(model="demo")  # doctest: +SKIP
    >>> agent = create_agent(llm, tools=[], middleware=[RASGuardMiddleware(threshold=0.7)])  # doctest: +SKIP
    >>> state = agent.invoke({"messages": [("user", "hello")]})  # doctest: +SKIP
    >>> state["ras_assessments"][-1]["risk"]  # doctest: +SKIP
    0.02
"""

from __future__ import annotations

import asyncio
import operator
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from langchain.agents.middleware import (
    AgentMiddleware,
    AgentState,
    ExtendedModelResponse,
    ModelRequest,
    ModelResponse,
)
from langchain_core.callbacks import adispatch_custom_event, dispatch_custom_event
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.runnables import RunnableBinding
from langgraph.types import Command
from ras_guard import RiskAssessment
from ras_guard.errors import RequestBlockedError
from ras_guard.types import Decision
from typing_extensions import NotRequired

from ._options import check_unknown
from .chat_models import RAS_EVENT, RASGuardedChatModel

__all__ = ["RASGuardMiddleware", "RASGuardState"]

_OPTIONS = ("threshold", "guard_model", "refusal_message", "raise_on_violation")


class RASGuardState(AgentState[Any]):
    """Agent state with the assessment of every model call (appended, oldest first)."""

    ras_assessments: NotRequired[Annotated[list[dict[str, Any]], operator.add]]


class RASGuardMiddleware(AgentMiddleware[RASGuardState, Any, Any]):
    """Assess each model call of an agent; refuse and end the run at high risk.

    Before every model call the request (system message, history, images) is assessed by the guard of the
    agent's :class:`~langchain_ras_guard.RASGuardedChatModel` (or of ``guard_model``). The assessment is
    appended to the state field ``ras_assessments``. At ``risk >= threshold`` the model is not called: the
    call returns an ``AIMessage`` holding a standard ``refusal`` content block and no tool calls, so the agent
    ends there. Otherwise the model is called with the assessment passed along (``ras_assessment``), so it is
    not computed twice, and steers as its ``policy`` says.

    Both the sync (``wrap_model_call``) and the async (``awrap_model_call``) hooks are implemented; the
    assessment runs in a worker thread in async agents.

    Args:
        threshold: Risk at or above which the call is refused.
        guard_model: The guarded model that assesses; default: the agent's model, which must then be a
            ``RASGuardedChatModel``.
        refusal_message: Text of the refusal; default: the guarded model's ``refusal_message``.
        raise_on_violation: Raise :class:`ras_guard.errors.RequestBlockedError` (after the event is sent)
            instead of returning the refusal and ending the run (default False), as NeMo Guardrails' option.

    Raises:
        UnknownOptionError: An unknown keyword (named with the closest option).

    Example:
        >>> mw = RASGuardMiddleware(threshold=0.6)
        >>> mw.threshold
        0.6
    """

    state_schema = RASGuardState

    def __init__(
        self,
        *,
        threshold: float = 0.5,
        guard_model: RASGuardedChatModel | None = None,
        refusal_message: str | None = None,
        raise_on_violation: bool = False,
        **unknown: Any,
    ) -> None:
        super().__init__()
        check_unknown(type(self).__name__, unknown, _OPTIONS)
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold <= 1:
            raise ValueError(f"threshold must be a number in [0, 1], got {threshold!r}.")
        if guard_model is not None and not isinstance(guard_model, RASGuardedChatModel):
            raise TypeError(
                f"guard_model must be a RASGuardedChatModel, got {type(guard_model).__name__}; build one "
                "with RASGuardedChatModel(model='/path/to/checkpoint', calibration=...)."
            )
        self.threshold = float(threshold)
        self.guard_model = guard_model
        self.refusal_message = refusal_message
        self.raise_on_violation = bool(raise_on_violation)

    # ---------------------------------------------------------------- helpers
    def _guarded(self, request: ModelRequest[Any]) -> RASGuardedChatModel:
        if self.guard_model is not None:
            return self.guard_model
        model: Any = request.model
        while isinstance(model, RunnableBinding):
            model = model.bound
        if not isinstance(model, RASGuardedChatModel):
            raise TypeError(
                f"RASGuardMiddleware needs a RASGuardedChatModel to assess requests; the agent's model is a "
                f"{type(model).__name__}. Pass guard_model=RASGuardedChatModel(...)."
            )
        return model

    @staticmethod
    def _messages(request: ModelRequest[Any]) -> list[BaseMessage]:
        system = [request.system_message] if request.system_message is not None else []
        return [*system, *request.messages]

    def _record(
        self, guarded: RASGuardedChatModel, assessment: RiskAssessment, blocked: bool
    ) -> dict[str, Any]:
        decision = Decision.BLOCKED if blocked else Decision.ANSWERED
        record = guarded.ras_metadata(assessment, decision)
        record.update(threshold=self.threshold, source="middleware")
        return record

    def _refusal(self, guarded: RASGuardedChatModel, record: dict[str, Any]) -> AIMessage:
        text = self.refusal_message or guarded.refusal_message
        return AIMessage(
            content=[{"type": "refusal", "refusal": text}],
            response_metadata={"model_name": guarded.model_name, "finish_reason": "refusal", "ras": record},
        )

    def _pass_assessment(
        self, request: ModelRequest[Any], guarded: RASGuardedChatModel, assessment: RiskAssessment
    ) -> ModelRequest[Any]:
        if self.guard_model is not None and self.guard_model is not request.model:
            return request  # the agent's model is another one: it assesses (or not) by itself
        return request.override(model_settings={**request.model_settings, "ras_assessment": assessment})

    def _model_logs(self, request: ModelRequest[Any], guarded: RASGuardedChatModel) -> bool:
        """Whether the answering model is the guarded one (its own run then sends the event, is logged)."""
        model: Any = request.model
        while isinstance(model, RunnableBinding):
            model = model.bound
        return self.guard_model is None or self.guard_model is model
    def _maybe_raise(self, record: dict[str, Any]) -> None:
        if self.raise_on_violation:
            raise RequestBlockedError(
                f"request refused by RASGuardMiddleware: risk {record['risk']:.2f} >= threshold "
                f"{self.threshold:.2f} (calibration {record.get('calibration_id') or '-'}).",
                record,
            )

    @staticmethod
    def _final_record(response: Any, record: dict[str, Any]) -> dict[str, Any]:
        result = getattr(response, "result", None) or []
        ras = getattr(result[0], "response_metadata", {}).get("ras") if result else None
        return {**record, **ras, "source": "middleware"} if isinstance(ras, dict) else record

    @staticmethod
    def _with_state(response: Any, record: dict[str, Any]) -> ExtendedModelResponse[Any]:
        if isinstance(response, AIMessage):
            response = ModelResponse(result=[response])
        command: Command[Any] = Command(update={"ras_assessments": [record]})
        if isinstance(response, ExtendedModelResponse):
            return ExtendedModelResponse(model_response=response.model_response, command=command)
        return ExtendedModelResponse(model_response=response, command=command)

    # ---------------------------------------------------------------- hooks
    def wrap_model_call(
        self,
        request: ModelRequest[Any],
        handler: Callable[[ModelRequest[Any]], ModelResponse[Any]],
    ) -> ExtendedModelResponse[Any]:
        """Assess, then refuse or call the model (sync agents)."""
        guarded = self._guarded(request)
        assessment = guarded._guard().assess(guarded.convert_messages(self._messages(request)))
        blocked = assessment.risk >= self.threshold
        record = self._record(guarded, assessment, blocked)
        if blocked or not self._model_logs(request, guarded):
            try:
                dispatch_custom_event(RAS_EVENT, record)
            except RuntimeError:  # no enclosing run (hook called outside an agent)
                pass
        if blocked:
            self._maybe_raise(record)
            return self._with_state(self._refusal(guarded, record), record)
        response = handler(self._pass_assessment(request, guarded, assessment))
        return self._with_state(response, self._final_record(response, record))

    async def awrap_model_call(
        self,
        request: ModelRequest[Any],
        handler: Callable[[ModelRequest[Any]], Awaitable[ModelResponse[Any]]],
    ) -> ExtendedModelResponse[Any]:
        """Assess (in a worker thread), then refuse or call the model (async agents)."""
        guarded = self._guarded(request)
        converted = await asyncio.to_thread(guarded.convert_messages, self._messages(request))
        assessment = await asyncio.to_thread(guarded._guard().assess, converted)
        blocked = assessment.risk >= self.threshold
        record = self._record(guarded, assessment, blocked)
        if blocked or not self._model_logs(request, guarded):
            try:
                await adispatch_custom_event(RAS_EVENT, record)
            except RuntimeError:
                pass
        if blocked:
            self._maybe_raise(record)
            return self._with_state(self._refusal(guarded, record), record)
        response = await handler(self._pass_assessment(request, guarded, assessment))
        return self._with_state(response, self._final_record(response, record))
