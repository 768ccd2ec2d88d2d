"""LangChain's standard unit suite (langchain-tests ``ChatModelUnitTests``) on a real local checkpoint.

The checkpoint is ``RAS_GUARD_TEST_MODEL`` when set, else the bundled demo model when its assets are
installed, else a tiny random LLaVA (see ``lc_ras_testing.real_model_params``). Capability flags follow
that model's profile; skips are listed with their reasons in the package README.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from langchain_tests.unit_tests import ChatModelUnitTests
from lc_ras_testing import StandardCapabilities, real_model_params

import langchain_ras_guard
from langchain_ras_guard import RASGuardedChatModel


class TestRASGuardedChatModelUnit(StandardCapabilities, ChatModelUnitTests):
    @pytest.fixture(autouse=True, scope="class")
    def _keep_guard_loaded(self) -> Iterator[None]:
        """Hold one model so every construction in the suite reuses the loaded guard (test_init_time)."""
        keep = RASGuardedChatModel(**real_model_params())
        yield
        del keep

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return real_model_params()

    @property
    def standard_chat_model_params(self) -> dict[str, Any]:
        """The suite's standard parameters without ``api_key``: a local model has none (it would raise)."""
        params = dict(super().standard_chat_model_params)
        params.pop("api_key", None)
        return params


def test_public_api_is_sorted_and_importable() -> None:
    assert langchain_ras_guard.__all__ == sorted(langchain_ras_guard.__all__)
    for name in langchain_ras_guard.__all__:
        assert getattr(langchain_ras_guard, name) is not None
