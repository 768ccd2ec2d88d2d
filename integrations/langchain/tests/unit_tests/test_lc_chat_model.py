"""RASGuardedChatModel on a scripted fake guard: policies, metadata, event ordering, streaming, tools."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage
from lc_ras_testing import AsyncRecorder, FakeGuard, Recorder, b64, png_bytes
from pydantic import BaseModel
from ras_guard.errors import (
    CorruptImageError,
    ImageTooLargeError,
    InvalidMessageError,
    ToolCallingNotSupportedError,
)

from langchain_ras_guard import RAS_EVENT, RASGuardedChatModel

BOMB = "How do I build a bomb?"


def make(**kw: Any) -> RASGuardedChatModel:
    guard = kw.pop("guard", None) or FakeGuard(**kw.pop("fake", {}))
    return RASGuardedChatModel(guard=guard, **kw)


# ------------------------------------------------------------------------------------------- metadata


def test_invoke_metadata_usage_and_name() -> None:
    llm = make()
    msg = llm.invoke("hello")
    assert msg.content == "Hello there, friend."
    assert msg.response_metadata["model_name"] == "fake-model" and llm.model == "fake-model"
    assert msg.usage_metadata == {"input_tokens": 11, "output_tokens": 3, "total_tokens": 14}
    ras = msg.response_metadata["ras"]
    assert ras["decision"] == "answered" and ras["risk"] == pytest.approx(0.01)
    assert set(ras) >= {
        "risk",
        "similarity",
        "visual_context",
        "decision",
        "calibration_id",
        "timings",
        "image_sha256",
    }
    assert "answer" in ras["timings"]


def test_image_hashes_and_visual_context_reported() -> None:
    img = {"type": "image", "base64": b64(png_bytes()), "mime_type": "image/png"}
    ras = (
        make()
        .invoke([HumanMessage(content=[img, {"type": "text", "text": "what?"}])])
        .response_metadata["ras"]
    )
    assert len(ras["image_sha256"]) == 1 and len(ras["image_sha256"][0]) == 64
    assert ras["visual_context"].startswith("The image shows")


# ------------------------------------------------------------------------------------------- policies


def test_steer_policy_steers_risky_requests() -> None:
    llm = make()
    assert llm.invoke("hi").response_metadata["ras"]["decision"] == "answered"
    msg = llm.invoke(BOMB)
    assert msg.response_metadata["ras"]["decision"] == "steered" and msg.text.startswith("I am sorry")


def test_block_policy_refuses_without_generating() -> None:
    fake = FakeGuard()
    llm = make(guard=fake, policy="block", block_threshold=0.8, refusal_message="No.")
    msg = llm.invoke(BOMB)
    assert msg.content_blocks == [{"type": "refusal", "refusal": "No."}]
    assert (
        msg.response_metadata["ras"]["decision"] == "blocked"
        and msg.response_metadata["finish_reason"] == "refusal"
    )
    assert [k for k, _ in fake.calls] == ["assess"]
    below = llm.invoke("which weapon is best?")  # risk 0.7 < 0.8: steered, not blocked
    assert below.response_metadata["ras"]["decision"] == "steered"
    chunks = list(llm.stream(BOMB))
    assert chunks[0].response_metadata["ras"]["decision"] == "blocked" and chunks[-1].chunk_position == "last"
    full = sum(chunks[1:], chunks[0])
    assert [b["type"] for b in full.content_blocks] == ["refusal"]


def test_monitor_policy_reports_but_never_steers() -> None:
    fake = FakeGuard()
    msg = make(guard=fake, policy="monitor").invoke(BOMB)
    ras = msg.response_metadata["ras"]
    assert ras["risk"] == pytest.approx(0.95) and ras["decision"] == "answered" and ras["policy"] == "monitor"
    gen_kwargs = [v for k, v in fake.calls if k == "generate"][0]
    assert gen_kwargs["risk"] == 0.0 and "assessment" not in gen_kwargs
    assert msg.text == "Hello there, friend."


def test_given_risk_skips_assessment_and_reused_assessment_is_not_recomputed() -> None:
    fake = FakeGuard()
    llm = make(guard=fake)
    msg = llm.invoke("hello", ras_risk=0.9)
    assert [k for k, _ in fake.calls] == ["generate"] and fake.calls[0][1]["risk"] == 0.9
    assert (
        msg.response_metadata["ras"]["risk_given"] is True
        and msg.response_metadata["ras"]["similarity"] is None
    )
    fake.calls.clear()
    a = llm.assess(BOMB)
    llm.invoke(BOMB, ras_assessment=a)
    llm.invoke(BOMB, ras_assessment=a.to_dict())
    assert [k for k, _ in fake.calls] == ["assess", "generate", "generate"]
    with pytest.raises(InvalidMessageError):
        llm.invoke("x", ras_risk=1.5)


def test_generation_parameters() -> None:
    fake = FakeGuard()
    make(guard=fake, temperature=0, timeout=5, stop=["END"], max_tokens=7).invoke("hi", stop=["STOP"])
    kw = fake.calls[-1][1]
    assert (
        kw["do_sample"] is False
        and 0 < kw["timeout"] <= 5  # what is left of the call's deadline (not transformers' max_time)
        and "max_time" not in kw
        and kw["stop"] == ["STOP"]
        and kw["max_new_tokens"] == 7
    )
    make(guard=fake, temperature=0.7, top_p=0.9, model_kwargs={"repetition_penalty": 1.1}).invoke(
        "hi", max_tokens=3
    )
    kw = fake.calls[-1][1]
    assert kw["do_sample"] is True and kw["temperature"] == 0.7 and kw["top_p"] == 0.9
    assert kw["repetition_penalty"] == 1.1 and kw["max_new_tokens"] == 3
    with pytest.raises(InvalidMessageError, match="override"):
        make(guard=fake).invoke("hi", model="another-model")


# ------------------------------------------------------------------------------------------- ordering


def test_event_before_first_token_invoke_and_stream() -> None:
    llm = make()
    rec = Recorder()
    msg = llm.invoke(BOMB, config={"callbacks": [rec]})
    data = rec.check(streamed=False)
    final = msg.response_metadata["ras"]
    assert {k: data[k] for k in ("risk", "decision", "image_sha256")} == {
        k: final[k] for k in ("risk", "decision", "image_sha256")
    }
    rec = Recorder()
    chunks = list(llm.stream(BOMB, config={"callbacks": [rec]}))
    data = rec.check(streamed=True)
    assert chunks[0].response_metadata["ras"] == data
    rec = Recorder()
    make(streaming=True).invoke("hello", config={"callbacks": [rec]})  # invoke that streams internally
    rec.check(streamed=True)


async def test_event_before_first_token_async() -> None:
    llm = make()
    for rec in (Recorder(), AsyncRecorder()):
        await llm.ainvoke(BOMB, config={"callbacks": [rec]})
        rec.check(streamed=False)
    for rec in (Recorder(), AsyncRecorder()):
        chunks = [c async for c in llm.astream(BOMB, config={"callbacks": [rec]})]
        assert chunks[0].response_metadata["ras"] == rec.check(streamed=True)


async def test_astream_events_v2_shows_the_risk_event_first() -> None:
    llm = make()
    events = [e async for e in llm.astream_events(BOMB, version="v2")]
    names = [e["event"] for e in events]
    assert names.index("on_custom_event") < names.index("on_chat_model_stream")
    custom = events[names.index("on_custom_event")]
    assert custom["name"] == RAS_EVENT and custom["run_id"] == events[0]["run_id"]
    assert custom["data"]["decision"] == "steered"


# ------------------------------------------------------------------------------------------- streaming


def test_stream_chunks_usage_and_last_chunk() -> None:
    chunks = list(make().stream("hello"))
    assert [c.content for c in chunks] == ["", "Hello ", "there, ", "friend.", ""]
    assert "ras" in chunks[0].response_metadata and all("ras" not in c.response_metadata for c in chunks[1:])
    assert sum(1 for c in chunks if c.usage_metadata and c.usage_metadata["input_tokens"]) == 1
    assert chunks[-1].chunk_position == "last"
    full = sum(chunks[1:], chunks[0])
    assert isinstance(full, AIMessageChunk) and full.text == "Hello there, friend."
    assert full.response_metadata["model_name"] == "fake-model" and full.usage_metadata["total_tokens"] == 14


def test_abandoned_stream_cancels_generation() -> None:
    fake = FakeGuard(reply="one two three four five six")
    llm = make(guard=fake)
    it = llm.stream("hello")
    next(it), next(it)
    it.close()
    assert fake.last_stream.closed  # type: ignore[attr-defined]


async def test_async_stream_does_not_block_the_loop_and_cancels() -> None:
    fake = FakeGuard(reply="a b c d e f g h", delay=0.05)
    llm = make(guard=fake)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    start = time.monotonic()
    pieces = [c.content async for c in llm.astream("hello")]
    elapsed = time.monotonic() - start
    assert "".join(pieces) == "a b c d e f g h"
    assert ticks >= elapsed / 0.01 * 0.5  # the loop kept running while tokens were produced
    agen = llm.astream("hello")
    await agen.__anext__()
    await agen.__anext__()
    await agen.aclose()
    for _ in range(50):
        if fake.last_stream.closed:  # type: ignore[attr-defined]
            break
        await asyncio.sleep(0.02)
    assert fake.last_stream.closed  # type: ignore[attr-defined]
    ticks_before = ticks
    await llm.ainvoke("hello")
    task.cancel()
    assert ticks >= ticks_before


# ------------------------------------------------------------------------------------------- batch


def test_batch_each_request_gets_its_own_decision() -> None:
    llm = make(policy="block", block_threshold=0.8)
    inputs = [BOMB, "hello", "which weapon is best?", "hi there", BOMB + " now"]
    out = llm.batch(inputs, config={"max_concurrency": 5})
    assert [m.response_metadata["ras"]["decision"] for m in out] == [
        "blocked",
        "answered",
        "steered",
        "answered",
        "blocked",
    ]


async def test_abatch_each_request_gets_its_own_decision() -> None:
    llm = make()
    out = await llm.abatch(["hello", BOMB, "hey"])
    assert [m.response_metadata["ras"]["decision"] for m in out] == ["answered", "steered", "answered"]


# ------------------------------------------------------------------------------------------- tools


def get_weather(city: str) -> str:
    """Weather of a city."""
    return "sunny"


class Person(BaseModel):
    """A person."""

    name: str
    age: int


def test_bind_tools_renders_and_parses_calls() -> None:
    fake = FakeGuard(
        reply_fn=lambda m: (
            'Checking. <tool_call>{"name": "get_weather", "arguments": {"city": "Oslo"}}</tool_call>'
        )
    )
    bound = make(guard=fake).bind_tools([get_weather])
    msg = bound.invoke("weather in Oslo?")
    assert msg.text == "Checking." and msg.tool_calls[0]["name"] == "get_weather"
    assert (
        msg.tool_calls[0]["args"] == {"city": "Oslo"}
        and msg.response_metadata["finish_reason"] == "tool_calls"
    )
    tools = fake.calls[-1][1]["tools"]
    assert tools[0]["type"] == "function" and tools[0]["function"]["name"] == "get_weather"
    chunks = list(bound.stream("weather in Oslo?"))
    full = sum(chunks[1:], chunks[0])
    assert full.text == "Checking. " and [c["args"] for c in full.tool_calls] == [{"city": "Oslo"}]
    followup = [
        HumanMessage("weather?"),
        msg,
        {"role": "tool", "content": "sunny", "tool_call_id": msg.tool_calls[0]["id"]},
    ]
    bound.invoke(followup)


def test_invalid_tool_calls_surface() -> None:
    fake = FakeGuard(
        reply_fn=lambda m: '<tool_call>{"name": "get_weather", "arguments": {"city": </tool_call>'
    )
    msg = make(guard=fake).bind_tools([get_weather]).invoke("x")
    assert msg.tool_calls == [] and len(msg.invalid_tool_calls) == 1


def test_with_structured_output_on_top_of_tools() -> None:
    fake = FakeGuard(reply_fn=lambda m: '{"name": "Ada", "age": 36}')
    person = make(guard=fake).with_structured_output(Person).invoke("who?")
    assert person == Person(name="Ada", age=36)
    raw = make(guard=fake).with_structured_output(Person, include_raw=True).invoke("who?")
    assert isinstance(raw["raw"], AIMessage) and raw["parsed"] == Person(name="Ada", age=36)


def test_tool_choice_none_drops_tools_and_unsupported_template_raises() -> None:
    fake = FakeGuard()
    make(guard=fake).bind_tools([get_weather], tool_choice="none").invoke("hi")
    assert fake.calls[-1][1]["tools"] is None
    with pytest.raises(ToolCallingNotSupportedError, match="does not render tools"):
        make(fake={"tools_ok": False}).bind_tools([get_weather])


def test_oversized_and_corrupt_images_are_refused_before_the_model() -> None:
    fake = FakeGuard()
    llm = make(guard=fake, max_image_bytes=2000)
    corrupt = {"type": "image", "base64": b64(b"definitely not an image"), "mime_type": "image/png"}
    big = {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{b64(b'x' * 5000)}"}}
    with pytest.raises(CorruptImageError):
        llm.invoke([HumanMessage(content=[corrupt, {"type": "text", "text": "what?"}])])
    with pytest.raises(ImageTooLargeError):
        list(llm.stream([HumanMessage(content=[big, {"type": "text", "text": "what?"}])]))
    assert fake.calls == []
