"""What both vLLM steering processors share: per-request arguments, the prototype table, the interpolation.

Per-request arguments travel in ``SamplingParams.extra_args`` (``vllm_xargs`` over HTTP):

- ``ras_risk``: the request's risk r in [0, 1]; absent means "do not steer".
- ``ras_risk_floor``: optional, in [0, 1], default :data:`DEFAULT_RISK_FLOOR` (RASConfig's default); a row is
  steered only when ``r >= floor`` and ``r > 0``, otherwise its logits are left bit-identical.

Any other ``ras_*`` key is refused (unknown options raise). The prototype logits ``lm_head(mu_n)`` come from a
ras-guard calibration folder named by ``additional_config={"ras_guard_calibration": DIR}`` or the environment
variable ``RAS_GUARD_CALIBRATION``; without one the processor refuses to start (fail closed).

Example:
    >>> import torch
    >>> table = PrototypeTable(torch.zeros(3, 4), softcap=None)
    >>> table.mix(torch.ones(1, 4), torch.tensor([0]), torch.tensor([1.0])).tolist()
    [[0.0, 0.0, 0.0, 0.0]]
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import torch

from ...errors import CalibrationError, CalibrationMismatchError, SteeringArgumentError
from ...types import is_steered

__all__ = [
    "CALIBRATION_ENV",
    "CALIBRATION_KEY",
    "DEFAULT_RISK_FLOOR",
    "FLOOR_ARG",
    "RISK_ARG",
    "PrototypeTable",
    "RequestSteering",
    "calibration_dir",
    "load_table",
    "parse_request",
]

RISK_ARG = "ras_risk"
FLOOR_ARG = "ras_risk_floor"
CALIBRATION_KEY = "ras_guard_calibration"
CALIBRATION_ENV = "RAS_GUARD_CALIBRATION"
DEFAULT_RISK_FLOOR = 0.05
_KNOWN = (RISK_ARG, FLOOR_ARG)


@dataclass(frozen=True)
class RequestSteering:
    """The steering of one request: its risk, and whether any logits are touched."""

    risk: float
    floor: float

    @property
    def steered(self) -> bool:
        """:func:`ras_guard.types.is_steered` of this request's risk and floor."""
        return is_steered(self.risk, self.floor)


def _unit_number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
        raise SteeringArgumentError(f'{name} must be a number in [0, 1], got {value!r}; send e.g. {{"{name}": 0.7}}.')
    if not 0.0 <= float(value) <= 1.0:
        raise SteeringArgumentError(f"{name} must be in [0, 1], got {value!r}.")
    return float(value)


def parse_request(extra_args: dict[str, Any] | None) -> RequestSteering | None:
    """Validate a request's ``extra_args``; None when it carries no risk.

    Raises:
        SteeringArgumentError: A risk or floor that is not a number in [0, 1], or an unknown ``ras_*`` key (a
            ValueError: vLLM answers HTTP 400).

    Example:
        >>> parse_request({"ras_risk": 0.9}).steered
        True
        >>> parse_request({"ras_risk": 0.01}).steered
        False
    """
    if not extra_args:
        return None
    unknown = sorted(k for k in extra_args if str(k).startswith("ras_") and k not in _KNOWN)
    if unknown:
        raise SteeringArgumentError(f"unknown ras-guard argument(s) {unknown}; known: {list(_KNOWN)}.")
    if RISK_ARG not in extra_args:
        if FLOOR_ARG in extra_args:
            raise SteeringArgumentError(f"{FLOOR_ARG} was given without {RISK_ARG}; send both or neither.")
        return None
    risk = _unit_number(RISK_ARG, extra_args[RISK_ARG])
    floor = _unit_number(FLOOR_ARG, extra_args.get(FLOOR_ARG, DEFAULT_RISK_FLOOR))
    return RequestSteering(risk, floor)


class PrototypeTable:
    """``[N, V]`` uncapped prototype logits and the model's soft-cap, on the sampler's device.

    Args:
        prototype_logits: ``lm_head(mu_n)`` for n < N, uncapped (as a calibration stores them).
        softcap: The model's final logit soft-cap, or None.
        device: Where the logits live.
    """

    def __init__(self, prototype_logits: torch.Tensor, softcap: float | None, device: Any = "cpu") -> None:
        self.logits = prototype_logits.float().to(device)
        self.softcap = float(softcap) if softcap else None

    @property
    def num_steps(self) -> int:
        """N: how many response steps are steered."""
        return int(self.logits.shape[0])

    def mix(self, rows: torch.Tensor, steps: torch.Tensor, risks: torch.Tensor) -> torch.Tensor:
        """``(1 - r) * rows + r * P[step]`` (on uncapped logits where the model soft-caps), in rows' dtype.

        Args:
            rows: ``[R, V]`` logits of the steered rows (capped where the model caps).
            steps: ``[R]`` response step of each row, each in ``[0, N)``.
            risks: ``[R]`` risks.
        """
        proto = self.logits[steps.long()][:, : rows.shape[-1]]
        r = risks.to(device=rows.device, dtype=torch.float32)[:, None]
        if self.softcap:
            cap = self.softcap
            raw = cap * torch.atanh((rows.float() / cap).clamp(-1 + 1e-6, 1 - 1e-6))
            mixed = cap * torch.tanh(((1 - r) * raw + r * proto) / cap)
        else:
            mixed = (1 - r) * rows.float() + r * proto
        return mixed.to(rows.dtype)


def _softcap_of(vllm_config: Any) -> float | None:
    model_config = getattr(vllm_config, "model_config", None)
    text = getattr(model_config, "hf_text_config", None)
    return getattr(text, "final_logit_softcapping", None) or None


def calibration_dir(vllm_config: Any) -> str:
    """The calibration folder: ``additional_config["ras_guard_calibration"]``, else ``$RAS_GUARD_CALIBRATION``.

    Raises:
        CalibrationError: Neither is set.
    """
    extra = getattr(vllm_config, "additional_config", None) or {}
    path = extra.get(CALIBRATION_KEY) if isinstance(extra, dict) else None
    path = path or os.environ.get(CALIBRATION_ENV)
    if not path:
        raise CalibrationError(
            f"the RAS steering processor needs a ras-guard calibration: pass --additional-config "
            f'\'{{"{CALIBRATION_KEY}": "DIR"}}\' or set {CALIBRATION_ENV}=DIR.'
        )
    return str(path)


def load_table(vllm_config: Any, device: Any) -> PrototypeTable:
    """Load the calibration the engine was configured with and check it against the model's vocabulary.

    Raises:
        CalibrationError: No calibration configured (or an invalid folder).
        CalibrationMismatchError: It was made for another checkpoint, or another vocabulary.
    """
    from ...calibration import Calibration
    from ._fingerprint import check_engine_checkpoint

    cal = Calibration.load(calibration_dir(vllm_config))
    check_engine_checkpoint(cal, vllm_config)
    model_config = getattr(vllm_config, "model_config", None)
    vocab = model_config.get_vocab_size() if model_config is not None else cal.prototype_logits.shape[1]
    if int(vocab) != int(cal.prototype_logits.shape[1]):
        raise CalibrationMismatchError(
            f"calibration {cal.calibration_id} has vocabulary {cal.prototype_logits.shape[1]} but the model has "
            f"{vocab}: it was made for another model; fit one for this model with `ras-guard calibrate`."
        )
    return PrototypeTable(cal.prototype_logits, _softcap_of(vllm_config), device)
