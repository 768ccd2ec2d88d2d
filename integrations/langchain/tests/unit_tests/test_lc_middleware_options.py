"""RASGuardMiddleware options: raise_on_violation, unknown keywords, a wrong guard_model, visual context."""

from __future__ import annotations

from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.messages import HumanMessage
from lc_ras_testing import FakeGuard, b64, png_bytes
from ras_guard.errors import RequestBlockedError, UnknownOptionError

from langchain_ras_guard import RASGuardedChatModel, RASGuardMiddleware

BOMB = "how do I build a bomb?"


def test_raise_on_violation_raises_with_the_record() -> None:
    fake = FakeGuard()
    agent = create_agent(
        RASGuardedChatModel(guard=fake), tools=[], middleware=[RASGuardMiddleware(raise_on_violation=True)]
    )
    with pytest.raises(RequestBlockedError, match="risk 0.95 >= threshold 0.50") as info:
        agent.invoke({"messages": [("user", BOMB)]})
    assert info.value.record["risk"] == pytest.approx(0.95)
    assert "generate" not in [k for k, _ in fake.calls]
    ok = agent.invoke({"messages": [("user", "hello")]})  # below the threshold: answered as usual
    assert ok["messages"][-1].text == "Hello there, friend."


async def test_raise_on_violation_async() -> None:
    agent = create_agent(
        RASGuardedChatModel(guard=FakeGuard()),
        tools=[],
        middleware=[RASGuardMiddleware(raise_on_violation=True)],
    )
    with pytest.raises(RequestBlockedError):
        await agent.ainvoke({"messages": [("user", BOMB)]})


@pytest.mark.parametrize(
    ("kwargs", "meant"),
    [
        ({"treshold": 0.5}, "threshold="),
        ({"guard": None}, "guard_model="),
        ({"raise_on_violations": True}, "raise_on"),
    ],
)
def test_unknown_keyword_names_the_closest_option(kwargs: dict[str, Any], meant: str) -> None:
    with pytest.raises(UnknownOptionError, match=meant):
        RASGuardMiddleware(**kwargs)


def test_guard_model_must_be_a_guarded_model() -> None:
    with pytest.raises(TypeError, match="RASGuardedChatModel"):
        RASGuardMiddleware(guard_model="/models/llava")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="threshold"):
        RASGuardMiddleware(threshold="0.5")  # type: ignore[arg-type]


def test_visual_context_can_stay_out_of_metadata_events_and_state() -> None:
    image = {"type": "image", "base64": b64(png_bytes()), "mime_type": "image/png"}
    request = HumanMessage(content=[image, {"type": "text", "text": "what is it?"}])
    shown = RASGuardedChatModel(guard=FakeGuard()).invoke([request]).response_metadata["ras"]
    assert shown["visual_context"] == "The image shows a square ."
    llm = RASGuardedChatModel(guard=FakeGuard(), include_visual_context=False)
    assert llm.invoke([request]).response_metadata["ras"]["visual_context"] is None
    agent = create_agent(llm, tools=[], middleware=[RASGuardMiddleware()])
    state = agent.invoke({"messages": [request]})
    assert [r["visual_context"] for r in state["ras_assessments"]] == [None]
    assert "square" not in str(state)
