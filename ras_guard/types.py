"""Result records returned by :class:`ras_guard.RASGuard`.

Example:
    >>> from ras_guard.types import Decision
    >>> Decision.STEERED.value
    'steered'
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from collections.abc import Sequence
from typing import Any

from .errors import InvalidMessageError

__all__ = ["Decision", "GuardedGeneration", "RiskAssessment", "Usage", "decide_policy", "guarded_generation", "is_steered"]


class Decision(str, enum.Enum):
    """What the guard did with a request."""

    ANSWERED = "answered"
    """Risk under the floor: the answer is the model's own, untouched."""
    STEERED = "steered"
    """The first N response tokens were steered towards the unsafe prototype (i.e. towards refusing)."""
    BLOCKED = "blocked"
    """A policy refused without generating (used by integrations)."""


def is_steered(risk: float, floor: float) -> bool:
    """Whether a request with this risk is steered: at or above the floor, and above zero.

    The one steering predicate of ras-guard (the guard, its backends, the integrations); a floor of 0 still leaves
    risk-0 requests untouched.

    Example:
        >>> is_steered(0.05, 0.05), is_steered(0.04, 0.05), is_steered(0.0, 0.0)
        (True, False, False)
    """
    return risk >= floor and risk > 0.0


def decide_policy(policy: str, risk: float, *, block_threshold: float, risk_floor: float) -> Decision:
    """What a policy (``"steer"``, ``"block"``, ``"monitor"``) does with a risk; steering starts at the floor.

    The one decision rule of the integrations (LangChain, the server).

    Example:
        >>> decide_policy("block", 0.9, block_threshold=0.5, risk_floor=0.05).value
        'blocked'
        >>> decide_policy("monitor", 0.9, block_threshold=0.5, risk_floor=0.05).value
        'answered'
    """
    if policy == "block" and risk >= block_threshold:
        return Decision.BLOCKED
    if policy != "monitor" and is_steered(risk, risk_floor):
        return Decision.STEERED
    return Decision.ANSWERED


@dataclass(frozen=True)
class RiskAssessment:
    """How risky a request is, and how that was found out.

    Attributes:
        risk: r in [0, 1], ``sigmoid(alpha * (S - S_base))``.
        similarity: S, cosine between the request's and the unsafe prototype's weighted next-token distributions.
        visual_context: The one-sentence visual context ("" when the request has no image).
        reformulated_prompt: The text sent in the risk pass (safety prompt + visual context + question).
        risk_tokens: The N greedy tokens of the risk pass, decoded (useful to see what the model would say).
        timings: Seconds per stage (``caption``, ``risk``, ``total``).
        calibration_id: Identifier of the calibration used.
        image_sha256: SHA-256 of each image of the request, in order.
        cached_caption: Whether the visual context came from the cache.
        guard_tokens: Tokens the assessment spent (caption and risk passes).
        given: True when the risk was given by the caller (``risk=``) instead of assessed.

    Example:
        >>> a = RiskAssessment(risk=0.9, similarity=0.95, visual_context="The image shows a bomb .",
        ...                    reformulated_prompt="...")
        >>> a.to_dict()["risk"]
        0.9
    """

    risk: float
    similarity: float
    visual_context: str
    reformulated_prompt: str
    risk_tokens: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    calibration_id: str = ""
    image_sha256: tuple[str, ...] = ()
    cached_caption: bool = False
    guard_tokens: int = 0
    given: bool = False

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        d = asdict(self)
        d["image_sha256"] = list(self.image_sha256)
        return d


@dataclass(frozen=True)
class Usage:
    """Token counts of one guarded generation.

    Attributes:
        input_tokens: Prompt tokens of the answer pass.
        output_tokens: Generated tokens of the answer.
        guard_tokens: Tokens the guard spent on top (caption prompt + caption + risk prompt + N risk tokens).
    """

    input_tokens: int
    output_tokens: int
    guard_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        """input + output tokens (guard tokens are reported separately)."""
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True)
class GuardedGeneration:
    """One guarded answer.

    Attributes:
        text: The decoded answer, special tokens skipped.
        token_ids: The generated token ids (prompt excluded, padding and EOS stripped).
        assessment: The risk assessment that decided the steering.
        steered: Whether steering was applied (risk at or above the floor).
        usage: Token counts.
        finish_reason: ``"stop"`` (EOS or stop string), ``"length"``, or ``"refusal"`` (a ``response_format``
            request whose risk would steer it: nothing generated, see :mod:`ras_guard.constrained`).
        timings: Seconds per stage, the answer pass included.
    """

    text: str
    token_ids: list[int]
    assessment: RiskAssessment
    steered: bool
    usage: Usage
    finish_reason: str = "stop"
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def decision(self) -> Decision:
        """``steered`` or ``answered``."""
        return Decision.STEERED if self.steered else Decision.ANSWERED


def guarded_generation(
    text: str,
    token_ids: list[int],
    assessment: RiskAssessment,
    *,
    steered: bool,
    prompt_tokens: int,
    finish_reason: str,
    answer_s: float | None = None,
) -> GuardedGeneration:
    """The one builder of :class:`GuardedGeneration`: usage and timings derived the same way everywhere.

    Args:
        text: The answer text.
        token_ids: The generated ids (EOS and padding stripped).
        assessment: The assessment that decided the steering.
        steered: Whether steering was applied.
        prompt_tokens: Prompt tokens of the answer pass (0 when nothing was generated).
        finish_reason: ``"stop"``, ``"length"`` or ``"refusal"``.
        answer_s: Seconds of the answer pass (None: no answer pass ran).

    Example:
        >>> a = RiskAssessment(risk=0.0, similarity=0.1, visual_context="", reformulated_prompt="", guard_tokens=9,
        ...                    timings={"total": 0.5})
        >>> g = guarded_generation("hi", [7], a, steered=False, prompt_tokens=4, finish_reason="stop", answer_s=0.25)
        >>> g.usage, g.timings
        (Usage(input_tokens=4, output_tokens=1, guard_tokens=9), {'assess_total': 0.5, 'answer': 0.25})
    """
    timings = {f"assess_{k}": v for k, v in assessment.timings.items()}
    if answer_s is not None:
        timings["answer"] = answer_s
    return GuardedGeneration(
        text=text,
        token_ids=list(token_ids),
        assessment=assessment,
        steered=steered,
        usage=Usage(prompt_tokens, len(token_ids), assessment.guard_tokens),
        finish_reason=finish_reason,
        timings=timings,
    )


def given_assessments(
    convs: Sequence[Any],
    calibration_id: str,
    risks: Sequence[float] | None,
    assessments: Sequence[RiskAssessment] | None,
) -> list[RiskAssessment] | None:
    """The assessments a caller gave (as ``risks`` or ``assessments``) for ``convs``, or None to compute them.

    Every engine's guard takes ``risks=`` / ``assessments=`` the same way; this is the one check of them.

    Raises:
        InvalidMessageError: Wrong count, or a risk outside [0, 1].

    Example:
        >>> class Conv: image_hashes = ()
        >>> given_assessments([Conv()], "cal", [0.25], None)[0].risk
        0.25
    """
    if risks is not None:
        if len(risks) != len(convs):
            raise InvalidMessageError(f"got {len(risks)} risks for {len(convs)} requests; pass one per request.")
        bad = [r for r in risks if isinstance(r, bool) or not 0.0 <= float(r) <= 1.0]
        if bad:
            raise InvalidMessageError(f"risk must lie in [0, 1], got {bad[0]!r}.")
        return [
            RiskAssessment(risk=float(r), similarity=float("nan"), visual_context="", reformulated_prompt="",
                           calibration_id=calibration_id, image_sha256=c.image_hashes, given=True)
            for r, c in zip(risks, convs, strict=True)
        ]
    if assessments is not None:
        if len(assessments) != len(convs):
            raise InvalidMessageError(f"got {len(assessments)} assessments for {len(convs)} requests.")
        return list(assessments)
    return None
