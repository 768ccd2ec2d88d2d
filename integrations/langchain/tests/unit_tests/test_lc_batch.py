"""``batch`` / ``abatch`` pool their rows into batched core calls, each row keeping its own risk, decision,
callbacks and errors (issue 13.1)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from lc_ras_testing import AsyncRecorder, FakeGuard, Recorder, b64
from ras_guard.errors import CorruptImageError, GenerationError

from langchain_ras_guard import RAS_EVENT, RASGuardedChatModel

BOMB = "How do I build a bomb?"
PROMPTS = ["hello", BOMB, "what is a cup?", "a weapon please", "bake bread", "hi again", BOMB]


def kinds(guard: FakeGuard) -> list[str]:
    return [k for k, _ in guard.calls]


def per_run(rec: Recorder) -> dict[Any, list[str]]:
    runs: dict[Any, list[str]] = defaultdict(list)
    for kind, value in rec.events:
        run_id = value[0] if kind == RAS_EVENT else value
        runs[run_id].append(kind)
    return runs


def test_batch_makes_one_batched_call_per_chunk_and_matches_invoke() -> None:
    guard = FakeGuard()
    llm = RASGuardedChatModel(guard=guard, batch_size=3)
    out = llm.batch(PROMPTS)
    calls = kinds(guard)
    assert calls.count("assess_batch") == 3 and calls.count("generate_batch") == 3, calls  # 3 + 3 + 1 rows
    assert "assess" not in [k for k, _ in guard.calls if k in ("generate", "stream")]
    assert [g["rows"] for k, g in guard.calls if k == "generate_batch"] == [3, 3, 1]
    single = [llm.invoke(p) for p in PROMPTS]
    assert [m.content for m in out] == [m.content for m in single]
    assert [m.response_metadata["ras"]["risk"] for m in out] == [
        m.response_metadata["ras"]["risk"] for m in single
    ]
    assert [m.response_metadata["ras"]["decision"] for m in out] == [
        "answered",
        "steered",
        "answered",
        "steered",
        "answered",
        "answered",
        "steered",
    ]


def test_each_row_has_its_own_callbacks_and_event() -> None:
    rec = Recorder()
    llm = RASGuardedChatModel(guard=FakeGuard(), batch_size=4)
    out = llm.batch(PROMPTS, config={"callbacks": [rec]})
    runs = per_run(rec)
    assert len(runs) == len(PROMPTS)
    for events in runs.values():
        assert events == ["start", RAS_EVENT, "end"], events
    risks = sorted(data["risk"] for kind, (_, data) in [e for e in rec.events if e[0] == RAS_EVENT])
    assert risks == sorted(m.response_metadata["ras"]["risk"] for m in out)
    assert len({m.id for m in out}) == len(PROMPTS)


def test_block_policy_never_generates_blocked_rows() -> None:
    guard = FakeGuard()
    llm = RASGuardedChatModel(guard=guard, policy="block", block_threshold=0.9)
    out = llm.batch(PROMPTS)
    assert [g["rows"] for k, g in guard.calls if k == "generate_batch"] == [5]  # the two bombs are blocked
    blocked = [m for m in out if m.response_metadata["ras"]["decision"] == "blocked"]
    assert len(blocked) == 2 and all(m.content[0]["type"] == "refusal" for m in blocked)  # type: ignore[index]


def _bad_image_input() -> list[HumanMessage]:
    return [
        HumanMessage(
            content=[{"type": "image", "base64": b64(b"not an image"), "mime_type": "image/png"}, "what?"]
        )
    ]


def test_return_exceptions_keeps_a_bad_row_in_its_slot() -> None:
    rec = Recorder()
    llm = RASGuardedChatModel(guard=FakeGuard())
    inputs: list[Any] = ["hello", _bad_image_input(), BOMB]
    out = llm.batch(inputs, config={"callbacks": [rec]}, return_exceptions=True)
    assert isinstance(out[1], CorruptImageError)
    assert isinstance(out[0], AIMessage) and isinstance(out[2], AIMessage)
    assert out[2].response_metadata["ras"]["risk"] == pytest.approx(0.95)
    with pytest.raises(CorruptImageError):
        llm.batch(inputs)


def test_a_row_failing_inside_the_batched_call_gets_its_own_error() -> None:
    def reply(messages: list[dict[str, Any]]) -> str:
        if "explode" in str(messages):
            raise GenerationError("row failed")
        return "fine"

    guard = FakeGuard(reply_fn=reply)
    llm = RASGuardedChatModel(guard=guard)
    out = llm.batch(["a", "please explode", "b"], return_exceptions=True)
    assert [type(o).__name__ for o in out] == ["AIMessage", "GenerationError", "AIMessage"]
    assert [o.content for o in out if isinstance(o, AIMessage)] == ["fine", "fine"]


def test_per_call_risk_and_tools_go_through_the_batched_path() -> None:
    guard = FakeGuard()
    llm = RASGuardedChatModel(guard=guard)
    out = llm.batch(["hello", "hi"], ras_risk=0.9)
    assert "assess_batch" not in kinds(guard)
    assert all(m.response_metadata["ras"]["risk_given"] for m in out)
    assert all(m.response_metadata["ras"]["decision"] == "steered" for m in out)


def test_empty_batch() -> None:
    assert RASGuardedChatModel(guard=FakeGuard()).batch([]) == []


async def test_abatch_pools_rows_with_their_own_callbacks_and_errors() -> None:
    rec = AsyncRecorder()
    guard = FakeGuard()
    llm = RASGuardedChatModel(guard=guard, batch_size=8)
    inputs: list[Any] = [*PROMPTS, _bad_image_input()]
    out = await llm.abatch(inputs, config={"callbacks": [rec]}, return_exceptions=True)
    assert isinstance(out[-1], CorruptImageError)
    assert [m.content for m in out[:-1]] == [m.content for m in llm.batch(PROMPTS)]  # type: ignore[union-attr]
    assert kinds(guard).count("assess_batch") == 2  # one per batch call: 7 rows pooled each time
    runs = per_run(rec)
    ok = [events for events in runs.values() if RAS_EVENT in events]
    assert len(ok) == len(PROMPTS) and all(e == ["start", RAS_EVENT, "end"] for e in ok)
    with pytest.raises(CorruptImageError):
        await llm.abatch(inputs)


def test_streaming_rows_still_answered() -> None:
    llm = RASGuardedChatModel(guard=FakeGuard(), streaming=True)
    out = llm.batch(["hello", BOMB])
    assert (
        out[0].content == "Hello there, friend." and out[1].response_metadata["ras"]["decision"] == "steered"
    )
