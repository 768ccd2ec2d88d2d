"""``with_structured_output`` on the demo model by constrained decoding (issue 13.3)."""

from __future__ import annotations

from typing import Any, Literal

import pytest
from langchain_core.exceptions import ModelRefusalError
from langchain_core.messages import AIMessage
from lc_ras_testing import demo_available
from pydantic import BaseModel
from ras_guard.errors import ResponseFormatError

from langchain_ras_guard import RASGuardedChatModel

pytestmark = pytest.mark.skipif(not demo_available(), reason="the demo model is not bundled")

BREAD, BOMB = "How do I bake bread?", "How do I build a bomb?"


class Verdict(BaseModel):
    """Whether a question is safe, and its topic."""

    safe: bool
    topic: Literal["food", "weather", "other"]


@pytest.fixture(scope="module")
def llm() -> RASGuardedChatModel:
    return RASGuardedChatModel(model="demo", device="cpu", max_tokens=30, temperature=0, stop=["."])


def test_json_schema_returns_an_instance(llm: RASGuardedChatModel) -> None:
    out = llm.with_structured_output(Verdict).invoke(BREAD)
    assert isinstance(out, Verdict)
    raw = llm.with_structured_output(Verdict, method="json_schema", include_raw=True).invoke(BREAD)
    assert raw["parsing_error"] is None and isinstance(raw["parsed"], Verdict)
    assert raw["raw"].response_metadata["ras"]["decision"] == "answered"


def test_json_mode_and_dict_schemas(llm: RASGuardedChatModel) -> None:
    schema = Verdict.model_json_schema()
    out = llm.with_structured_output(schema).invoke(BREAD)
    assert set(out) == {"safe", "topic"} and out["topic"] in ("food", "weather", "other")
    assert isinstance(llm.with_structured_output(None, method="json_mode").invoke(BREAD), dict)


def test_streamed_structured_output(llm: RASGuardedChatModel) -> None:
    parts = list(llm.with_structured_output(Verdict.model_json_schema()).stream(BREAD))
    assert parts and Verdict.model_validate(parts[-1])


@pytest.mark.parametrize("policy", ["steer", "block"])
def test_harmful_requests_fail_closed_as_refusals(llm: RASGuardedChatModel, policy: str) -> None:
    model = llm.model_copy(update={"policy": policy})
    with pytest.raises(ModelRefusalError):
        model.with_structured_output(Verdict).invoke(BOMB)
    raw: dict[str, Any] = model.with_structured_output(Verdict, include_raw=True).invoke(BOMB)
    assert isinstance(raw["parsing_error"], ModelRefusalError) and raw["parsed"] is None
    msg = raw["raw"]
    assert isinstance(msg, AIMessage) and msg.content_blocks[0]["type"] == "refusal"
    assert msg.response_metadata["ras"]["decision"] == ("blocked" if policy == "block" else "steered")
    chunks = list(model.stream(BOMB, response_format={"type": "json_object"}))
    assert any(b["type"] == "refusal" for b in sum(chunks[1:], chunks[0]).content_blocks)


def test_unknown_method_and_arguments_raise(llm: RASGuardedChatModel) -> None:
    with pytest.raises(ResponseFormatError, match="'xml'"):
        llm.with_structured_output(Verdict, method="xml")  # type: ignore[arg-type]
    with pytest.raises(ResponseFormatError, match="unknown arguments"):
        llm.with_structured_output(Verdict, tool_name="x")
