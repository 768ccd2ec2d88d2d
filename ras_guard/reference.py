"""The reference-style RAS path: three independent ``generate`` calls per request, batch 1, nothing reused.

This is how the public reference implementation of RAS runs a query: a caption call (image + caption prompt), a
risk call (image + safety prompt + caption + question, N tokens), and the steered answer call (image + original
question), each one encoding the image and prefilling the whole prompt again; no caption cache, no prefix reuse,
no batching. :class:`~ras_guard.RASGuard` gives the same outputs faster; this module exists as the baseline of
``benchmarks/overhead.py`` and as the oracle of the equivalence tests.

Example:
    >>> from ras_guard.reference import reference_generate
    >>> out = reference_generate(guard, messages, max_new_tokens=32)  # doctest: +SKIP
    >>> out.assessment.risk, out.steered  # doctest: +SKIP
    (0.97, True)
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ._decoding import GREEDY
from ._scope import best_rows, risk_rows
from .backends.hf import SteeringLogitsProcessor
from .backends.hf._decoding import sampling_after_steering
from .errors import CalibrationError
from .reformulate import caption_messages, clean_caption
from .risk import apply_softcap, risk_from_similarity, similarity
from .types import GuardedGeneration, RiskAssessment, guarded_generation, is_steered

if TYPE_CHECKING:
    from .guard import RASGuard

__all__ = ["reference_assess", "reference_generate"]


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
    if guard.calibration is None:
        raise CalibrationError("reference_assess needs a guard with a calibration.")
    backend, cfg, cal = guard.backend, guard.config, guard.calibration
    conv = guard.normalize(messages)
    t0 = time.perf_counter()
    captions, spent = [], 0
    for image in conv.last_user_images():
        inputs = backend.encode([caption_messages(image, cfg)])
        res = backend.generate(inputs, max_new_tokens=cfg.caption_max_new_tokens, **GREEDY)
        ids, _ = backend.trim(res.sequences[0])
        captions.append(clean_caption(backend.decode(ids)))
        spent += res.prompt_tokens[0] + len(ids)
    t1 = time.perf_counter()
    context = " ".join(captions)
    n = cfg.num_steer_tokens
    proto = apply_softcap(cal.prototype_logits, backend.softcap)
    found = []  # (risk, similarity, row, risk tokens), one per scored version (see ras_guard._scope)
    rows = risk_rows([conv], [context], cfg)
    for row in rows:
        inputs = backend.encode([row.messages])
        res = backend.generate(inputs, max_new_tokens=n, min_new_tokens=n, want_logits=True, **GREEDY)
        s = float(similarity(res.logits, proto, cfg.gamma)[0])
        if not math.isfinite(s):
            raise CalibrationError(f"similarity is {s}; the model produced non-finite logits.")
        found.append((risk_from_similarity(s, s_base=cal.s_base, alpha=cal.alpha), s, row, res.sequences[0].tolist()))
        spent += res.prompt_tokens[0] + n
    t2 = time.perf_counter()
    risk, s, row, tokens = found[best_rows(rows, [f[0] for f in found])[0]]
    return RiskAssessment(
        risk=risk,
        similarity=s,
        visual_context=context,
        reformulated_prompt=row.text,
        risk_tokens=backend.decode(tokens),
        timings={"caption": t1 - t0, "risk": t2 - t1, "total": t2 - t0},
        calibration_id=cal.calibration_id,
        image_sha256=conv.image_hashes,
        guard_tokens=spent,
    )


def reference_generate(
    guard: RASGuard,
    messages: Sequence[dict[str, Any]],
    *,
    max_new_tokens: int = 256,
    **generation_kwargs: Any,
) -> GuardedGeneration:
    """Assess and answer one request the reference way (three independent ``generate`` calls).

    Args:
        guard: A guard with a calibration.
        messages: Chat messages of one request.
        max_new_tokens: Answer length limit.
        **generation_kwargs: Passed to the answer's ``model.generate`` (``do_sample``, ``min_new_tokens``...).

    Returns:
        The same record :meth:`RASGuard.generate` returns.

    Example:
        >>> reference_generate(guard, messages, max_new_tokens=16, do_sample=False).text  # doctest: +SKIP
        'I am sorry , but I cannot help with that .'
    """
    a = reference_assess(guard, messages)
    backend, cfg = guard.backend, guard.config
    inputs = backend.encode([guard.normalize(messages).as_list()])
    steered = is_steered(a.risk, cfg.risk_floor)
    kwargs, processors = dict(generation_kwargs), []
    if steered:
        kwargs, warpers = sampling_after_steering(getattr(backend.model, "generation_config", None), kwargs)
        prompt_length = int(inputs["input_ids"].shape[1])
        processors = [SteeringLogitsProcessor(guard.calibration.prototype_logits, [a.risk], prompt_length,
                                              floor=cfg.risk_floor, softcap=backend.softcap), *warpers]
    t0 = time.perf_counter()
    res = backend.generate(inputs, max_new_tokens=max_new_tokens, logits_processors=processors, **kwargs)
    answer_s = time.perf_counter() - t0
    ids, reason = backend.trim(res.sequences[0])
    return guarded_generation(
        backend.decode(ids), ids, a, steered=steered, prompt_tokens=res.prompt_tokens[0], finish_reason=reason,
        answer_s=answer_s,
    )
