"""RiskLoggingCallbackHandler: one JSON line per call, concurrency, async, rotation, errors."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from langchain_core.language_models import FakeListChatModel
from langchain_core.messages import HumanMessage
from lc_ras_testing import FakeGuard, b64, png_bytes
from ras_guard.errors import UnsafeURLError

from langchain_ras_guard import RAS_EVENT, RASGuardedChatModel, RiskLoggingCallbackHandler

KEYS = {
    "time",
    "run_id",
    "parent_run_id",
    "model",
    "risk",
    "similarity",
    "decision",
    "policy",
    "calibration_id",
    "image_sha256",
    "latency_s",
    "input_tokens",
    "output_tokens",
}


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_one_line_per_call_with_hashes_not_bytes(tmp_path: Path) -> None:
    log_path = tmp_path / "logs" / "safety.jsonl"
    img = b64(png_bytes())
    llm = RASGuardedChatModel(guard=FakeGuard())
    with RiskLoggingCallbackHandler(log_path) as log:
        msg = llm.invoke(
            [HumanMessage(content=[{"type": "image", "base64": img, "mime_type": "image/png"}, "bomb?"])],
            config={"callbacks": [log]},
        )
        list(llm.stream("hello", config={"callbacks": [log]}))
        FakeListChatModel(responses=["x"]).invoke("not guarded", config={"callbacks": [log]})
    text = log_path.read_text()
    assert img[:40] not in text
    first, second = _lines(log_path)
    assert KEYS <= set(first) and first["decision"] == "steered" and first["risk"] == pytest.approx(0.95)
    assert first["image_sha256"] == msg.response_metadata["ras"]["image_sha256"]
    assert first["time"].endswith("+00:00") and first["latency_s"] >= 0 and first["model"] == "fake-model"
    assert second["decision"] == "answered" and second["input_tokens"] == 11 and second["image_sha256"] == []


def test_concurrent_sync_batch(tmp_path: Path) -> None:
    llm = RASGuardedChatModel(guard=FakeGuard(delay=0.02), policy="block", block_threshold=0.9)
    log = RiskLoggingCallbackHandler(tmp_path / "s.jsonl")
    inputs = [("bomb " if i % 3 == 0 else "hello ") + str(i) for i in range(12)]
    llm.batch(inputs, config={"callbacks": [log], "max_concurrency": 6})
    log.close()
    lines = _lines(tmp_path / "s.jsonl")
    assert len(lines) == 12 and len({line["run_id"] for line in lines}) == 12
    assert sorted(line["decision"] for line in lines) == ["answered"] * 8 + ["blocked"] * 4


async def test_concurrent_async_calls(tmp_path: Path) -> None:
    llm = RASGuardedChatModel(guard=FakeGuard(delay=0.02))
    log = RiskLoggingCallbackHandler(tmp_path / "a.jsonl")
    await llm.abatch([f"hello {i}" for i in range(8)], config={"callbacks": [log]})
    async for _ in llm.astream("bomb", config={"callbacks": [log]}):
        pass
    log.close()
    lines = _lines(tmp_path / "a.jsonl")
    assert len(lines) == 9 and [line["decision"] for line in lines].count("steered") == 1


def test_failed_call_is_logged_as_error(tmp_path: Path) -> None:
    llm = RASGuardedChatModel(guard=FakeGuard())
    log = RiskLoggingCallbackHandler(tmp_path / "e.jsonl")
    with pytest.raises(UnsafeURLError):
        llm.invoke(
            [HumanMessage(content=[{"type": "image", "url": "http://169.254.169.254/x.png"}])],
            config={"callbacks": [log]},
        )
    log.close()
    (line,) = _lines(tmp_path / "e.jsonl")
    assert line["decision"] == "error" and line["error"].startswith("UnsafeURLError")


def test_event_without_a_model_run_gets_its_own_line(tmp_path: Path) -> None:
    log = RiskLoggingCallbackHandler(tmp_path / "m.jsonl", include_visual_context=True)
    log.on_custom_event(
        RAS_EVENT,
        {
            "risk": 0.9,
            "decision": "blocked",
            "source": "middleware",
            "visual_context": "The image shows a bomb .",
        },
        run_id=uuid.uuid4(),
    )
    log.on_custom_event("something_else", {"risk": 1}, run_id=uuid.uuid4())
    log.close()
    (line,) = _lines(tmp_path / "m.jsonl")
    assert line["decision"] == "blocked" and line["source"] == "middleware" and line["visual_context"]


def test_rotation(tmp_path: Path) -> None:
    llm = RASGuardedChatModel(guard=FakeGuard())
    log = RiskLoggingCallbackHandler(tmp_path / "r.jsonl", max_bytes=1500, backup_count=2)
    for i in range(20):
        llm.invoke(f"hello {i}", config={"callbacks": [log]})
    log.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["r.jsonl", "r.jsonl.1", "r.jsonl.2"]
    assert all(p.stat().st_size <= 1500 for p in tmp_path.iterdir())
