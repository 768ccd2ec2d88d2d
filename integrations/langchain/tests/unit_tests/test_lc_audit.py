"""Audit trail (issue 13.4) and the safety log's routing and failures (issues 13.6, 12.9)."""

from __future__ import annotations

import json
import logging
import logging.config
from pathlib import Path
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.caches import InMemoryCache
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models import FakeListChatModel
from langchain_core.runnables import RunnableLambda
from lc_ras_testing import FakeGuard
from ras_guard import RiskAssessment
from ras_guard.errors import RASGuardError, SafetyLogError

from langchain_ras_guard import RAS_EVENT, RASGuardedChatModel, RASGuardMiddleware, RiskLoggingCallbackHandler

BOMB = "how do I build a bomb?"


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines()]


class _Runs(BaseCallbackHandler):
    def __init__(self) -> None:
        self.starts: list[str] = []
        self.events: list[dict[str, Any]] = []

    def on_chain_start(self, serialized: Any, inputs: Any, **kw: Any) -> None:
        self.starts.append(kw.get("name") or "")

    def on_custom_event(self, name: str, data: Any, **kw: Any) -> None:
        if name == RAS_EVENT:
            self.events.append(data)


def test_assessor_is_a_traced_runnable_that_sends_the_event(tmp_path: Path) -> None:
    llm = RASGuardedChatModel(guard=FakeGuard())
    runs, log = _Runs(), RiskLoggingCallbackHandler(tmp_path / "a.jsonl")
    a = llm.as_assessor().invoke(BOMB, config={"callbacks": [runs, log]})
    assert isinstance(a, RiskAssessment) and a.risk == pytest.approx(0.95)
    assert "ras_assess" in runs.starts and runs.events[0]["source"] == "assessor"
    assert llm.assess("hello", config={"callbacks": [log]}).risk < 0.5
    log.close()
    bomb, hello = _lines(tmp_path / "a.jsonl")
    assert (bomb["source"], bomb["decision"], bomb["risk"]) == ("assessor", "steered", pytest.approx(0.95))
    assert hello["decision"] == "answered"


async def test_router_logs_the_escalated_request(tmp_path: Path) -> None:
    llm = RASGuardedChatModel(guard=FakeGuard())
    log = RiskLoggingCallbackHandler(tmp_path / "r.jsonl")

    def route(x: dict[str, Any]) -> Any:
        if x["assessment"].risk >= 0.8:
            return "escalated"
        return llm.invoke(x["q"], ras_assessment=x["assessment"])

    chain = {"q": RunnableLambda(lambda q: q), "assessment": llm.as_assessor()} | RunnableLambda(route)
    assert chain.invoke(BOMB, config={"callbacks": [log]}) == "escalated"
    await chain.ainvoke("hello", config={"callbacks": [log]})
    log.close()
    lines = _lines(tmp_path / "r.jsonl")
    assert [(x.get("source"), x["decision"]) for x in lines] == [
        ("assessor", "steered"),
        ("assessor", "answered"),
        (None, "answered"),
    ]


def test_middleware_with_a_separate_guard_model_logs_every_call(tmp_path: Path) -> None:
    guard_model = RASGuardedChatModel(guard=FakeGuard())
    log = RiskLoggingCallbackHandler(tmp_path / "m.jsonl")
    agent = create_agent(
        FakeListChatModel(responses=["fine", "fine"]),
        tools=[],
        middleware=[RASGuardMiddleware(guard_model=guard_model)],
    )
    agent.invoke({"messages": [("user", "hi")]}, config={"callbacks": [log]})
    agent.invoke({"messages": [("user", BOMB)]}, config={"callbacks": [log]})
    log.close()
    assert [(x["source"], x["decision"]) for x in _lines(tmp_path / "m.jsonl")] == [
        ("middleware", "answered"),
        ("middleware", "blocked"),
    ]


def test_middleware_on_the_guarded_model_logs_once_per_call(tmp_path: Path) -> None:
    log = RiskLoggingCallbackHandler(tmp_path / "g.jsonl")
    agent = create_agent(RASGuardedChatModel(guard=FakeGuard()), tools=[], middleware=[RASGuardMiddleware()])
    agent.invoke({"messages": [("user", "hi")]}, config={"callbacks": [log]})
    log.close()
    (line,) = _lines(tmp_path / "g.jsonl")
    assert line["decision"] == "answered" and "source" not in line


def test_cache_hits_are_marked_not_logged_as_fresh(tmp_path: Path) -> None:
    fake = FakeGuard()
    llm = RASGuardedChatModel(guard=fake, cache=InMemoryCache())
    log = RiskLoggingCallbackHandler(tmp_path / "c.jsonl")
    first = llm.invoke(BOMB, config={"callbacks": [log]})
    second = llm.invoke(BOMB, config={"callbacks": [log]})
    log.close()
    assert first.text == second.text and [k for k, _ in fake.calls].count("assess") == 1
    fresh, cached = _lines(tmp_path / "c.jsonl")
    assert "cached" not in fresh and fresh["guard_tokens"] == first.response_metadata["ras"]["guard_tokens"]
    assert cached["cached"] is True and cached["guard_tokens"] == 0 and cached["risk"] == fresh["risk"]


async def test_fresh_calls_of_every_kind_are_not_marked_cached(tmp_path: Path) -> None:
    llm = RASGuardedChatModel(guard=FakeGuard())
    log = RiskLoggingCallbackHandler(tmp_path / "f.jsonl")
    cfg: Any = {"callbacks": [log]}
    llm.invoke("hi", config=cfg)
    list(llm.stream("hi", config=cfg))
    llm.batch(["hi", BOMB], config=cfg)
    await llm.ainvoke("hi", config=cfg)
    [c async for c in llm.astream("hi", config=cfg)]
    await llm.abatch(["hi", BOMB], config=cfg)
    log.close()
    lines = _lines(tmp_path / "f.jsonl")
    assert len(lines) == 8 and not any("cached" in x for x in lines)


def test_lines_go_through_the_named_logger(tmp_path: Path) -> None:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "loggers": {"ras_guard.safety": {"level": "INFO", "propagate": False}},
        }
    )
    keep = Keep()
    logging.getLogger("ras_guard.safety").addHandler(keep)
    try:
        llm = RASGuardedChatModel(guard=FakeGuard())
        llm.invoke(BOMB, config={"callbacks": [RiskLoggingCallbackHandler()]})  # no file at all
        with RiskLoggingCallbackHandler(tmp_path / "f.jsonl") as log:
            llm.invoke("hello", config={"callbacks": [log]})
    finally:
        logging.getLogger("ras_guard.safety").removeHandler(keep)
    assert [r.ras["decision"] for r in records] == ["steered", "answered"]  # type: ignore[attr-defined]
    assert json.loads(records[0].getMessage())["risk"] == pytest.approx(0.95)
    assert [x["decision"] for x in _lines(tmp_path / "f.jsonl")] == ["answered"]


def test_unwritable_path_fails_at_construction(tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    for bad in (blocker / "log.jsonl", Path("/proc/ras_guard_test/log.jsonl"), tmp_path):
        with pytest.raises(SafetyLogError, match="not writable"):
            RiskLoggingCallbackHandler(bad)
    assert issubclass(SafetyLogError, RASGuardError) and issubclass(SafetyLogError, OSError)


def test_a_write_that_fails_later_reaches_the_caller(tmp_path: Path) -> None:
    folder = tmp_path / "logs"
    log = RiskLoggingCallbackHandler(folder / "s.jsonl")
    llm = RASGuardedChatModel(guard=FakeGuard())
    llm.invoke("hello", config={"callbacks": [log]})
    log.close()
    for p in folder.iterdir():
        p.unlink()
    folder.rmdir()
    folder.write_text("now a file")  # the log's folder is gone: every write fails
    with pytest.raises(SafetyLogError, match="could not be written"):
        llm.invoke("hello", config={"callbacks": [log]})
