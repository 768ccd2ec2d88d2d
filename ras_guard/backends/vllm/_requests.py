"""A :class:`~ras_guard.backends.protocol.GenerationRequest` as vLLM ``SamplingParams``, checked first.

Limits become ``max_tokens`` / ``min_tokens`` (at least ``num_distributions``: K distributions need K steps),
EOS ids become stop tokens, :class:`~ras_guard.backends.protocol.Sampling` becomes temperature / top-p / top-k /
seed (``temperature=None``: the checkpoint's generation config, read as transformers reads it), a steering spec
becomes the ``extra_args`` of the engine's steering processor (after checking that its prototypes are the
engine's), ``num_distributions`` full-vocabulary flat log-probabilities, ``response_format`` structured outputs.

Example:
    >>> _sampling_args(Sampling(temperature=0.7, top_p=0.9, seed=1), {"temperature": 0.0})
    {'temperature': 0.7, 'top_p': 0.9, 'seed': 1}
    >>> checkpoint_sampling(None)
    {'temperature': 0.0}
"""

from __future__ import annotations

from typing import Any

import torch

from ...calibration import Calibration
from ...errors import (
    CalibrationMismatchError,
    InvalidMessageError,
    ResponseFormatError,
    SteeringArgumentError,
    UnsupportedRequestError,
)
from ...steering import SteeringSpec
from ..protocol import GenerationRequest, Sampling
from ._formats import structured_outputs
from ._steer import FLOOR_ARG, RISK_ARG, parse_request

__all__ = ["check_steering", "checkpoint_sampling", "sampling_params"]


def checkpoint_sampling(generation_config: Any) -> dict[str, Any]:
    """The sampling of the checkpoint's generation config, as transformers' ``generate`` would use it."""
    if generation_config is None or not getattr(generation_config, "do_sample", False):
        return {"temperature": 0.0}
    temperature = getattr(generation_config, "temperature", None)
    out: dict[str, Any] = {"temperature": 1.0 if temperature is None else float(temperature)}
    if getattr(generation_config, "top_p", None) is not None:
        out["top_p"] = float(generation_config.top_p)
    if getattr(generation_config, "top_k", None) is not None:
        out["top_k"] = int(generation_config.top_k)
    return out


def _check_limits(request: GenerationRequest) -> None:
    m, k = request.max_new_tokens, request.num_distributions
    if isinstance(m, bool) or not isinstance(m, int) or m < 1:
        raise InvalidMessageError(f"max_new_tokens must be a positive integer, got {m!r}.")
    if not 0 <= request.min_new_tokens <= m:
        raise InvalidMessageError(f"min_new_tokens must lie in [0, max_new_tokens={m}], got {request.min_new_tokens!r}.")
    if not 0 <= k <= m:
        raise InvalidMessageError(f"num_distributions must lie in [0, max_new_tokens={m}], got {k!r}.")
    if request.return_hidden:
        raise UnsupportedRequestError(
            "the vLLM backend cannot return hidden states (vLLM hands out none); fit calibrations on the "
            "transformers backend (RASGuard.from_pretrained(path) and ras_guard.calibrate), then load them here."
        )


def _sampling_args(sampling: Sampling, defaults: dict[str, Any]) -> dict[str, Any]:
    t, p, k = sampling.temperature, sampling.top_p, sampling.top_k
    out = dict(defaults) if t is None else {"temperature": float(t)}
    if t is not None and not (0.0 <= float(t) < float("inf")):
        raise InvalidMessageError(f"temperature must be 0 (greedy) or positive, got {t!r}.")
    if p is not None:
        if not 0.0 < float(p) <= 1.0:
            raise InvalidMessageError(f"top_p must lie in (0, 1], got {p!r}.")
        out["top_p"] = float(p)
    if k is not None:
        if isinstance(k, bool) or not isinstance(k, int) or k < 0:
            raise InvalidMessageError(f"top_k must be a non-negative integer (0: no cut), got {k!r}.")
        out["top_k"] = k
    if sampling.seed is not None:
        out["seed"] = int(sampling.seed)
    return out


def check_steering(
    spec: SteeringSpec, calibration: Calibration, softcap: float | None, accepted: torch.Tensor | None
) -> torch.Tensor:
    """Check a spec against the calibration the engine steers with; return its (accepted) prototype tensor.

    Raises:
        CalibrationMismatchError: The spec's prototype logits are not the calibration's.
        SteeringArgumentError: Another soft-cap than the model's, or a risk / floor outside [0, 1].
    """
    given = spec.prototype_logits
    if given is not accepted:
        proto = calibration.prototype_logits
        if tuple(given.shape) != tuple(proto.shape) or not torch.equal(given.detach().float().cpu(), proto.float()):
            raise CalibrationMismatchError(
                f"the request's prototype logits (shape {tuple(given.shape)}) are not those of calibration "
                f"{calibration.calibration_id}, which the vLLM engine steers with; build the engine with the "
                "guard's calibration folder."
            )
    if (spec.softcap or None) != (softcap or None):
        raise SteeringArgumentError(f"the request's soft-cap {spec.softcap!r} is not the model's {softcap!r}.")
    parse_request({RISK_ARG: spec.risk, FLOOR_ARG: spec.floor})  # outside [0, 1]: SteeringArgumentError
    return given


def sampling_params(request: GenerationRequest, defaults: dict[str, Any], eos_ids: set[int]) -> Any:
    """The ``SamplingParams`` of a request (its steering spec already checked with :func:`check_steering`).

    Raises:
        InvalidMessageError: Limits or sampling values out of range (or refused by vLLM).
        UnsupportedRequestError: ``return_hidden``, or an active steering spec under a ``response_format``.
        ResponseFormatError: Stop strings with a ``response_format``, or a malformed format.
    """
    from vllm import SamplingParams

    _check_limits(request)
    k = request.num_distributions
    args: dict[str, Any] = {
        **_sampling_args(request.sampling, defaults),
        "max_tokens": request.max_new_tokens,
        "min_tokens": max(request.min_new_tokens, k),  # K distributions need K steps
        "detokenize": False,
        "stop_token_ids": sorted(eos_ids),
    }
    if k:
        args.update(logprobs=-1, flat_logprobs=True)
    spec = request.steering
    if spec is not None:
        args["extra_args"] = {RISK_ARG: float(spec.risk), FLOOR_ARG: float(spec.floor)}
    if request.response_format is not None:
        if spec is not None and spec.active:
            raise UnsupportedRequestError(
                "a steered request under a response_format is refused (a grammar masks the steered tokens); "
                "the guard answers such rows with a refusal instead of generating them."
            )
        if any(request.stop):
            raise ResponseFormatError(
                f"stop strings {list(request.stop)!r} would cut a constrained answer into invalid JSON; drop "
                "stop when passing response_format (the grammar decides where the answer ends)."
            )
        args["structured_outputs"] = structured_outputs(request.response_format)
    try:
        return SamplingParams(**args)
    except ValueError as exc:  # vLLM's own checks
        raise InvalidMessageError(f"vLLM refused the request's sampling parameters: {exc}") from exc
