"""LangChain integration of ras-guard, a risk-adaptive activation steering guardrail for local VLMs.

Example:
    >>> from langchain_ras_guard import RASGuardedChatModel
    >>> llm = RASGuardedChatModel(model="demo")  # doctest: +SKIP
    >>> llm.invoke("hello").response_metadata["ras"]["risk"]  # doctest: +SKIP
    0.03
"""

from __future__ import annotations

from importlib import metadata

from langchain_ras_guard.callbacks import RiskLoggingCallbackHandler
from langchain_ras_guard.chat_models import RAS_EVENT, RASGuardedChatModel
from langchain_ras_guard.remote import RemoteRASGuardedChatModel

try:
    __version__ = metadata.version(__package__ or "langchain_ras_guard")
except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = ""

__all__ = [
    "RASGuardMiddleware",
    "RASGuardState",
    "RASGuardedChatModel",
    "RAS_EVENT",
    "RemoteRASGuardedChatModel",
    "RiskLoggingCallbackHandler",
    "__version__",
]


def __getattr__(name: str) -> object:
    """``RASGuardMiddleware`` / ``RASGuardState`` need ``langchain`` (extra ``agents``): imported on use."""
    if name in ("RASGuardMiddleware", "RASGuardState"):
        from langchain_ras_guard import middleware

        return getattr(middleware, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
