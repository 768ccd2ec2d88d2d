"""On the demo model: ``timeout`` is a deadline over the whole guarded call; sizes and budgets come first."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from langchain_core.messages import HumanMessage
from lc_ras_testing import b64, png_bytes
from ras_guard import RASGuard
from ras_guard.errors import GuardTimeoutError, InvalidMessageError, PromptTooLongError

from langchain_ras_guard import RASGuardedChatModel

WORDS = "please tell me about the cake in the picture . "


def _text(chars: int) -> str:
    return (WORDS * (chars // len(WORDS) + 1))[:chars]


@pytest.fixture(scope="module")
def guard() -> RASGuard:
    return RASGuard.from_pretrained("demo", device="cpu")


def _llm(guard: RASGuard, **kw: Any) -> RASGuardedChatModel:
    return RASGuardedChatModel(model="demo", guard=guard, **kw)


@contextmanager
def _forwards(guard: RASGuard) -> Iterator[list[int]]:
    """Count forward passes of the real model (a torch hook; nothing of ours is replaced)."""
    calls = [0]
    handle = guard.backend.model.register_forward_pre_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    try:
        yield calls
    finally:
        handle.remove()


def _image_message() -> HumanMessage:
    return HumanMessage(
        content=[
            {"type": "image", "base64": b64(png_bytes(color=(10, 200, 30))), "mime_type": "image/png"},
            {"type": "text", "text": "How can I make the item in the image?"},
        ]
    )


def _four_token_seconds(guard: RASGuard) -> float:
    llm = _llm(guard, max_tokens=4, model_kwargs={"min_new_tokens": 4})
    best = float("inf")
    for _ in range(2):
        t0 = time.perf_counter()
        llm.invoke("hello", ras_risk=0.0)
        best = min(best, time.perf_counter() - t0)
    return best


async def test_timeout_bounds_the_answer_in_every_entry_point(guard: RASGuard) -> None:
    """A real slow case: 200 forced tokens take ~50x as long as 4; twice the 4-token time cuts the call."""
    forced = {"max_tokens": 200, "model_kwargs": {"min_new_tokens": 200}}
    llm = _llm(guard, timeout=2 * _four_token_seconds(guard), **forced)
    with pytest.raises(GuardTimeoutError):
        llm.invoke("hello", ras_risk=0.0)
    with pytest.raises(GuardTimeoutError):
        list(llm.stream("hello", ras_risk=0.0))
    with pytest.raises(GuardTimeoutError):
        await llm.ainvoke("hello", ras_risk=0.0)
    with pytest.raises(GuardTimeoutError):
        async for _ in llm.astream("hello", ras_risk=0.0):
            pass


def test_timeout_covers_the_assessment_passes(guard: RASGuard) -> None:
    guard._captions.clear()
    t0 = time.perf_counter()
    guard.assess(_llm(guard).convert_messages([_image_message()]))
    assess_s = time.perf_counter() - t0
    guard._captions.clear()
    llm = _llm(guard, timeout=assess_s / 3, max_tokens=4)  # passes in the caption / risk pass
    with _forwards(guard) as calls, pytest.raises(GuardTimeoutError, match="timeout of"):
        llm.invoke([_image_message()])
    assert calls[0] > 0  # it was cut inside the passes, not refused up front
    with pytest.raises(GuardTimeoutError):
        _llm(guard, timeout=1e-6).invoke("hello")


def test_generous_timeout_answers_as_without(guard: RASGuard) -> None:
    plain = _llm(guard, max_tokens=8, temperature=0).invoke([_image_message()])
    timed = _llm(guard, max_tokens=8, temperature=0, timeout=600).invoke([_image_message()])
    assert timed.content == plain.content
    assert timed.response_metadata["ras"]["risk"] == plain.response_metadata["ras"]["risk"]


@pytest.mark.parametrize("bad", [0, -3, 2.5])
def test_per_call_max_tokens_below_one_rejected(guard: RASGuard, bad: Any) -> None:
    with pytest.raises(InvalidMessageError, match="max_tokens must be an integer >= 1"):
        _llm(guard).invoke("hello", max_tokens=bad)


def test_oversized_prompt_refused_before_any_pass(guard: RASGuard) -> None:
    llm = _llm(guard)
    with _forwards(guard) as calls:
        with pytest.raises(PromptTooLongError, match="characters of text"):
            llm.invoke(_text(20_000))
        with pytest.raises(PromptTooLongError, match="max_new_tokens"):
            llm.invoke(_text(3_000), max_tokens=500)  # the prompt fits, the answer's budget does not
        with pytest.raises(PromptTooLongError):
            list(llm.stream(_text(20_000)))
    assert calls[0] == 0
