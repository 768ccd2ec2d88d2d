"""The reference-style RAS path: the same stage drivers, one engine call per request and pass, nothing reused.

This is how the public reference implementation of RAS runs a query: a caption call (image + caption prompt), a
risk call (image + safety prompt + caption + question, N tokens), and the steered answer call (image + original
question), each one encoding the image and prefilling the whole prompt again; no caption cache, no prefix reuse,
no batching. It runs the stage plans of :mod:`ras_guard.stages` over :class:`OneByOne`, a plain mode of any
backend (requests one at a time, no request group), so :class:`~ras_guard.RASGuard` and this path differ only in
how the engine runs them. It is the baseline of ``benchmarks/overhead.py`` and the oracle of the equivalence tests.

Example:
    >>> from ras_guard.reference import reference_generate
    >>> out = reference_generate(guard, messages, max_new_tokens=32)  # doctest: +SKIP
    >>> out.assessment.risk, out.steered  # doctest: +SKIP
    (0.97, True)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .backends.protocol import GenerationRequest, GenerationResult
from .errors import CalibrationError
from .sampling import request_sampling
from .stages import AnswerOptions, StageModel, answer, assess, drive
from .types import GuardedGeneration, RiskAssessment

if TYPE_CHECKING:
    from .guard import RASGuard

__all__ = ["OneByOne", "reference_assess", "reference_generate"]


class OneByOne:
    """A backend's plain mode: every request alone (batch 1), without its group (nothing kept between calls).

    Example:
        >>> from ras_guard.testing import FakeBackend
        >>> fake = FakeBackend()
        >>> _ = OneByOne(fake).generate([GenerationRequest([], 1, group="g"), GenerationRequest([], 1)])
        >>> fake.calls, fake.requests[0].group
        (2, None)
    """

    def __init__(self, backend: Any) -> None:
        self.backend = backend

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        """Run each request in its own engine call."""
        return [self.backend.generate([dataclasses.replace(r, group=None)])[0] for r in requests]


def _model(guard: RASGuard) -> StageModel:
    if guard.calibration is None:
        raise CalibrationError("the reference path needs a guard with a calibration.")
    return StageModel.of(guard.config, guard.calibration, guard.backend.softcap)


def reference_assess(guard: RASGuard, messages: Sequence[dict[str, Any]]) -> RiskAssessment:
    """Assess one request the reference way: one caption call per image, then one risk call per scored version.

    The versions (assessment scope, role-spoofing cuts) are those of :mod:`ras_guard._scope`; the highest risk
    is kept.

    Args:
        guard: A guard with a calibration (only its backend, config and calibration are used).
        messages: Chat messages of one request.

    Example:
        >>> reference_assess(guard, messages).similarity  # doctest: +SKIP
        0.81
    """
    return drive(assess([guard.normalize(messages)], _model(guard), None), OneByOne(guard.backend))[0]


def reference_generate(
    guard: RASGuard,
    messages: Sequence[dict[str, Any]],
    *,
    max_new_tokens: int = 256,
    **generation_kwargs: Any,
) -> GuardedGeneration:
    """Assess and answer one request the reference way (three independent engine calls, more with several images).

    Args:
        guard: A guard with a calibration.
        messages: Chat messages of one request.
        max_new_tokens: Answer length limit.
        **generation_kwargs: Sampling and length options as in :meth:`RASGuard.generate` (``do_sample``,
            ``min_new_tokens``...).

    Returns:
        The same record :meth:`RASGuard.generate` returns.

    Example:
        >>> reference_generate(guard, messages, max_new_tokens=16, do_sample=False).text  # doctest: +SKIP
        'I am sorry , but I cannot help with that .'
    """
    model, plain = _model(guard), OneByOne(guard.backend)
    conv = guard.normalize(messages)
    found = drive(assess([conv], model, None), plain)
    sampling, min_new, engine = request_sampling(generation_kwargs)
    options = AnswerOptions(max_new_tokens, min_new, sampling, engine=engine)
    return drive(answer([conv], found, model, options), plain)[0]
