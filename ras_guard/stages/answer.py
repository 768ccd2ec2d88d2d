"""Stage 3 of RAS as a plan: the original queries, each with its steering (formula: :mod:`ras_guard.steering`).

A request whose risk is steered (:func:`ras_guard.types.is_steered`) carries a
:class:`~ras_guard.steering.SteeringSpec`; the others carry none and are answered exactly as the model would.
Under a ``response_format`` a request that would be steered is refused without generating (see
:mod:`ras_guard.constrained`).

Example:
    >>> import torch
    >>> from ras_guard.config import RASConfig
    >>> from ras_guard.messages import normalize_messages
    >>> from ras_guard.testing import FakeBackend
    >>> from ras_guard.types import RiskAssessment
    >>> model = StageModel(RASConfig(), torch.zeros(3, 8))
    >>> convs = [normalize_messages([{"role": "user", "content": "hi"}])]
    >>> a = RiskAssessment(risk=0.9, similarity=0.9, visual_context="", reformulated_prompt="")
    >>> fake = FakeBackend(text="no .")
    >>> out = drive(answer(convs, [a], model, AnswerOptions(max_new_tokens=4)), fake)
    >>> out[0].steered, fake.requests[-1].steering.risk
    (True, 0.9)
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .._decoding import cut_at_stop
from ..backends.protocol import GREEDY, GenerationRequest, Sampling
from ..constrained import REFUSAL
from ..messages import Conversation
from ..steering import SteeringSpec
from ..types import GuardedGeneration, RiskAssessment, guarded_generation, is_steered
from .drive import Plan, drive
from .scoring import StageModel

__all__ = ["AnswerOptions", "answer", "drive"]


@dataclass(frozen=True)
class AnswerOptions:
    """How stage 3 answers.

    Attributes:
        max_new_tokens: Answer length limit.
        min_new_tokens: Tokens before EOS is allowed.
        sampling: Decoding after steering.
        stop: Stop strings (the text is cut before the first one).
        tools: Tool schemas for the chat template.
        response_format: A parsed :class:`~ras_guard.constrained.ResponseFormat`, or None.
        engine: Engine-specific generation options (:attr:`GenerationRequest.options`).
    """

    max_new_tokens: int
    min_new_tokens: int = 0
    sampling: Sampling = GREEDY
    stop: tuple[str, ...] = ()
    tools: list[dict[str, Any]] | None = field(default=None, hash=False)
    response_format: Any = None
    engine: dict[str, Any] = field(default_factory=dict, hash=False)


def answer_requests(
    convs: Sequence[Conversation],
    found: Sequence[RiskAssessment],
    model: StageModel,
    options: AnswerOptions,
    groups: Sequence[str | None] | None = None,
) -> tuple[list[int], list[GenerationRequest]]:
    """The answer requests still to run (rows refused under a grammar have none): ``(their indices, requests)``.

    Raises:
        CalibrationError: A row would be steered but there is no calibration.
    """
    floor = model.config.risk_floor
    steered = [is_steered(a.risk, floor) for a in found]
    idx = [i for i, s in enumerate(steered) if not (s and options.response_format is not None)]
    if any(steered[i] for i in idx):
        model.prototypes()  # raises a clear error without a calibration
    reqs = [
        GenerationRequest(
            convs[i].as_list(), max_new_tokens=options.max_new_tokens, min_new_tokens=options.min_new_tokens,
            sampling=options.sampling, stop=options.stop, tools=options.tools,
            steering=SteeringSpec(found[i].risk, model.prototypes(), floor, model.softcap) if steered[i] else None,
            response_format=options.response_format, group=groups[i] if groups else None, options=options.engine,
            image_hashes=convs[i].image_hashes,
        )
        for i in idx
    ]
    return idx, reqs


def answer(
    convs: Sequence[Conversation],
    found: Sequence[RiskAssessment],
    model: StageModel,
    options: AnswerOptions,
    groups: Sequence[str | None] | None = None,
) -> Plan[list[GuardedGeneration]]:
    """Stage 3: answer every request steered by its own risk (one call), then the records."""
    floor = model.config.risk_floor
    idx, reqs = answer_requests(convs, found, model, options, groups)
    t0 = time.perf_counter()
    outs = (yield reqs) if reqs else []
    answer_s = time.perf_counter() - t0
    done = dict(zip(idx, outs, strict=True))
    records = []
    for i, a in enumerate(found):
        if i not in done:
            records.append(guarded_generation("", [], a, steered=True, prompt_tokens=0, finish_reason=REFUSAL,
                                              answer_s=0.0))
            continue
        o = done[i]
        text, stopped = cut_at_stop(o.text, list(options.stop))
        records.append(guarded_generation(
            text, o.token_ids, a, steered=is_steered(a.risk, floor), prompt_tokens=o.prompt_tokens,
            finish_reason="stop" if stopped else o.finish_reason, answer_s=answer_s,
        ))
    return records
