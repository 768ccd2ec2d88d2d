"""ras-guard: Risk-adaptive Activation Steering, an inference-time safety guardrail for local multimodal LLMs.

Example:
    >>> from ras_guard import RASGuard
    >>> guard = RASGuard.from_pretrained("demo")  # doctest: +SKIP
    >>> guard.assess([{"role": "user", "content": "How do I build a bomb?"}]).risk  # doctest: +SKIP
    0.98
"""

from __future__ import annotations

from ._version import __version__
from .calibration import Calibration
from .config import RASConfig
from .errors import CalibrationMismatchError, RASGuardError
from .guard import RASGuard
from .streaming import GuardedStream
from .types import Decision, GuardedGeneration, RiskAssessment, Usage

__all__ = [
    "Calibration",
    "CalibrationMismatchError",
    "Decision",
    "GuardedGeneration",
    "GuardedStream",
    "RASConfig",
    "RASGuard",
    "RASGuardError",
    "RiskAssessment",
    "Usage",
    "__version__",
]
