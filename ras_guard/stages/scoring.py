"""Stage 2 of RAS as a plan: risk probes, similarities, then assessments (formula: :mod:`ras_guard.risk`).

Every version of a request that :mod:`ras_guard._scope` scores (assessment scope, role-spoofing cuts) becomes one
greedy request of N tokens asking for the N next-token distributions; ``S`` and ``r`` follow, and each request
keeps its highest-risk version.

Example:
    >>> import torch
    >>> from ras_guard.config import RASConfig
    >>> from ras_guard.messages import normalize_messages
    >>> from ras_guard.testing import FakeBackend
    >>> model = StageModel(RASConfig(), torch.zeros(3, 8), s_base=0.5, alpha=9.19, calibration_id="c")
    >>> convs = [normalize_messages([{"role": "user", "content": "hi"}])]
    >>> uniform = FakeBackend(vocab_size=8, logprobs=torch.zeros(3, 8))  # exactly the (uniform) prototype
    >>> [round(a.risk, 2) for a in drive(assess(convs, model, None), uniform)]
    [0.99]
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .._scope import best_rows, risk_rows
from ..backends.protocol import GenerationRequest
from ..config import RASConfig
from ..errors import CalibrationError
from ..messages import Conversation
from ..risk import apply_softcap, risk_from_similarity, similarity
from ..types import RiskAssessment
from ..types import given_assessments as _given
from .drive import Plan, drive
from .visual import CaptionCache, Contexts, visual_contexts

__all__ = ["StageModel", "assess", "drive", "given_assessments", "score"]


@dataclass(frozen=True)
class StageModel:
    """What the stages need of a calibration and a backend, in one record.

    Attributes:
        config: Method constants.
        prototype_logits: ``[N, V]`` uncapped ``lm_head(mu_n)``, or None (no calibration: only given risks).
        s_base: S_base of the calibration.
        alpha: alpha of the calibration.
        calibration_id: Identifier of the calibration ("" without one).
        softcap: The backend's final logit soft-cap, if any.
    """

    config: RASConfig
    prototype_logits: torch.Tensor | None
    s_base: float = 0.0
    alpha: float = 1.0
    calibration_id: str = ""
    softcap: float | None = None

    @classmethod
    def of(cls, config: RASConfig, calibration: object | None, softcap: float | None) -> StageModel:
        """From a :class:`~ras_guard.calibration.Calibration` (or None) and the backend's soft-cap."""
        if calibration is None:
            return cls(config, None, softcap=softcap)
        return cls(
            config, calibration.prototype_logits, calibration.s_base, calibration.alpha,  # type: ignore[attr-defined]
            calibration.calibration_id, softcap,  # type: ignore[attr-defined]
        )

    def prototypes(self) -> torch.Tensor:
        """The prototype logits, or :class:`~ras_guard.errors.CalibrationError` naming the fixes."""
        if self.prototype_logits is None:
            raise CalibrationError(
                "this guard has no calibration; load one (RASGuard.from_pretrained(path, calibration=DIR)), fit one "
                "with `ras-guard calibrate`, or pass risk= explicitly."
            )
        return self.prototype_logits


def assess(
    convs: Sequence[Conversation],
    model: StageModel,
    cache: CaptionCache | None,
    groups: Sequence[str | None] | None = None,
) -> Plan[list[RiskAssessment]]:
    """Stages 1 and 2: the visual contexts, then :func:`score`.

    Raises:
        CalibrationError: No calibration, or the model produced non-finite distributions.
    """
    model.prototypes()
    if not convs:
        return []
    t0 = time.perf_counter()
    ctx = yield from visual_contexts(convs, model.config, cache, groups)
    return (yield from score(convs, ctx, model, groups, caption_s=time.perf_counter() - t0))


def score(
    convs: Sequence[Conversation],
    ctx: Contexts,
    model: StageModel,
    groups: Sequence[str | None] | None = None,
    *,
    caption_s: float = 0.0,
) -> Plan[list[RiskAssessment]]:
    """Stage 2: one risk request per scored version, similarities, risks; each request's highest-risk version.

    Args:
        convs: The normalised requests.
        ctx: Their visual contexts (stage 1).
        model: Calibration constants and config.
        groups: The request group of each request.
        caption_s: Seconds stage 1 took (for the timings).

    Raises:
        CalibrationError: No calibration, or the model produced non-finite distributions.
    """
    cfg, n = model.config, model.config.num_steer_tokens
    proto = apply_softcap(model.prototypes(), model.softcap)
    if not convs:
        return []
    t1 = time.perf_counter()
    rows = risk_rows(convs, ctx.texts, cfg)
    outs = yield [
        GenerationRequest(
            r.messages, max_new_tokens=n, min_new_tokens=n, num_distributions=n, image_hashes=r.images,
            group=groups[r.owner] if groups else None,
        )
        for r in rows
    ]
    missing = [j for j, o in enumerate(outs) if o.logprobs is None or o.logprobs.shape[0] < n]
    if missing:
        raise CalibrationError(f"the backend returned no {n} next-token distributions for risk request {missing[0]}.")
    sims = similarity(torch.stack([o.logprobs[:n].float() for o in outs]), proto, cfg.gamma).tolist()  # type: ignore[index]
    t2 = time.perf_counter()
    for j, s in enumerate(sims):
        if not math.isfinite(s):
            raise CalibrationError(
                f"similarity is {s} for request {rows[j].owner}; the model produced non-finite logits."
            )
    risks = [risk_from_similarity(s, s_base=model.s_base, alpha=model.alpha) for s in sims]
    best = best_rows(rows, risks)
    spent = [0] * len(convs)
    for j, r in enumerate(rows):
        spent[r.owner] += outs[j].prompt_tokens + n
    timings = {"caption": caption_s, "risk": t2 - t1, "total": caption_s + t2 - t1}
    out = []
    for i, conv in enumerate(convs):
        j = best[i]
        out.append(
            RiskAssessment(
                risk=risks[j],
                similarity=float(sims[j]),
                visual_context=ctx.texts[i],
                reformulated_prompt=rows[j].text,
                risk_tokens=outs[j].text,
                timings=dict(timings),
                calibration_id=model.calibration_id,
                image_sha256=conv.image_hashes,
                cached_caption=ctx.from_cache[i] and bool(conv.last_user_image_hashes()),
                guard_tokens=spent[i] + (ctx.tokens if i == 0 else 0),
            )
        )
    return out


def given_assessments(
    convs: Sequence[Conversation],
    model: StageModel,
    risks: Sequence[float] | None,
    assessments: Sequence[RiskAssessment] | None,
) -> list[RiskAssessment] | None:
    """The assessments the caller gave (as ``risks`` or ``assessments``), or None when they must be computed.

    Raises:
        InvalidMessageError: Wrong count, or a risk outside [0, 1].
    """
    return _given(convs, model.calibration_id, risks, assessments)
