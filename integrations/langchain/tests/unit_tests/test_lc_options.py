"""Constructor options fail closed: ``model`` is required and an unknown keyword raises (issue 12.4)."""

from __future__ import annotations

from typing import Any

import pytest
from lc_ras_testing import FakeGuard
from ras_guard.errors import RASGuardError, UnknownOptionError

from langchain_ras_guard import RASGuardedChatModel


@pytest.mark.parametrize(
    ("kwargs", "meant"),
    [
        ({"model_name": "/models/x"}, "model="),
        ({"model_id": "/models/x"}, "model="),
        ({"num_predict": 32}, "max_tokens="),
        ({"temprature": 0.2}, "temperature="),
        ({"block_treshold": 0.2}, "block_threshold="),
        ({"base_url": "http://localhost:11434"}, "model='/path/to/checkpoint'"),
        ({"max_new_tokens": 3}, "max_tokens="),
    ],
)
def test_unknown_option_raises_naming_the_closest_field(kwargs: dict[str, Any], meant: str) -> None:
    with pytest.raises(UnknownOptionError, match=f"unknown option {next(iter(kwargs))}=") as info:
        RASGuardedChatModel(guard=FakeGuard(), **kwargs)
    assert meant in str(info.value)
    assert isinstance(info.value, RASGuardError) and isinstance(info.value, TypeError)


def test_model_is_required_and_the_demo_only_by_name() -> None:
    with pytest.raises(UnknownOptionError, match="needs model="):
        RASGuardedChatModel()
    with pytest.raises(UnknownOptionError, match="model_name"):  # the typo of the issue: no silent demo
        RASGuardedChatModel(model_name="/models/llava")


def test_secrets_are_not_quoted() -> None:
    with pytest.raises(UnknownOptionError) as info:
        RASGuardedChatModel(guard=FakeGuard(), api_key="sk-secret-123")
    assert "sk-secret" not in str(info.value)


def test_generate_arguments_go_in_model_kwargs() -> None:
    with pytest.raises(UnknownOptionError, match="model_kwargs"):
        RASGuardedChatModel(guard=FakeGuard(), repetition_penalty=1.2)
    llm = RASGuardedChatModel(guard=FakeGuard(), model_kwargs={"repetition_penalty": 1.2})
    assert llm.model_kwargs == {"repetition_penalty": 1.2}


def test_known_options_and_aliases_still_accepted() -> None:
    llm = RASGuardedChatModel(guard=FakeGuard(), stop_sequences=["x"], max_tokens=5, tags=["t"], cache=False)
    assert llm.stop == ["x"] and llm.model == "fake-model"
