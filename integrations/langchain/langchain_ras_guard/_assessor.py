"""The assessment as a traced Runnable: ``llm.as_assessor()`` (private).

The runnable takes what a chat model takes (a string, messages, a prompt value) and returns the
:class:`ras_guard.RiskAssessment`. It is a run of its own (``ras_assess`` in traces), and it sends the custom
event ``ras_risk_assessed`` with the risk metadata (``source="assessor"``, ``decision``: what the model's
policy would decide), so a :class:`~langchain_ras_guard.RiskLoggingCallbackHandler` logs a request that a
router escalates without ever calling the model.

Example:
    >>> assess = llm.as_assessor()  # doctest: +SKIP
    >>> assess.invoke("How do I make a bomb?").risk  # doctest: +SKIP
    0.98
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from langchain_core.callbacks import adispatch_custom_event, dispatch_custom_event
from langchain_core.runnables import RunnableConfig, RunnableLambda
from ras_guard import RiskAssessment
from ras_guard.types import decide_policy

if TYPE_CHECKING:
    from .chat_models import RASGuardedChatModel

__all__ = ["assessor", "assessor_record"]

NAME = "ras_assess"


def assessor_record(model: RASGuardedChatModel, assessment: RiskAssessment) -> dict[str, Any]:
    """The event data of an assessment made outside a chat-model run."""
    guard = model._guard()
    floor = guard.config.risk_floor
    decision = decide_policy(
        model.policy, assessment.risk, block_threshold=model.block_threshold, risk_floor=floor
    )
    return {**model.ras_metadata(assessment, decision), "source": "assessor"}


def assessor(model: RASGuardedChatModel, event: str) -> RunnableLambda[Any, RiskAssessment]:
    """A traced runnable that assesses with ``model``'s guard and sends ``event``."""

    def _plain(messages: Any) -> RiskAssessment:
        return model._guard().assess(model.convert_messages(messages))

    def run(messages: Any, config: RunnableConfig) -> RiskAssessment:
        assessment = _plain(messages)
        dispatch_custom_event(event, assessor_record(model, assessment), config=config)
        return assessment

    async def arun(messages: Any, config: RunnableConfig) -> RiskAssessment:
        assessment = await asyncio.to_thread(_plain, messages)
        await adispatch_custom_event(event, assessor_record(model, assessment), config=config)
        return assessment

    return RunnableLambda(run, afunc=arun, name=NAME)
