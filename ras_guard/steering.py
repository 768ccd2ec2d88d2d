"""Step 3 of RAS: steering the first N response positions towards the unsafe prototype.

For the first N response positions ``h_n <- h_n + r (mu_n - h_n)``. ``lm_head`` is linear with no bias in the
supported families, so this is exactly ``(1 - r) * lm_head(h_n) + r * lm_head(mu_n)`` on the logits: nothing
upstream changes, the KV cache is untouched, and nothing is hooked into the model. Where the model soft-caps
its final logits, the interpolation is done on the uncapped logits (recovered with ``atanh``) and capped again.

This module holds the formula and the request's steering spec; each backend applies it in its own engine
(transformers: :mod:`ras_guard.backends.hf._steer`; vLLM: :mod:`ras_guard.backends.vllm`), one processor per call,
so two threads sharing a model never see each other's steering.

Example:
    >>> import torch
    >>> steer_logits(torch.zeros(1, 4), torch.ones(4), torch.tensor([[0.5]])).tolist()
    [[0.5, 0.5, 0.5, 0.5]]
    >>> SteeringSpec(risk=0.04, prototype_logits=torch.zeros(3, 4), floor=0.05).active
    False
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .risk import apply_softcap
from .types import is_steered

__all__ = ["SteeringSpec", "steer_logits"]


@dataclass(frozen=True)
class SteeringSpec:
    """How one request's first N answer steps are steered.

    Attributes:
        risk: r in [0, 1].
        prototype_logits: ``[N, V]`` uncapped ``lm_head(mu_n)`` of the calibration.
        floor: Requests with a risk under it are left bit-identical.
        softcap: The model's final logit soft-cap, if any.
    """

    risk: float
    prototype_logits: torch.Tensor
    floor: float = 0.0
    softcap: float | None = None

    @property
    def active(self) -> bool:
        """Whether this request is steered at all (:func:`ras_guard.types.is_steered`)."""
        return is_steered(self.risk, self.floor)


def steer_logits(
    logits: torch.Tensor, prototype: torch.Tensor, risk: torch.Tensor, softcap: float | None = None
) -> torch.Tensor:
    """``(1 - r) * logits + r * prototype``, on uncapped logits where the model soft-caps (then capped again).

    Args:
        logits: ``[B, V]`` the step's logits as the model produced them (capped where it caps).
        prototype: ``[V]`` uncapped ``lm_head(mu_n)`` of this step.
        risk: ``[B, 1]`` risks.
        softcap: The model's final logit soft-cap, if any.

    Returns:
        ``[B, V]`` float32 steered logits.
    """
    proto = prototype.float()[None, : logits.shape[-1]]
    if softcap:
        cap = float(softcap)
        raw = cap * torch.atanh((logits.float() / cap).clamp(-1 + 1e-6, 1 - 1e-6))
        return apply_softcap((1 - risk) * raw + risk * proto, cap)
    return (1 - risk) * logits.float() + risk * proto
