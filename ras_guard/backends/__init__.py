"""Model runtimes behind the :class:`~ras_guard.backends.base.Backend` protocol."""

from __future__ import annotations

from .base import Backend, GenerationResult, ModelFingerprint
from .hf import HFBackend

__all__ = ["Backend", "GenerationResult", "HFBackend", "ModelFingerprint"]
