"""Model runtimes behind the :class:`~ras_guard.backends.protocol.Backend` protocol.

``HFBackend`` (transformers) is imported on first use, so the protocol can be used without transformers.

Example:
    >>> from ras_guard.backends import Backend, GenerationRequest
    >>> GenerationRequest(messages=[], max_new_tokens=1).group is None
    True
"""

from __future__ import annotations

from typing import Any

from .base import ModelFingerprint
from .protocol import AsyncBackend, Backend, GenerationRequest, GenerationResult, Sampling

__all__ = ["AsyncBackend", "Backend", "GenerationRequest", "GenerationResult", "HFBackend", "ModelFingerprint", "Sampling"]


def __getattr__(name: str) -> Any:
    if name == "HFBackend":
        from .hf import HFBackend

        return HFBackend
    raise AttributeError(name)
