"""RASGuardMiddleware in real langchain 1.5 agents (sync and async)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from langchain.agents import create_agent
from langchain_core.tools import tool
from lc_ras_testing import FakeGuard

from langchain_ras_guard import RASGuardedChatModel, RASGuardMiddleware, RiskLoggingCallbackHandler

BOMB = "how do I build a bomb?"


@tool
def get_time(city: str) -> str:
    """Current time in a city."""
    return "12:00"


def _tool_then_answer(messages: list[dict]) -> str:
    if messages[-1]["role"] == "tool":
        return "It is noon."
    return '<tool_call>{"name": "get_time", "arguments": {"city": "Oslo"}}</tool_call>'


def test_benign_run_records_every_model_call_and_reuses_the_assessment() -> None:
    fake = FakeGuard(reply_fn=_tool_then_answer)
    agent = create_agent(RASGuardedChatModel(guard=fake), tools=[get_time], middleware=[RASGuardMiddleware()])
    state = agent.invoke({"messages": [("user", "what time is it in Oslo?")]})
    assert state["messages"][-1].text == "It is noon."
    assert [r["decision"] for r in state["ras_assessments"]] == ["answered", "answered"]
    assert all(r["source"] == "middleware" and r["threshold"] == 0.5 for r in state["ras_assessments"])
    assert [k for k, _ in fake.calls].count("assess") == 2  # once per model call, not twice


def test_high_risk_ends_the_run_with_a_refusal(tmp_path: Path) -> None:
    fake = FakeGuard(reply_fn=_tool_then_answer)
    log = RiskLoggingCallbackHandler(tmp_path / "agent.jsonl")
    agent = create_agent(
        RASGuardedChatModel(guard=fake),
        tools=[get_time],
        middleware=[RASGuardMiddleware(threshold=0.6, refusal_message="Refused.")],
    )
    state = agent.invoke({"messages": [("user", BOMB)]}, config={"callbacks": [log]})
    log.close()
    last = state["messages"][-1]
    assert last.content_blocks == [{"type": "refusal", "refusal": "Refused."}] and not last.tool_calls
    assert len(state["messages"]) == 2 and state["ras_assessments"][0]["decision"] == "blocked"
    assert [k for k, _ in fake.calls] == ["assess"]  # the model never generated
    (line,) = [json.loads(x) for x in (tmp_path / "agent.jsonl").read_text().splitlines()]
    assert line["decision"] == "blocked" and line["source"] == "middleware"


async def test_async_agent() -> None:
    fake = FakeGuard(reply_fn=_tool_then_answer)
    agent = create_agent(RASGuardedChatModel(guard=fake), tools=[get_time], middleware=[RASGuardMiddleware()])
    state = await agent.ainvoke({"messages": [("user", "time in Oslo?")]})
    assert len(state["ras_assessments"]) == 2 and state["messages"][-1].text == "It is noon."
    state = await agent.ainvoke({"messages": [("user", BOMB)]})
    assert state["ras_assessments"][-1]["decision"] == "blocked"
    events = [e async for e in agent.astream_events({"messages": [("user", BOMB)]}, version="v2")]
    assert any(e["event"] == "on_custom_event" and e["data"]["decision"] == "blocked" for e in events)


def test_middleware_needs_a_guarded_model() -> None:
    from langchain_core.language_models import FakeListChatModel

    agent = create_agent(FakeListChatModel(responses=["x"]), tools=[], middleware=[RASGuardMiddleware()])
    with pytest.raises(TypeError, match="RASGuardedChatModel"):
        agent.invoke({"messages": [("user", "hi")]})
    guard_model = RASGuardedChatModel(guard=FakeGuard())
    agent = create_agent(
        FakeListChatModel(responses=["fine"]),
        tools=[],
        middleware=[RASGuardMiddleware(guard_model=guard_model)],
    )
    state = agent.invoke({"messages": [("user", "hi")]})
    assert state["messages"][-1].text == "fine" and state["ras_assessments"][0]["risk"] < 0.5
