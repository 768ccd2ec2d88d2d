"""transformers-specific decoding plumbing of the HF backend (private).

Steering must see the raw logits, before temperature / top-k / top-p. transformers appends custom logits
processors after its own warpers, so when a steered call samples, the warpers are taken out of the call and
re-added after the steering processor, in transformers' own order. Unsteered calls pass arguments untouched.
"""

from __future__ import annotations

import threading
from typing import Any, cast

import torch
from transformers import (
    MinPLogitsWarper,
    StoppingCriteria,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from ..._deadline import Deadline


def sampling_after_steering(model_generation_config: Any, kwargs: dict[str, Any]) -> tuple[dict[str, Any], list[Any]]:
    """Split sampling warpers out of ``kwargs`` so they can run after the steering processor.

    Returns:
        ``(kwargs with neutral warper settings, warper processors in transformers' order)``.
    """
    def eff(name: str) -> Any:
        return kwargs[name] if name in kwargs else getattr(model_generation_config, name, None)

    if not eff("do_sample"):
        return kwargs, []
    warpers: list[Any] = []
    temperature, top_k, top_p, min_p = eff("temperature"), eff("top_k"), eff("top_p"), eff("min_p")
    if temperature is not None and temperature != 1.0:
        warpers.append(TemperatureLogitsWarper(float(temperature)))
    if top_k is not None and top_k != 0:
        warpers.append(TopKLogitsWarper(top_k=int(top_k), min_tokens_to_keep=1))
    if top_p is not None and top_p < 1.0:
        warpers.append(TopPLogitsWarper(top_p=float(top_p), min_tokens_to_keep=1))
    if min_p is not None:
        warpers.append(MinPLogitsWarper(min_p=float(min_p), min_tokens_to_keep=1))
    neutral = {**kwargs, "temperature": 1.0, "top_k": 0, "top_p": 1.0, "min_p": None}
    return neutral, warpers


class CancelCriteria(StoppingCriteria):
    """Stops generation at the next step once ``event`` is set (used when a stream is closed early)."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any) -> torch.BoolTensor:
        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)


class StopOnStrings(StoppingCriteria):
    """Stops a row once its decoded answer contains a stop string.

    Works with any tokenizer (transformers' ``stop_strings`` needs token strings that concatenate to the text,
    which word-level and some byte-level vocabularies do not give). Measured (transformers 5.24, issue 13.6): on
    the demo model, ``generate(stop_strings=..., tokenizer=...)`` raised ``ValueError: substring not found`` for
    all 48 stop strings tried (one or two answer words, with and without a leading space), where this criterion
    stopped at the right token; so it stays. Only the last tokens are decoded each step.
    """

    def __init__(self, tokenizer: Any, stops: list[str], prompt_length: int) -> None:
        self.tokenizer = tokenizer
        self.stops = [s for s in stops if s]
        self.prompt_length = prompt_length
        self.window = max((len(s) for s in self.stops), default=0) + 2

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any) -> torch.BoolTensor:
        tail = input_ids[:, self.prompt_length :][:, -self.window :]
        texts = self.tokenizer.batch_decode(tail, skip_special_tokens=True)
        done = [any(s in t for s in self.stops) for t in texts]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


class DeadlineCriteria(StoppingCriteria):
    """Stops every row at the next token once the deadline has passed (and records that it did)."""

    def __init__(self, deadline: Deadline) -> None:
        self.deadline = deadline

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any) -> torch.BoolTensor:
        late = self.deadline.remaining() <= 0.0
        if late:
            self.deadline.fired = True
        return cast(torch.BoolTensor, torch.full((input_ids.shape[0],), late, dtype=torch.bool, device=input_ids.device))
