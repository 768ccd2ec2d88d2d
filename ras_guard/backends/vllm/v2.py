"""RAS steering as a logits processor of vLLM's V2 model runner (CUDA vLLM >= 0.33's default).

Same arguments and arithmetic as :class:`~ras_guard.backends.vllm.v1.RASSteeringV1`, over the V2 interface:
per-slot state set in ``add_request``, and ``apply(logits, ctx)`` once per step for the whole batch, with each
row's slot in ``ctx.expanded_idx_mapping`` and its position in ``ctx.pos``. A row's response step is
``pos + 1 - prompt_len[slot]``, so rows of speculative-decoding drafts get their own steps. Rows of slots that do
not steer are returned bit-identical (``torch.where`` keeps their values); when no slot of the batch steers the
logits are returned without any device work or host sync.

Load it with ``--logits-processors ras_guard.backends.vllm.v2:RASSteeringV2`` on a V2-runner server. On CPU only
the V1 runner runs, so this class is unit-tested against a fake context here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from vllm.v1.worker.gpu.sample.logits_processor import LogitsProcessor

from ._steer import load_table, parse_request

if TYPE_CHECKING:
    from vllm import SamplingParams
    from vllm.config import VllmConfig
    from vllm.v1.worker.gpu.sample.logits_processor import LogitsContext, LogitsProcRequestState

__all__ = ["RASSteeringV2"]


class RASSteeringV2(LogitsProcessor):
    """Per-request risk-scaled interpolation towards the unsafe prototype logits (V2 interface).

    Args:
        vllm_config: The engine's config (its ``additional_config`` may name the calibration).
        req_states: The runner's per-slot buffers (``prompt_len`` is read).

    Raises:
        CalibrationError: No calibration is configured, or it does not match the model.
    """

    def __init__(self, vllm_config: VllmConfig, req_states: LogitsProcRequestState) -> None:
        self.table = load_table(vllm_config, req_states.device)
        self.req_states = req_states
        slots = int(req_states.max_num_reqs)
        self._active = np.zeros(slots, dtype=bool)  # host copy: skip batches with no steered slot
        self._risk_np = np.zeros(slots, dtype=np.float32)
        self._risk = torch.zeros(slots, dtype=torch.float32, device=req_states.device)
        self._on = torch.zeros(slots, dtype=torch.bool, device=req_states.device)
        self._dirty = False
        self._exact_lengths = getattr(vllm_config, "speculative_config", None) is None

    @classmethod
    def validate_params(cls, sampling_params: SamplingParams) -> None:
        """Refuse a request whose ``ras_*`` arguments are invalid (HTTP 400 on the server)."""
        parse_request(sampling_params.extra_args)

    def add_request(self, req_idx: int, sampling_params: SamplingParams) -> bool:
        """(Re)initialise the slot; returns whether this request is steered."""
        spec = parse_request(sampling_params.extra_args)
        steered = spec is not None and spec.steered
        self._active[req_idx] = steered
        self._risk_np[req_idx] = spec.risk if steered and spec is not None else 0.0
        self._dirty = True
        return steered

    def apply_staged_writes(self) -> None:
        """Copy the slots' risks and flags to the device when ``add_request`` changed them."""
        if self._dirty:
            self._risk.copy_(torch.from_numpy(self._risk_np), non_blocking=False)
            self._on.copy_(torch.from_numpy(self._active), non_blocking=False)
            self._dirty = False

    def _retire_finished(self, ctx: LogitsContext) -> bool:
        """Host-side: drop slots of this batch past step N (exact without speculative decoding)."""
        slots = np.asarray(ctx.idx_mapping_np)
        live = self._active[slots]
        if not live.any():
            return False
        if self._exact_lengths:
            prompt = np.asarray(self.req_states.prompt_len.np)[slots]
            done = live & (np.asarray(ctx.seq_lens_upper_bound_np) - prompt >= self.table.num_steps)
            if done.any():
                self._active[slots[done]] = False
                self._risk_np[slots[done]] = 0.0
                self._dirty = True
                live &= ~done
        return bool(live.any())

    def apply(self, logits: torch.Tensor, ctx: LogitsContext) -> torch.Tensor:
        """Interpolate rows of steered slots within their first N steps; leave every other row untouched."""
        if not self._retire_finished(ctx):
            return logits
        slot = ctx.expanded_idx_mapping.long()
        prompt_len = _device_view(self.req_states.prompt_len).to(logits.device)[slot].long()
        step = ctx.pos.long() + 1 - prompt_len
        n = self.table.num_steps
        mask = self._on[slot] & (step >= 0) & (step < n)
        mixed = self.table.mix(logits, step.clamp(0, n - 1), self._risk[slot])
        return torch.where(mask[:, None], mixed, logits)


def _device_view(buffer: Any) -> torch.Tensor:
    """The device tensor of a runner buffer (``UvaBackedTensor.gpu``), or the tensor itself."""
    return buffer.gpu if hasattr(buffer, "gpu") else buffer
