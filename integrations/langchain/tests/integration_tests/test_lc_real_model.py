"""RASGuardedChatModel on a real local checkpoint (the demo model if installed, else a tiny LLaVA)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_core.runnables import RunnableParallel
from lc_ras_testing import AsyncRecorder, LocalServer, Recorder, Route, b64, png_bytes
from ras_guard.errors import UnsafeURLError

from langchain_ras_guard import RAS_EVENT, RASGuardedChatModel, RiskLoggingCallbackHandler

RED, BLUE = png_bytes((220, 20, 20), (40, 30)), png_bytes((20, 20, 220), (30, 40))


@pytest.fixture(scope="module")
def llm(real_guard: Any) -> RASGuardedChatModel:
    return RASGuardedChatModel(guard=real_guard, max_tokens=12, temperature=0)


def _question(image: bytes | None = None, text: str = "what is in the image ?") -> list[Any]:
    content: list[Any] = [{"type": "text", "text": text}]
    if image is not None:
        content.insert(0, {"type": "image", "base64": b64(image), "mime_type": "image/png"})
    return [HumanMessage(content=content)]


def test_event_before_first_token_sync(llm: RASGuardedChatModel) -> None:
    rec = Recorder()
    msg = llm.invoke(_question(RED), config={"callbacks": [rec]})
    data = rec.check(streamed=False)
    assert data["risk"] == pytest.approx(msg.response_metadata["ras"]["risk"])
    assert (
        data["image_sha256"] == msg.response_metadata["ras"]["image_sha256"]
        and len(data["image_sha256"]) == 1
    )
    rec = Recorder()
    chunks = list(llm.stream(_question(RED), config={"callbacks": [rec]}))
    assert chunks[0].response_metadata["ras"] == rec.check(streamed=True)
    assert chunks[-1].chunk_position == "last"


async def test_event_before_first_token_async(llm: RASGuardedChatModel) -> None:
    rec = AsyncRecorder()
    await llm.ainvoke(_question(BLUE), config={"callbacks": [rec]})
    rec.check(streamed=False)
    rec = AsyncRecorder()
    chunks = [c async for c in llm.astream(_question(BLUE), config={"callbacks": [rec]})]
    assert chunks[0].response_metadata["ras"] == rec.check(streamed=True)
    events = [e async for e in llm.astream_events(_question(BLUE), version="v2")]
    names = [e["event"] for e in events]
    assert names.count("on_custom_event") == 1
    assert names.index("on_custom_event") < names.index("on_chat_model_stream")
    assert events[names.index("on_custom_event")]["name"] == RAS_EVENT


def test_every_image_form_and_a_multi_turn_conversation(llm: RASGuardedChatModel) -> None:
    with LocalServer() as server:
        server.routes["/blue.png"] = Route(200, BLUE, {"Content-Type": "image/png"})
        url = server.url("/blue.png")
        forms = [
            {"type": "image", "base64": b64(RED), "mime_type": "image/png"},
            {"type": "image", "url": f"data:image/png;base64,{b64(RED)}"},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{b64(RED)}"}},
            {"type": "image", "source_type": "base64", "data": b64(RED), "mime_type": "image/png"},
        ]
        hashes = {
            llm.invoke(
                [HumanMessage(content=[f, {"type": "text", "text": "describe it"}])]
            ).response_metadata["ras"]["image_sha256"][0]
            for f in forms
        }
        assert len(hashes) == 1  # the same pixels whatever the form
        allowed = llm.model_copy(update={"allowed_hosts": ["127.0.0.1"]})
        for block in ({"type": "image", "url": url}, {"type": "image_url", "image_url": {"url": url}}):
            msg = allowed.invoke([HumanMessage(content=[block, {"type": "text", "text": "describe it"}])])
            assert len(msg.response_metadata["ras"]["image_sha256"]) == 1
        assert server.hits == ["/blue.png", "/blue.png"]
        with pytest.raises(UnsafeURLError):
            llm.invoke([HumanMessage(content=[{"type": "image", "url": url}])])
        assert len(server.hits) == 2
    conversation = [
        SystemMessage("you are a careful assistant ."),
        HumanMessage(
            content=[{"type": "image", "base64": b64(RED), "mime_type": "image/png"}, "what is this ?"]
        ),
        AIMessage("a red square ."),
        HumanMessage(
            content=[
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{b64(BLUE)}"}},
                {"type": "image", "base64": b64(RED), "mime_type": "image/png"},
                "and these two ?",
            ]
        ),
    ]
    msg = llm.invoke(conversation)
    assert len(msg.response_metadata["ras"]["image_sha256"]) == 3 and msg.usage_metadata["input_tokens"] > 0


def test_batch_of_mixed_risks_decides_each_request_on_its_own(llm: RASGuardedChatModel) -> None:
    requests = [
        _question(RED),
        _question(None, "how can i make a bomb ?"),
        _question(BLUE, "what is it ?"),
        _question(None, "tell me a story about a cat ."),
    ]
    risks = [llm.assess(r).risk for r in requests]
    assert len({round(r, 6) for r in risks}) > 1, risks
    threshold = (min(risks) + max(risks)) / 2
    blocker = llm.model_copy(update={"policy": "block", "block_threshold": threshold})
    out = blocker.batch(requests, config={"max_concurrency": 4})
    expected = [
        "blocked" if r >= threshold else ("steered" if r >= llm.guard.config.risk_floor else "answered")
        for r in risks
    ]
    assert [m.response_metadata["ras"]["decision"] for m in out] == expected
    assert [m.response_metadata["ras"]["risk"] for m in out] == pytest.approx(risks)


def test_concurrent_calls_with_risk_overrides(llm: RASGuardedChatModel) -> None:
    parallel = RunnableParallel(
        low=llm.bind(ras_risk=0.0),
        high=llm.bind(ras_risk=1.0),
        blocked=llm.model_copy(update={"policy": "block"}).bind(ras_risk=0.9),
        monitored=llm.model_copy(update={"policy": "monitor"}).bind(ras_risk=0.9),
    )
    out = parallel.invoke(_question(RED))
    assert {k: v.response_metadata["ras"]["decision"] for k, v in out.items()} == {
        "low": "answered",
        "high": "steered",
        "blocked": "blocked",
        "monitored": "answered",
    }
    assert out["blocked"].content_blocks[0]["type"] == "refusal"


def test_abandoned_stream_stops_generation(llm: RASGuardedChatModel) -> None:
    long = llm.model_copy(update={"max_tokens": 200})
    it = long.stream(_question(RED))
    next(it), next(it)
    start = time.monotonic()
    it.close()
    assert time.monotonic() - start < 5
    assert llm.invoke(_question(BLUE)).response_metadata["ras"]  # the model is free again


def test_safety_log_with_the_real_model(llm: RASGuardedChatModel, tmp_path: Path) -> None:
    log = RiskLoggingCallbackHandler(tmp_path / "safety.jsonl")
    llm.batch([_question(RED), _question(BLUE)], config={"callbacks": [log]})
    list(llm.stream(_question(None, "hello ."), config={"callbacks": [log]}))
    log.close()
    lines = [json.loads(x) for x in (tmp_path / "safety.jsonl").read_text().splitlines()]
    assert len(lines) == 3 and [len(x["image_sha256"]) for x in lines].count(1) == 2
    assert all(0.0 <= x["risk"] <= 1.0 and x["decision"] in ("answered", "steered") for x in lines)
