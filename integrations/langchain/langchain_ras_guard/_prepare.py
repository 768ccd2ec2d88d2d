"""One call's preparation: conversion and checks before the assessment, the policy's decision after (private).

``model`` is the :class:`~langchain_ras_guard.RASGuardedChatModel` (its fields and guard are read, never set).

Example:
    >>> p = pending(llm, [HumanMessage("hi")], None, {})  # doctest: +SKIP
    >>> turn = decided(llm, p, llm.guard.assess(p.messages))  # doctest: +SKIP
"""

from __future__ import annotations

import time
from typing import Any

from langchain_core.messages import BaseMessage
from ras_guard import RiskAssessment
from ras_guard.errors import InvalidMessageError, ToolCallingNotSupportedError
from ras_guard.types import decide_policy

from ._messages import to_guard_messages
from ._tools import forced_tool
from ._turns import Pending, Turn, generation_kwargs, max_new_tokens, remaining

__all__ = ["assess", "decided", "given_record", "pending"]


def given_record(model: Any, converted: list[dict[str, Any]], risk: float) -> RiskAssessment:
    """The assessment-shaped record of a caller-given risk (image hashes included)."""
    guard = model._guard()
    return RiskAssessment(
        risk=risk,
        similarity=float("nan"),
        visual_context="",
        reformulated_prompt="",
        calibration_id=guard.calibration.calibration_id if guard.calibration is not None else "",
        image_sha256=tuple(guard.normalize(converted).image_hashes),
        given=True,
    )


def pending(
    model: Any, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]
) -> Pending:
    """Convert and check a call, up to its assessment (blocking; a worker thread for async calls)."""
    guard = model._guard()
    deadline = None if model.timeout is None else time.monotonic() + model.timeout
    kw = dict(kwargs)
    for key in ("stream", "ls_structured_output_format", "structured_output_format"):
        kw.pop(key, None)
    if kw.pop("model", None) not in (None, model.model):
        raise InvalidMessageError(
            "a per-call model override is not supported (the model is loaded locally); create another "
            "RASGuardedChatModel (pass guard=... to share a loaded one)."
        )
    tools = kw.pop("tools", None) or None
    tool_choice = kw.pop("tool_choice", None)
    given = kw.pop("ras_risk", None)
    assessment = kw.pop("ras_assessment", None)
    max_new = max_new_tokens(kw.pop("max_tokens", None), model.max_tokens)
    seed = kw.pop("seed", model.seed)
    if tools and tool_choice == "none":
        tools = None
    if tools and not guard.supports_tools:
        raise ToolCallingNotSupportedError(f"the chat template of {model.model!r} does not render tools.")
    temperature, top_p = kw.pop("temperature", model.temperature), kw.pop("top_p", model.top_p)
    converted = to_guard_messages(messages, model._resolver())
    gen_kwargs: dict[str, Any] = {
        "max_new_tokens": max_new,
        "stop": (stop if stop is not None else model.stop) or None,
        "tools": tools,
        **generation_kwargs(kw, model_kwargs=model.model_kwargs, temperature=temperature, top_p=top_p),
    }
    if gen_kwargs.get("response_format") is not None:
        gen_kwargs["stop"] = None  # the grammar ends the answer; a stop string would cut the JSON
    record: RiskAssessment | None = None
    if given is not None:
        if not 0.0 <= float(given) <= 1.0:
            raise InvalidMessageError(f"ras_risk must lie in [0, 1], got {given!r}.")
        record = given_record(model, converted, float(given))
    elif isinstance(assessment, dict):
        record = RiskAssessment(**{**assessment, "image_sha256": tuple(assessment.get("image_sha256", ()))})
    elif assessment is not None:
        record = assessment
    names = [t["function"]["name"] for t in tools or []]
    return Pending(
        messages=converted,
        generate_kwargs=gen_kwargs,
        record=record,
        risk_given=given is not None,
        tool_names=names,
        forced=forced_tool(tool_choice, names) if tools else None,
        seed=seed,
        deadline=deadline,
        timeout=model.timeout,
    )


def assess(model: Any, pending: Pending) -> RiskAssessment:
    """The call's assessment: the given or reused record, else a fresh one within the call's deadline.

    The answer's ``max_tokens`` must fit the model's context too: checked before any pass runs.
    """
    if pending.record is not None:
        return pending.record
    guard = model._guard()
    left = remaining(pending.deadline, pending.timeout, "before the assessment")
    kw = pending.generate_kwargs
    guard.check_prompt(pending.messages, max_new_tokens=kw["max_new_tokens"], tools=kw.get("tools"))
    return guard.assess(pending.messages) if left is None else guard.assess(pending.messages, timeout=left)


def decided(model: Any, pending: Pending, record: RiskAssessment) -> Turn:
    """The policy's decision on an assessed call, and the arguments of its answer."""
    gen_kwargs = dict(pending.generate_kwargs)
    if pending.risk_given:
        gen_kwargs["risk"] = record.risk
    else:
        gen_kwargs["assessment"] = record
    if model.policy == "monitor":
        gen_kwargs.pop("assessment", None)
        gen_kwargs["risk"] = 0.0
    decision = decide_policy(
        model.policy,
        record.risk,
        block_threshold=model.block_threshold,
        risk_floor=model._guard().config.risk_floor,
    )
    return Turn(
        messages=pending.messages,
        decision=decision,
        ras=model.ras_metadata(record, decision),
        generate_kwargs=gen_kwargs,
        model_name=model.model_name,
        refusal=model.refusal_message,
        policy=model.policy,
        tool_names=pending.tool_names,
        forced=pending.forced,
        seed=pending.seed,
        deadline=pending.deadline,
        timeout=pending.timeout,
    )
