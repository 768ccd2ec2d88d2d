"""RAS steering as a logits processor of vLLM's V1 model runner (the one vLLM runs on CPU).

Load it into a stock server with ``--logits-processors ras_guard.backends.vllm.v1:RASSteeringV1`` and a
calibration (``RAS_GUARD_CALIBRATION=DIR`` or ``--additional-config '{"ras_guard_calibration": "DIR"}'``); a
request carries its risk in ``vllm_xargs`` (``{"ras_risk": 0.93}``). For its first N steps (N = the
calibration's), a steered row becomes ``(1 - r) * logits + r * lm_head(mu_n)``; every other row is returned
bit-identical. The step of a row is the length of its live output-token list, so preemption and re-scheduling
keep the count right.

Example:
    >>> from vllm import LLM, SamplingParams  # doctest: +SKIP
    >>> llm = LLM(path, logits_processors=[RASSteeringV1],
    ...           additional_config={"ras_guard_calibration": "cal/"})  # doctest: +SKIP
    >>> llm.generate(prompt, SamplingParams(extra_args={"ras_risk": 0.9}))  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from vllm.v1.sample.logits_processor import BatchUpdate, LogitsProcessor, MoveDirectionality

from ._steer import load_table, parse_request

if TYPE_CHECKING:
    from vllm import SamplingParams
    from vllm.config import VllmConfig

__all__ = ["RASSteeringV1"]


class RASSteeringV1(LogitsProcessor):
    """Per-request risk-scaled interpolation towards the unsafe prototype logits (V1 interface).

    Args:
        vllm_config: The engine's config (its ``additional_config`` may name the calibration).
        device: The sampler's device.
        is_pin_memory: Unused.

    Raises:
        CalibrationError: No calibration is configured, or it does not match the model.
    """

    def __init__(self, vllm_config: VllmConfig, device: torch.device, is_pin_memory: bool) -> None:
        self.table = load_table(vllm_config, device)
        self.device = device
        # batch index -> (risk, live output-token list)
        self._rows: dict[int, tuple[float, Sequence[int]]] = {}

    @classmethod
    def validate_params(cls, sampling_params: SamplingParams) -> None:
        """Refuse a request whose ``ras_*`` arguments are invalid (HTTP 400 on the server)."""
        parse_request(sampling_params.extra_args)

    def is_argmax_invariant(self) -> bool:
        """False: steering changes greedy tokens."""
        return False

    def update_state(self, batch_update: BatchUpdate | None) -> None:
        """Track added, removed and moved rows (in that order, as vLLM requires)."""
        if not batch_update:
            return
        for index in batch_update.removed:
            self._rows.pop(index, None)
        for index, params, _prompt, output_ids in batch_update.added:
            spec = parse_request(params.extra_args) if params is not None else None
            if spec is not None and spec.steered and len(output_ids) < self.table.num_steps:
                self._rows[index] = (spec.risk, output_ids)
            else:
                self._rows.pop(index, None)
        for a, b, direction in batch_update.moved:
            entry_a, entry_b = self._rows.pop(a, None), self._rows.pop(b, None)
            if entry_a is not None:
                self._rows[b] = entry_a
            if entry_b is not None and direction == MoveDirectionality.SWAP:
                self._rows[a] = entry_b

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        """Interpolate the rows still within their first N steps; leave all others untouched."""
        if not self._rows:
            return logits
        n = self.table.num_steps
        live = [
            (i, r, len(out)) for i, (r, out) in self._rows.items() if len(out) < n and i < logits.shape[0]
        ]
        for i in [i for i, (_, out) in self._rows.items() if len(out) >= n]:
            del self._rows[i]  # past step N: never touched again
        if not live:
            return logits
        index = torch.tensor([i for i, _, _ in live], dtype=torch.long, device=logits.device)
        steps = torch.tensor([s for _, _, s in live], dtype=torch.long, device=logits.device)
        risks = torch.tensor([r for _, r, _ in live], dtype=torch.float32, device=logits.device)
        logits[index] = self.table.mix(logits[index], steps, risks)
        return logits
