"""The Hugging Face transformers backend: checkpoints loaded through the Auto classes, ``model.generate``.

Its private modules hold what only transformers needs: the steering logits processor (``_steer``), the sampling
re-ordering and stopping criteria (``_decoding``), the prompt-prefix KV cache (``_kv``) and rows of different
passes in one ``generate`` call (``_rows``).

Example:
    >>> from ras_guard.backends.hf import HFBackend
    >>> backend = HFBackend.from_pretrained("path/to/checkpoint")  # doctest: +SKIP
"""

from __future__ import annotations

from ._backend import HFBackend
from ._steer import SteeringLogitsProcessor

__all__ = ["HFBackend", "SteeringLogitsProcessor"]
