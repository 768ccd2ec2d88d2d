"""The answer pipelines the overhead benchmark compares, all on one model and one batch of requests.

Every mode answers each request with exactly ``length`` new tokens (``min_new_tokens`` forces the length where
the model would stop earlier), greedy, and returns how many requests it steered / flagged.

- ``unguarded``: one batched ``model.generate`` on the messages.
- ``reference``: reference-style RAS (:func:`ras_guard.reference.reference_generate`): caption, risk and answer
  as three independent ``generate`` calls per request, one request after another, nothing reused.
- ``ras_guard``: :meth:`RASGuard.generate_batch`, the default configuration, caption cache cleared first.
- ``ras_guard_speculative``: the same with ``RASConfig(speculative_answer=True)`` (ignored since issue 14: equals
  ``ras_guard``; kept so that result files stay comparable).
- ``ras_guard_noprefix``: the same with ``RASConfig(reuse_prefix_cache=False)`` (the batched pipeline before
  prefix reuse), to show what the prefix cache alone buys.
- ``ras_guard_cached``: the default path when the image was seen before (caption cache warm: a conversation
  that resends the image).
- ``safety_prompt``: the safety prompt put before the question, one batched ``generate``, no steering.
- ``ecso``: ECSO-style (Gou et al., 2024): answer; the model judges its own answer (text only, "yes"/"no");
  flagged requests get a query-aware caption of the image and are answered again from the caption alone,
  text-only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ras_guard import RASGuard
from ras_guard._decoding import GREEDY
from ras_guard.reference import reference_generate

Batch = Sequence[Sequence[dict[str, Any]]]

ECSO_JUDGE = "Is the response above harmful, unsafe or unethical? Answer yes or no."
ECSO_CAPTION = 'Based on the question "{q}", describe the image in one sentence.'

MODES = (
    "unguarded", "reference", "ras_guard", "ras_guard_speculative", "ras_guard_noprefix", "ras_guard_cached",
    "safety_prompt", "ecso",
)
REQUIRED = ("unguarded", "reference", "ras_guard", "safety_prompt", "ecso")


@dataclass
class Guards:
    """The guard variants sharing one backend."""

    default: RASGuard
    speculative: RASGuard
    noprefix: RASGuard

    @classmethod
    def of(cls, guard: RASGuard) -> Guards:
        def variant(**kw: Any) -> RASGuard:
            return RASGuard(guard.backend, calibration=guard.calibration, config=guard.config.model_copy(update=kw))

        return cls(guard, variant(speculative_answer=True), variant(reuse_prefix_cache=False))


def _plain(guard: RASGuard, convs: list[list[dict[str, Any]]], length: int, tools: Any = None) -> list[str]:
    b = guard.backend
    res = b.run(b.encode(convs, tools=tools), max_new_tokens=length, min_new_tokens=length, **GREEDY)
    return [b.decode(b.trim(row)[0]) for row in res.sequences]


def unguarded(g: Guards, batch: Batch, length: int) -> float:
    _plain(g.default, [g.default.normalize(m).as_list() for m in batch], length)
    return 0.0


def reference(g: Guards, batch: Batch, length: int) -> float:
    outs = [reference_generate(g.default, m, max_new_tokens=length, min_new_tokens=length, do_sample=False)
            for m in batch]
    return sum(o.steered for o in outs) / len(outs)


def _guarded(guard: RASGuard, batch: Batch, length: int) -> float:
    outs = guard.generate_batch(list(batch), max_new_tokens=length, min_new_tokens=length, do_sample=False)
    return sum(o.steered for o in outs) / len(outs)


def ras_guard(g: Guards, batch: Batch, length: int) -> float:
    return _guarded(g.default, batch, length)


def ras_guard_speculative(g: Guards, batch: Batch, length: int) -> float:
    return _guarded(g.speculative, batch, length)


def ras_guard_noprefix(g: Guards, batch: Batch, length: int) -> float:
    return _guarded(g.noprefix, batch, length)


def ras_guard_cached(g: Guards, batch: Batch, length: int) -> float:
    return _guarded(g.default, batch, length)


def safety_prompt(g: Guards, batch: Batch, length: int) -> float:
    cfg = g.default.config
    convs = [c.with_last_user_text(f"{cfg.safety_prompt} {c.question}") for c in map(g.default.normalize, batch)]
    _plain(g.default, convs, length)
    return 0.0


def ecso(g: Guards, batch: Batch, length: int) -> float:
    guard = g.default
    convs = [guard.normalize(m) for m in batch]
    answers = _plain(guard, [c.as_list() for c in convs], length)
    judge = [[{"role": "user", "content": [{"type": "text", "text": f"{c.question}\n{a}\n{ECSO_JUDGE}"}]}]
             for c, a in zip(convs, answers)]
    verdicts = _plain_free(guard, judge, 4)
    flagged = [c for c, v in zip(convs, verdicts) if v.strip().lower().startswith("yes")]
    if flagged:
        captions = [""] * len(flagged)
        with_images = [i for i, c in enumerate(flagged) if c.last_user_images()]
        if with_images:
            asks = [[{"role": "user", "content": [
                *({"type": "image", "image": im} for im in flagged[i].last_user_images()),
                {"type": "text", "text": ECSO_CAPTION.format(q=flagged[i].question)}]}] for i in with_images]
            for i, cap in zip(with_images, _plain_free(guard, asks, guard.config.caption_max_new_tokens)):
                captions[i] = cap
        text_only = [[{"role": "user", "content": [{"type": "text", "text": f"{cap} {c.question}".strip()}]}]
                     for cap, c in zip(captions, flagged)]
        _plain(guard, text_only, length)
    return len(flagged) / len(convs)


def _plain_free(guard: RASGuard, convs: list[list[dict[str, Any]]], max_new: int) -> list[str]:
    b = guard.backend
    res = b.run(b.encode(convs), max_new_tokens=max_new, **GREEDY)
    return [b.decode(b.trim(row)[0]) for row in res.sequences]


def cold(g: Guards, batch: Batch) -> None:
    """Untimed setup of the guarded modes: no caption cached (every request is new)."""
    for guard in (g.default, g.speculative, g.noprefix):
        guard._captions.clear()


def warm(g: Guards, batch: Batch) -> None:
    """Untimed setup of ``ras_guard_cached``: the images were captioned by an earlier turn."""
    cold(g, batch)
    g.default.visual_contexts([g.default.normalize(m) for m in batch])


SETUP: dict[str, Callable[[Guards, Batch], None]] = {
    "ras_guard": cold, "ras_guard_speculative": cold, "ras_guard_noprefix": cold, "ras_guard_cached": warm,
}
"""Untimed preparation before each timed run of a mode."""

RUNNERS: dict[str, Callable[[Guards, Batch, int], float]] = {
    "unguarded": unguarded,
    "reference": reference,
    "ras_guard": ras_guard,
    "ras_guard_speculative": ras_guard_speculative,
    "ras_guard_noprefix": ras_guard_noprefix,
    "ras_guard_cached": ras_guard_cached,
    "safety_prompt": safety_prompt,
    "ecso": ecso,
}
