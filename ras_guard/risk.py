"""The risk score of RAS: similarity of next-token distributions to the unsafe prototype, squashed to [0, 1].

``S = cos(sum_n gamma^n softmax(l_n), sum_n gamma^n softmax(p_n))`` over the first N response positions, with
``l_n`` the request's logits and ``p_n = lm_head(mu_n)`` the prototype's; ``r = sigmoid(alpha * (S - S_base))``
with ``alpha = ln(99) / (1 - S_base)``, so ``S = 1`` gives ``r = 0.99``.

Example:
    >>> import torch
    >>> from ras_guard.risk import similarity, risk_from_similarity, alpha_for
    >>> logits = torch.randn(3, 10)
    >>> round(float(similarity(logits[None], logits, gamma=0.3)[0]), 6)
    1.0
    >>> round(risk_from_similarity(1.0, s_base=0.7, alpha=alpha_for(0.7)), 4)
    0.99
"""

from __future__ import annotations

import math

import torch

__all__ = ["alpha_for", "apply_softcap", "risk_from_similarity", "similarity", "weighted_distribution"]


def apply_softcap(logits: torch.Tensor, softcap: float | None) -> torch.Tensor:
    """``softcap * tanh(logits / softcap)`` (Gemma-2-style final logit soft-capping), or ``logits`` if None."""
    if not softcap:
        return logits
    return softcap * torch.tanh(logits / softcap)


def weighted_distribution(logits: torch.Tensor, gamma: float) -> torch.Tensor:
    """``sum_n gamma^n softmax(logits[..., n, :])`` for n = 1..N, computed in float32.

    Args:
        logits: ``[..., N, V]``.
        gamma: Decay of the weights.

    Returns:
        ``[..., V]``.
    """
    probs = torch.softmax(logits.float(), dim=-1)
    n = logits.shape[-2]
    weights = torch.tensor([gamma**k for k in range(1, n + 1)], dtype=probs.dtype, device=probs.device)
    return (probs * weights[:, None]).sum(dim=-2)


def similarity(logits: torch.Tensor, prototype_logits: torch.Tensor, gamma: float) -> torch.Tensor:
    """S for each row.

    Args:
        logits: ``[B, N, V]`` logits of the first N response positions of each request.
        prototype_logits: ``[N, V]`` ``lm_head(mu_n)`` (after soft-capping where the model caps).
        gamma: Decay of the weights.

    Returns:
        ``[B]`` cosine similarities, float32.
    """
    if logits.shape[-2:] != prototype_logits.shape:
        raise ValueError(f"logits {tuple(logits.shape)} do not match prototype logits {tuple(prototype_logits.shape)}")
    q = weighted_distribution(logits, gamma)
    p = weighted_distribution(prototype_logits.to(q.device), gamma)
    return torch.nn.functional.cosine_similarity(q, p.expand_as(q), dim=-1)


def alpha_for(s_base: float) -> float:
    """``ln(99) / (1 - S_base)``: the slope that maps S = 1 to r = 0.99."""
    if not s_base < 1.0:
        raise ValueError(f"S_base must be below 1, got {s_base}; the reference set does not separate at all.")
    return math.log(99.0) / (1.0 - s_base)


def risk_from_similarity(s: float, *, s_base: float, alpha: float) -> float:
    """``sigmoid(alpha * (S - S_base))``, numerically stable for any alpha."""
    z = alpha * (s - s_base)
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)
