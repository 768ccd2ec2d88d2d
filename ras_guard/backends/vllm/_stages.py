"""The three RAS stages on vLLM as plans: generators that yield engine calls and read their outputs.

A plan yields :class:`EngineCall` (conversations plus one ``SamplingParams`` per row) and is sent back the
finished ``RequestOutput`` of every row, in order. :func:`drive` runs a plan on ``vllm.LLM`` (one batched
``generate`` per call); :func:`adrive` runs the same plan on ``AsyncLLM`` (one engine request per row, so concurrent
plans share the engine's batches). Captions, risk requests, result reading and the answer records are therefore
written once, for the sync and the async guard.

Example:
    >>> found = drive(assess_plan(guard, convs), guard.engine.run)  # doctest: +SKIP
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from ...calibration import Calibration
from ...config import RASConfig
from ...errors import CalibrationError, InvalidMessageError
from ...messages import Conversation
from ...reformulate import caption_messages, clean_caption, reformulated_text
from ...risk import apply_softcap, risk_from_similarity, similarity
from ...types import GuardedGeneration, RiskAssessment, given_assessments, guarded_generation, is_steered
from .engine import Completion, VLLMEngine

__all__ = [
    "EngineCall",
    "Plan",
    "adrive",
    "answer_call",
    "answer_plan",
    "assess_plan",
    "drive",
    "found_plan",
    "generate_plan",
    "generation",
    "resolve_given",
    "stop_strings",
]

T = TypeVar("T")


@dataclass(frozen=True)
class EngineCall:
    """Rows for the engine: each conversation with its sampling parameters (and stop strings, if any)."""

    conversations: list[Any]
    params: list[Any]
    stops: list[tuple[str, ...]] | None = None


Plan = Generator[EngineCall, list[Any], T]


class _Guard(Protocol):
    engine: VLLMEngine
    config: RASConfig
    calibration: Calibration
    _captions: Any


def drive(plan: Plan[T], run: Callable[[EngineCall], list[Any]]) -> T:
    """Run a plan, answering each of its engine calls with ``run``."""
    outs: Any = None
    while True:
        try:
            call = plan.send(outs)
        except StopIteration as done:
            return done.value
        outs = run(call)


async def adrive(plan: Plan[T], run: Callable[[EngineCall], Awaitable[list[Any]]]) -> T:
    """Run a plan, awaiting ``run`` for each of its engine calls."""
    outs: Any = None
    while True:
        try:
            call = plan.send(outs)
        except StopIteration as done:
            return done.value
        outs = await run(call)


def _contexts(guard: _Guard, convs: Sequence[Conversation]) -> Plan[tuple[list[str], list[bool], int]]:
    cfg, engine = guard.config, guard.engine
    key = (cfg.caption_prompt, cfg.caption_max_new_tokens)
    found: dict[str, str] = {}
    todo: dict[str, Any] = {}
    for conv in convs:
        for h, img in zip(conv.last_user_image_hashes(), conv.last_user_images()):
            cached = found.get(h) or guard._captions.get((h, *key))
            if cached is not None:
                found[h] = cached
            elif h not in todo:
                todo[h] = img
    spent = 0
    if todo:
        limit = cfg.caption_max_new_tokens
        outs = yield EngineCall(
            [caption_messages(img, cfg) for img in todo.values()],
            engine.answer_params(len(todo), max_tokens=limit),
        )
        for h, out in zip(todo, outs):
            c = engine.trim(out, limit)
            found[h] = clean_caption(engine.decode(c.token_ids))
            guard._captions.put((h, *key), found[h])
            spent += c.prompt_tokens + len(c.token_ids)
    contexts = [" ".join(found[h] for h in c.last_user_image_hashes()) for c in convs]
    from_cache = [all(h not in todo for h in c.last_user_image_hashes()) for c in convs]
    return contexts, from_cache, spent


def assess_plan(guard: _Guard, convs: Sequence[Conversation]) -> Plan[list[RiskAssessment]]:
    """Stages 1 and 2: caption the new images, score the reformulated queries."""
    cfg, cal, n, engine = guard.config, guard.calibration, guard.config.num_steer_tokens, guard.engine
    proto = apply_softcap(cal.prototype_logits, engine.softcap)
    t0 = time.perf_counter()
    contexts, from_cache, caption_tokens = yield from _contexts(guard, convs)
    t1 = time.perf_counter()
    texts = [reformulated_text(c.question, vc, cfg) for c, vc in zip(convs, contexts)]
    outs = yield EngineCall(
        [c.with_last_user_text(t) for c, t in zip(convs, texts)],
        [engine.logprob_params(n)] * len(convs),
    )
    logprobs, tokens, prompt = engine.read_logprobs(outs, n)
    sims = similarity(logprobs, proto, cfg.gamma).tolist() if convs else []
    t2 = time.perf_counter()
    timings = {"caption": t1 - t0, "risk": t2 - t1, "total": t2 - t0}
    out = []
    for i, (conv, s) in enumerate(zip(convs, sims)):
        if not math.isfinite(s):
            raise CalibrationError(
                f"similarity is {s} for request {i}; the model produced non-finite logits."
            )
        out.append(
            RiskAssessment(
                risk=risk_from_similarity(s, s_base=cal.s_base, alpha=cal.alpha),
                similarity=float(s),
                visual_context=contexts[i],
                reformulated_prompt=texts[i],
                risk_tokens=engine.decode(tokens[i]),
                timings=dict(timings),
                calibration_id=cal.calibration_id,
                image_sha256=conv.image_hashes,
                cached_caption=from_cache[i] and bool(conv.last_user_image_hashes()),
                guard_tokens=prompt[i] + n + (caption_tokens if i == 0 else 0),
            )
        )
    return out


def resolve_given(
    guard: _Guard,
    convs: Sequence[Conversation],
    risks: Sequence[float] | None,
    assessments: Sequence[RiskAssessment] | None,
) -> list[RiskAssessment] | None:
    """The assessments the caller gave (see :func:`ras_guard.types.given_assessments`), or None."""
    return given_assessments(convs, guard.calibration.calibration_id, risks, assessments)


def generation(
    guard: _Guard, assessment: RiskAssessment, done: Completion, text: str, answer_s: float
) -> GuardedGeneration:
    """The :class:`GuardedGeneration` record of one answered row."""
    return guarded_generation(
        text, done.token_ids, assessment, steered=is_steered(assessment.risk, guard.config.risk_floor),
        prompt_tokens=done.prompt_tokens, finish_reason=done.finish_reason, answer_s=answer_s,
    )


def stop_strings(sampling: dict[str, Any]) -> tuple[str, ...]:
    """The ``stop`` of a guard call's sampling keywords (a string or a list of strings), as a tuple.

    Raises:
        InvalidMessageError: ``stop`` is neither a string nor a list of strings.
    """
    stop = sampling.get("stop")
    if stop is None:
        return ()
    stop = [stop] if isinstance(stop, str) else stop
    if not isinstance(stop, (list, tuple)) or not all(isinstance(s, str) for s in stop):
        raise InvalidMessageError(f"stop must be a string or a list of strings, got {stop!r}.")
    return tuple(s for s in stop if s)


def answer_call(
    guard: _Guard,
    convs: Sequence[Conversation],
    found: Sequence[RiskAssessment],
    max_new_tokens: int,
    sampling: dict[str, Any],
) -> EngineCall:
    """Stage 3's engine call: the original queries, each carrying its own risk (stop strings watched by us)."""
    stop = stop_strings(sampling)
    params = guard.engine.answer_params(
        len(convs),
        max_tokens=max_new_tokens,
        risks=[a.risk for a in found],
        floor=guard.config.risk_floor,
        **{k: v for k, v in sampling.items() if k != "stop"},
    )
    return EngineCall([c.as_list() for c in convs], params, [stop] * len(convs) if stop else None)


def answer_plan(
    guard: _Guard,
    convs: Sequence[Conversation],
    found: Sequence[RiskAssessment],
    max_new_tokens: int,
    sampling: dict[str, Any],
) -> Plan[list[GuardedGeneration]]:
    """Stage 3: answer every row steered by its own risk."""
    t0 = time.perf_counter()
    outs = yield answer_call(guard, convs, found, max_new_tokens, sampling)
    answer_s = time.perf_counter() - t0
    stop = stop_strings(sampling)
    done = [guard.engine.finish(o, max_new_tokens, stop) for o in outs]
    return [generation(guard, a, c, text, answer_s) for a, (c, text) in zip(found, done)]


def found_plan(
    guard: _Guard,
    convs: Sequence[Conversation],
    risks: Sequence[float] | None,
    assessments: Sequence[RiskAssessment] | None,
) -> Plan[list[RiskAssessment]]:
    """The given assessments, or stages 1 and 2 when none were given."""
    given = resolve_given(guard, convs, risks, assessments)
    if given is not None:
        return given
    return (yield from assess_plan(guard, convs))


def generate_plan(
    guard: _Guard,
    convs: Sequence[Conversation],
    risks: Sequence[float] | None,
    assessments: Sequence[RiskAssessment] | None,
    max_new_tokens: int,
    sampling: dict[str, Any],
) -> Plan[list[GuardedGeneration]]:
    """All three stages (the first two skipped where risks or assessments are given)."""
    found = yield from found_plan(guard, convs, risks, assessments)
    return (yield from answer_plan(guard, convs, found, max_new_tokens, sampling))
