"""Running rows of different passes in one ``model.generate`` call, each with its own budget (private).

Used by :mod:`ras_guard._pipeline`: caption, risk and speculative answer rows share a call; the call ends when
its lead rows are done, and the other rows come back with a continuation (their KV cache) to go on later.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import torch
from transformers import LogitsProcessor, StoppingCriteria, StoppingCriteriaList

from ..._decoding import GREEDY
from ...types import is_steered
from ._kv import NotCacheable, Row, RowKV, assemble, harvest, sliding_window
from ._steer import SteeringLogitsProcessor

if TYPE_CHECKING:
    from ._backend import HFBackend


@dataclass
class Out:
    """What one row produced in a call.

    Attributes:
        tokens: Tokens generated in this call (up to and including an EOS).
        ended: Whether the row ended on its own (EOS or budget), rather than cut with the leaders.
        logits: ``[steps, V]`` raw logits when asked for.
        row: The continuation of a row that was cut (None otherwise).
        prefix: Keys/values of the prompt prefix kept with ``keep``.
    """

    tokens: list[int]
    ended: bool
    logits: torch.Tensor | None
    row: Row | None = None
    prefix: RowKV | None = None


def generate_rows(
    backend: HFBackend,
    rows: Sequence[Row],
    *,
    eos: Sequence[int],
    floor: float,
    prototype_logits: torch.Tensor | None,
    want_logits: bool = False,
    plain: Any = None,
    keep: dict[int, int] | None = None,
) -> list[Out]:
    """One greedy ``generate`` over rows; rows cut with the leaders come back with a continuation row.

    Args:
        backend: The transformers backend.
        rows: Cached rows (laid out by :func:`ras_guard._kv.assemble`), or the rows of ``plain``.
        eos: End-of-sequence ids.
        floor: Rows with a risk under it are not steered.
        prototype_logits: The calibration's ``[N, V]`` prototype logits (needed when a row is steered).
        want_logits: Return each row's raw logits.
        plain: An encoding (images included) whose rows are ``rows``, run as it is.
        keep: ``{row: n}``: keep the first ``n`` prompt tokens of these rows as their request's prefix.
    """
    model = backend.model
    inputs, extra = (plain, {}) if plain is not None else assemble(rows, model, backend.pad_token_id)
    start = int(inputs["input_ids"].shape[1])
    longest = max(r.max_new for r in rows)
    window = sliding_window(model.config)
    if window is not None and len(rows) > 1 and start + longest > window - 1:
        raise NotCacheable("the batch would outgrow the sliding window")
    procs: list[Any] = []
    kwargs: dict[str, Any] = {}
    limits = None
    if len({(r.max_new, r.min_new, r.lead) for r in rows}) == 1:  # uniform rows: transformers' own limits
        kwargs["min_new_tokens"] = rows[0].min_new
    else:
        limits = RowLimits(start, [r.max_new for r in rows], [r.lead for r in rows], eos)
        procs.append(RowMinNew(start, [r.min_new for r in rows], eos))
        kwargs["stopping_criteria"] = StoppingCriteriaList([limits])
    if any(is_steered(r.risk, floor) for r in rows):
        assert prototype_logits is not None  # the assessment that decided the steering needed a calibration
        risks = [r.risk for r in rows]
        procs.append(SteeringLogitsProcessor(prototype_logits, risks, start, floor=floor, softcap=backend.softcap))
    res = backend.generate(
        inputs, max_new_tokens=longest, logits_processors=procs, want_logits=want_logits,
        want_cache=limits is not None or bool(keep), **GREEDY, **kwargs, **extra,
    )
    big_c = max(r.cached for r in rows)
    logits = res.logits if want_logits else None
    outs = []
    for i, r in enumerate(rows):
        seq = res.sequences[i].tolist()
        if limits is None:
            n = next((k + 1 for k, t in enumerate(seq) if t in eos), len(seq))
            ended = True
        else:
            n, ended = int(limits.counts[i]), bool(limits.ended[i])
        out = Out(seq[:n], ended, None if logits is None else logits[i])
        t = len(r.ids) - r.cached
        prompt = list(range(big_c - r.cached, big_c)) + list(range(start - t, start))
        if keep and i in keep:
            out.prefix = harvest(res.cache, i, prompt[0], stop=prompt[0] + keep[i])
        if not ended and not r.lead:
            ids = r.ids + out.tokens
            types = {k: v + [v[-1]] * n for k, v in r.types.items()}
            kv = harvest(res.cache, i, 0, torch.tensor(prompt + list(range(start, start + n - 1))))
            out.row = Row(ids, types, kv, len(ids) - 1, r.delta, r.max_new - n, max(r.min_new - n, 0))
        outs.append(out)
    return outs


class RowLimits(StoppingCriteria):
    """Per-row token budgets; once every lead row is done, every row stops (the others can be continued).

    Attributes:
        counts: Tokens each row generated in this call.
        ended: Whether each row ended on its own (EOS or budget), as opposed to being cut with the leaders.
    """

    def __init__(self, start: int, max_new: Sequence[int], lead: Sequence[bool], eos: Sequence[int]) -> None:
        self.start = start
        self.max_new = torch.tensor(list(max_new))
        self.lead = torch.tensor(list(lead), dtype=torch.bool)
        self.eos = torch.tensor(sorted(eos) or [-1])
        self.ended = torch.zeros(len(self.max_new), dtype=torch.bool)
        self.counts = torch.zeros(len(self.max_new), dtype=torch.long)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any) -> torch.BoolTensor:
        g = input_ids.shape[1] - self.start
        last = input_ids[:, -1].cpu()
        self.counts = torch.where(self.ended, self.counts, torch.full_like(self.counts, g))
        self.ended |= torch.isin(last, self.eos) | (g >= self.max_new)
        if bool(self.lead.any()) and bool(self.ended[self.lead].all()):
            return cast(torch.BoolTensor, torch.ones_like(self.ended, device=input_ids.device))
        return cast(torch.BoolTensor, self.ended.clone().to(input_ids.device))


class RowMinNew(LogitsProcessor):
    """Per-row ``min_new_tokens``: EOS is impossible for rows that have generated fewer tokens."""

    def __init__(self, start: int, min_new: Sequence[int], eos: Sequence[int]) -> None:
        self.start = start
        self.min_new = torch.tensor(list(min_new))
        self.eos = sorted(eos)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        g = input_ids.shape[1] - self.start
        rows = (self.min_new > g).to(scores.device)
        if not self.eos or not bool(rows.any()):
            return scores
        mask = torch.zeros(scores.shape[-1], dtype=torch.bool, device=scores.device)
        mask[[e for e in self.eos if e < scores.shape[-1]]] = True
        inf = torch.tensor(-float("inf"), device=scores.device)
        return cast(torch.FloatTensor, torch.where(rows[:, None] & mask[None, :], inf, scores))
