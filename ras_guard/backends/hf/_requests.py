"""Protocol requests on transformers (private): one ``model.generate`` per set of compatible requests.

:func:`generate` groups the requests that can share a call (same limits, sampling, stop strings, tools, format,
distributions asked), lays each set out as cached rows (continuing from a prefix of their group, see
:mod:`._prefix`) and plain rows (encoded with their images), and turns the outputs into
:class:`~ras_guard.backends.protocol.GenerationResult` records. :func:`prepare` does the same for one streamed
request. Steering, the grammar and the sampling warpers become logits processors here, in that order.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from ..._decoding import cut_at_stop
from ...constrained import parse_response_format
from ...images import image_sha256
from ..protocol import GenerationRequest, GenerationResult, Sampling
from . import _kv
from ._decoding import sampling_after_steering
from ._grammar import GrammarConstraint
from ._steer import SteeringLogitsProcessor

if TYPE_CHECKING:
    from ._backend import HFBackend

Ids = tuple[list[int], dict[str, list[int]]]

_GREEDY: dict[str, Any] = {"do_sample": False, "num_beams": 1, "temperature": None, "top_p": None, "top_k": None}
_WINDOW_MARGIN = 64  # tokens of slack on the sliding-window check of a cached row


def sampling_kwargs(s: Sampling) -> dict[str, Any]:
    """``generate`` arguments of a :class:`Sampling` (None temperature: the checkpoint's generation config)."""
    if s.greedy:
        return dict(_GREEDY)
    if s.temperature is None:
        return {}
    out: dict[str, Any] = {"do_sample": True, "temperature": float(s.temperature)}
    if s.top_p is not None:
        out["top_p"] = float(s.top_p)
    if s.top_k is not None:
        out["top_k"] = int(s.top_k)
    return out


def _call_key(r: GenerationRequest) -> str:
    fmt = None if r.response_format is None else parse_response_format(r.response_format)
    return json.dumps([
        r.max_new_tokens, r.min_new_tokens, repr(r.sampling), list(r.stop), r.tools, r.num_distributions,
        r.return_hidden, None if fmt is None else [fmt.kind, fmt.schema], r.options,
    ], default=repr, sort_keys=True)


def image_hashes(r: GenerationRequest) -> tuple[str, ...]:
    """The request's image hashes in token order (given, or computed from its messages)."""
    if r.image_hashes is not None:
        return tuple(r.image_hashes)
    return tuple(image_sha256(p["image"]) for m in r.messages for p in (m.get("content") or [])
                 if isinstance(p, dict) and p.get("type") == "image")


def encode(backend: HFBackend, reqs: Sequence[GenerationRequest]) -> tuple[Any, list[Ids]]:
    """Encode requests (left-padded, one batch); also each row's unpadded ids and token types."""
    enc = backend.encode([r.messages for r in reqs], tools=reqs[0].tools)
    rows: list[Ids] = []
    for i in range(enc["input_ids"].shape[0]):
        m = enc["attention_mask"][i].bool()
        types = {k: enc[k][i][m].tolist() for k in ("token_type_ids", "mm_token_type_ids") if k in enc}
        rows.append((enc["input_ids"][i][m].tolist(), types))
    return enc, rows


def _cached_row(backend: HFBackend, r: GenerationRequest, seq: Ids) -> _kv.Row | None:
    if r.group is None or backend.prefix_reason is not None:
        return None
    ids, types = seq
    window = backend.window
    if window is not None and 2 * (len(ids) + _WINDOW_MARGIN) + r.max_new_tokens > window - 1:
        return None
    found = backend.prefixes.find(r.group, ids, image_hashes(r), backend.media, min_tokens=backend.prefix_min_tokens)
    if found is None:
        return None
    cached, kv, delta = found
    return _kv.Row(ids, types, kv, cached, delta, max_new=r.max_new_tokens, min_new=r.min_new_tokens)


@dataclass
class Call:
    """One ``model.generate`` call: its requests, inputs, extra kwargs, and the rows whose prefix to keep."""

    reqs: list[GenerationRequest]
    inputs: Any
    extra: dict[str, Any] = field(default_factory=dict)
    rows: list[Ids] = field(default_factory=list)
    hosts: list[int] = field(default_factory=list)


def layout(backend: HFBackend, reqs: list[GenerationRequest]) -> tuple[list[Call], list[list[int]]]:
    """The calls of a set of compatible requests (cached rows together, then plain rows with their images), and
    which of ``reqs`` each call runs."""
    enc, seqs = encode(backend, reqs)
    cached = [(k, row) for k, row in ((k, _cached_row(backend, r, s)) for k, (r, s) in enumerate(zip(reqs, seqs)))
              if row is not None]
    calls: list[tuple[list[int], Call]] = []
    if cached:
        try:
            inputs, extra = _kv.assemble([row for _, row in cached], backend.model, backend.pad_token_id)
            width = int(inputs["input_ids"].shape[1])
            window = backend.window
            if window is not None and len(cached) > 1 and width + reqs[0].max_new_tokens > window - 1:
                raise _kv.NotCacheable("the batch would outgrow the sliding window")
            idx = [k for k, _ in cached]
            calls.append((idx, Call([reqs[k] for k in idx], inputs, extra)))
        except _kv.NotCacheable:
            cached = []
    done = {k for k, _ in cached}
    plain = [k for k in range(len(reqs)) if k not in done]
    if plain:
        sub = [reqs[k] for k in plain]
        p_enc, p_seqs = (enc, seqs) if len(plain) == len(reqs) else encode(backend, sub)
        hosts = [j for j, r in enumerate(sub) if r.group is not None and backend.prefix_reason is None]
        calls.append((plain, Call(sub, p_enc, {}, p_seqs, hosts)))
    return [c for _, c in calls], [i for i, _ in calls]


def processors(backend: HFBackend, call: Call) -> tuple[list[Any], dict[str, Any], GrammarConstraint | None]:
    """Logits processors (steering, grammar, warpers) and ``generate`` kwargs of a call."""
    r0 = call.reqs[0]
    kwargs = sampling_kwargs(r0.sampling)
    if r0.min_new_tokens:
        kwargs["min_new_tokens"] = r0.min_new_tokens
    kwargs.update(r0.options)
    width = int(call.inputs["input_ids"].shape[1])
    procs: list[Any] = []
    specs = [r.steering for r in call.reqs if r.steering is not None and r.steering.active]
    if specs:
        kwargs, warpers = sampling_after_steering(getattr(backend.model, "generation_config", None), kwargs)
        risks = [r.steering.risk if r.steering is not None and r.steering.active else 0.0 for r in call.reqs]
        steer = SteeringLogitsProcessor(specs[0].prototype_logits, risks, width, floor=0.0, softcap=specs[0].softcap)
        procs = [steer, *warpers]
    grammar = None
    if r0.response_format is not None:
        grammar = GrammarConstraint(backend, r0.response_format)
        procs, kwargs = grammar.add_to(procs, kwargs, width)
    if r0.sampling.seed is not None:
        torch.manual_seed(r0.sampling.seed)
    return procs, kwargs, grammar


def keep_prefixes(backend: HFBackend, call: Call, cache: Any) -> None:
    """Keep the prompt prefix (all but the last token) of the call's host rows for their groups."""
    enc = call.inputs
    width = int(enc["input_ids"].shape[1])
    mpos = None
    if _kv.is_mrope(backend.model):
        with torch.inference_mode():
            mpos = _kv.mrope_positions(backend.model, dict(enc))
    for k in call.hosts:
        ids, types = call.rows[k]
        n, pad = len(ids) - 1, width - len(ids)
        if n <= 0:
            continue
        try:
            kv = _kv.harvest(cache, k, pad, stop=pad + n)
        except _kv.NotCacheable:
            continue
        group = call.reqs[k].group
        assert group is not None
        backend.prefixes.add(group, _kv.Prefix(
            ids[:n], {t: v[:n] for t, v in types.items()}, kv, image_hashes(call.reqs[k]),
            None if mpos is None else mpos[1:, k, pad : pad + n].cpu(),
        ))


def results(backend: HFBackend, call: Call, res: Any, grammar: GrammarConstraint | None, seconds: float) -> list[GenerationResult]:
    """The protocol records of a finished call."""
    out = []
    for k, r in enumerate(call.reqs):
        ids, reason = backend.trim(res.sequences[k])
        text = grammar.decode(ids) if grammar is not None else backend.decode(ids)
        text, stopped = cut_at_stop(text, list(r.stop))
        n = r.num_distributions
        logprobs = torch.log_softmax(res.logits[k, :n].float(), dim=-1) if n and res.logits is not None else None
        hidden = res.last_hidden[k, :n] if r.return_hidden and res.last_hidden is not None else None
        out.append(GenerationResult(ids, text, "stop" if stopped else reason, int(res.prompt_tokens[k]), logprobs,
                                    hidden, {"generate": seconds}))
    return out


def run_call(backend: HFBackend, call: Call, **extra: Any) -> tuple[Any, GrammarConstraint | None, float]:
    """Run one call's ``model.generate`` (``extra``: streamer, cancel event)."""
    procs, kwargs, grammar = processors(backend, call)
    r0 = call.reqs[0]
    t0 = time.perf_counter()
    res = backend.run(
        call.inputs, max_new_tokens=r0.max_new_tokens, logits_processors=procs,
        want_logits=r0.num_distributions > 0, want_hidden=r0.return_hidden, want_cache=bool(call.hosts),
        stop=r0.stop, **kwargs, **call.extra, **extra,
    )
    if call.hosts:
        keep_prefixes(backend, call, res.cache)
    return res, grammar, time.perf_counter() - t0


def generate(backend: HFBackend, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
    """Run every request; one result per request, in order."""
    sets: dict[str, list[int]] = {}
    for i, r in enumerate(requests):
        sets.setdefault(_call_key(r), []).append(i)
    out: list[GenerationResult | None] = [None] * len(requests)
    for idx in sets.values():
        for part in _by_prototype(requests, idx):
            calls, where = layout(backend, [requests[i] for i in part])
            for call, rows in zip(calls, where):
                res, grammar, seconds = run_call(backend, call)
                for k, got in zip(rows, results(backend, call, res, grammar, seconds)):
                    out[part[k]] = got
    assert all(o is not None for o in out)
    return out  # type: ignore[return-value]


def _by_prototype(requests: Sequence[GenerationRequest], idx: list[int]) -> list[list[int]]:
    """Split a set so that the steered rows of each part share one prototype tensor (unsteered rows go first)."""
    parts: dict[int, list[int]] = {}
    plain: list[int] = []
    for i in idx:
        s = requests[i].steering
        if s is not None and s.active:
            parts.setdefault(id(s.prototype_logits), []).append(i)
        else:
            plain.append(i)
    groups = list(parts.values()) or [[]]
    groups[0] = sorted(groups[0] + plain)
    return groups
