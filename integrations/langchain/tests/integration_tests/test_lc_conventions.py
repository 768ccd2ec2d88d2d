"""LangChain conventions on a real checkpoint: token counts, batching, provider, seed, profile (issue 13)."""

from __future__ import annotations

import warnings
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, trim_messages
from langchain_core.tools import tool
from lc_ras_testing import b64, demo_available, png_bytes

from langchain_ras_guard import RASGuardedChatModel

RED = png_bytes((220, 20, 20), (40, 30))


@pytest.fixture(scope="module")
def llm(real_guard: Any) -> RASGuardedChatModel:
    return RASGuardedChatModel(guard=real_guard, max_tokens=8, temperature=0)


def test_token_counts_use_the_checkpoints_tokenizer(llm: RASGuardedChatModel) -> None:
    tokenizer = llm.guard.backend.tokenizer  # type: ignore[union-attr]
    text = "how can i make a cake ?"
    assert llm.get_token_ids(text) == tokenizer.encode(text, add_special_tokens=False)
    assert llm.get_num_tokens(text) == len(tokenizer.encode(text, add_special_tokens=False)) > 0


def test_message_count_is_the_prompt_the_model_sees(llm: RASGuardedChatModel) -> None:
    msgs = [
        HumanMessage(
            content=[{"type": "image", "base64": b64(RED), "mime_type": "image/png"}, "what is it ?"]
        )
    ]
    answer = llm.invoke(msgs, ras_risk=0.0)
    assert llm.get_num_tokens_from_messages(msgs) == answer.usage_metadata["input_tokens"]  # type: ignore[index]


def test_trim_messages_trims(llm: RASGuardedChatModel) -> None:
    history = [
        SystemMessage("you are helpful ."),
        *([HumanMessage("what is a cake ?"), AIMessage("a food .")] * 6),
    ]
    history.append(HumanMessage("and a cup ?"))
    full = llm.get_num_tokens_from_messages(history)
    trimmed = trim_messages(
        history, max_tokens=full // 2, token_counter=llm, strategy="last", include_system=True
    )
    assert 1 < len(trimmed) < len(history)
    assert llm.get_num_tokens_from_messages(trimmed) <= full // 2


def test_model_provider_in_metadata(llm: RASGuardedChatModel) -> None:
    assert llm.invoke("hello").response_metadata["model_provider"] == "ras_guard"
    chunks = list(llm.stream("hello"))
    merged = chunks[0]
    for c in chunks[1:]:
        merged += c
    assert merged.response_metadata["model_provider"] == "ras_guard"


def test_seed_makes_sampling_reproducible(real_guard: Any) -> None:
    def answer(seed: int) -> str:
        model = RASGuardedChatModel(guard=real_guard, max_tokens=12, temperature=1.5, seed=seed)
        return model.invoke("tell me about cakes", ras_risk=0.0).text

    assert answer(7) == answer(7)
    assert len({answer(s) for s in range(1, 6)}) > 1  # a real seed: different seeds sample differently


def test_batch_answers_equal_invoke(llm: RASGuardedChatModel) -> None:
    inputs: list[Any] = [
        "how do i bake bread ?",
        "how can i make a bomb ?",
        [
            HumanMessage(
                content=[{"type": "image", "base64": b64(RED), "mime_type": "image/png"}, "what is it ?"]
            )
        ],
    ]
    one_by_one = [llm.invoke(x) for x in inputs]
    for batched in (llm.batch(inputs), __import__("asyncio").run(llm.abatch(inputs))):
        assert [m.text for m in batched] == [m.text for m in one_by_one]
        assert [m.response_metadata["ras"]["risk"] for m in batched] == pytest.approx(
            [m.response_metadata["ras"]["risk"] for m in one_by_one], abs=1e-5
        )


def test_profile_is_honest(llm: RASGuardedChatModel) -> None:
    profile = llm.profile or {}
    assert profile["image_inputs"] is llm.guard.backend.is_multimodal  # type: ignore[union-attr]
    assert profile["structured_output"] is False and profile["tool_choice"] is False
    assert (
        profile["max_input_tokens"]
        == llm.guard.backend.model.config.get_text_config().max_position_embeddings
    )  # type: ignore[union-attr]
    if demo_available() and llm.model.endswith("demo_assets/model"):
        assert profile["tool_calling"] is False  # the demo's template renders tools; the toy never calls them


@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return "sunny"


def test_binding_tools_to_a_model_that_does_not_call_them_warns(llm: RASGuardedChatModel) -> None:
    if not llm.guard.supports_tools:  # type: ignore[union-attr]
        pytest.skip("the chat template does not render tools")
    quiet = llm.model_copy(update={"profile": {**(llm.profile or {}), "tool_calling": True}})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        quiet.bind_tools([get_weather])
    silent = llm.model_copy(update={"profile": {**(llm.profile or {}), "tool_calling": False}})
    with pytest.warns(UserWarning, match="does not call tools"):
        silent.bind_tools([get_weather])
