"""Fixtures of the langchain-ras-guard tests.

Async tests (ours and the ``langchain-tests`` standard suites, which rely on ``asyncio_mode = "auto"``) are
marked for pytest-asyncio here, for this folder only, so the repository's pytest configuration stays as it is.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any

import pytest


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(collector: Any, name: str, obj: Any) -> None:
    """Mark coroutine test functions of this folder with ``pytest.mark.asyncio``."""
    if (
        inspect.iscoroutinefunction(obj)
        and collector.funcnamefilter(name)
        and not any(m.name == "asyncio" for m in getattr(obj, "pytestmark", []))
    ):
        pytest.mark.asyncio(obj)


@pytest.fixture(scope="session")
def real_guard_params() -> dict[str, Any]:
    """Constructor arguments of a chat model on a real (demo, else tiny random) checkpoint."""
    from lc_ras_testing import real_model_params

    return real_model_params()


@pytest.fixture(scope="session")
def real_guard(real_guard_params: dict[str, Any]) -> Iterator[Any]:
    """One loaded guard shared by the session's real-model tests."""
    from langchain_ras_guard import RASGuardedChatModel

    llm = RASGuardedChatModel(**real_guard_params)
    yield llm.guard
