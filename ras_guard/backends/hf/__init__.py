"""The Hugging Face transformers backend: checkpoints loaded through the Auto classes, ``model.generate``.

:class:`HFBackend` implements :class:`ras_guard.backends.protocol.Backend`. Its private modules hold what only
transformers needs: protocol requests as ``generate`` calls (``_requests``, ``_stream``), the prompt-prefix KV
caches kept per request group (``_prefix``, ``_kv``), the steering and grammar logits processors (``_steer``,
``_grammar``), the sampling re-ordering and stopping criteria (``_decoding``) and loading helpers (``_load``).

Example:
    >>> from ras_guard.backends.hf import HFBackend
    >>> backend = HFBackend.from_pretrained("path/to/checkpoint")  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from ...errors import EvaluationError
from ._backend import HFBackend
from ._steer import SteeringLogitsProcessor

__all__ = ["HFBackend", "SteeringLogitsProcessor", "require_hf"]


def require_hf(backend: Any, what: str) -> HFBackend:
    """``backend`` as an :class:`HFBackend`, for analyses that read transformers internals (attention, hidden states).

    Raises:
        EvaluationError: Another engine: the analysis runs on transformers only.
    """
    if not isinstance(backend, HFBackend):
        raise EvaluationError(
            f"{what} reads transformers internals and needs the 'hf' backend; {getattr(backend, 'name', backend)!r} "
            "is another engine. Load the checkpoint with RASGuard.from_pretrained(path, backend='hf')."
        )
    return backend
