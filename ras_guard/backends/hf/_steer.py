"""The steering of RAS as a transformers logits processor (see :mod:`ras_guard.steering` for the formula).

Example:
    >>> import torch
    >>> proc = SteeringLogitsProcessor(torch.zeros(3, 5), risks=[1.0], prompt_length=4)
    >>> proc(torch.zeros(1, 4, dtype=torch.long), torch.ones(1, 5)).tolist()
    [[0.0, 0.0, 0.0, 0.0, 0.0]]
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import LogitsProcessor

from ...steering import steer_logits
from ...types import is_steered

__all__ = ["SteeringLogitsProcessor"]


class SteeringLogitsProcessor(LogitsProcessor):
    """Interpolates the first N steps' logits towards the prototype logits, each row with its own risk.

    Args:
        prototype_logits: ``[N, V]`` uncapped ``lm_head(mu_n)``.
        risks: One risk per batch row; rows under ``floor`` are left bit-identical.
        prompt_length: Length of the (padded) prompt, so step n is ``input_ids.shape[1] - prompt_length``.
        floor: Rows with risk below it are not touched at all.
        softcap: The model's final logit soft-cap, if any.
    """

    def __init__(
        self,
        prototype_logits: torch.Tensor,
        risks: Sequence[float],
        prompt_length: int,
        *,
        floor: float = 0.0,
        softcap: float | None = None,
    ) -> None:
        self.prototype_logits = prototype_logits.float()
        self.risks = torch.tensor([float(r) for r in risks], dtype=torch.float32)
        self.active = torch.tensor([is_steered(float(r), floor) for r in risks], dtype=torch.bool)
        self.prompt_length = prompt_length
        self.softcap = softcap
        self.steps_applied = 0

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        step = input_ids.shape[1] - self.prompt_length
        if step < 0 or step >= self.prototype_logits.shape[0] or not bool(self.active.any()):
            return scores
        rows = scores.shape[0]
        reps = max(rows // len(self.risks), 1)  # beams / num_return_sequences repeat each row
        r = self.risks.repeat_interleave(reps).to(scores.device)[:, None]
        active = self.active.repeat_interleave(reps).to(scores.device)[:, None]
        mixed = steer_logits(scores, self.prototype_logits[step].to(scores.device), r, self.softcap)
        self.steps_applied += 1
        return torch.where(active, mixed.to(scores.dtype), scores)
