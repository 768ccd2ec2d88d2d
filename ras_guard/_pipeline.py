"""The passes of one guarded call, sharing a prompt-prefix KV cache where the model allows it (private).

A :class:`Session` lives for one ``assess`` / ``generate`` / ``stream`` call and is never shared:

1. **Plan.** A request's passes (caption, risk, answer) begin with the same tokens: system prompt, history, user
   header, image tokens. Where the longest common prefix of their token ids holds every image token of the
   passes (and the images are the same ones, compared by hash), the request reuses a prefix cache; otherwise
   (architecture not verified, images after the question, tools with speculation...) it takes the plain path,
   the original batched code.
2. **Prefix.** The request's first pass runs plainly, with its image, and leaves the prefix KV cache behind: the
   caption call (when the caption prompt shares the prefix), else the risk call (caption cached). Requests whose
   caption prompt does not share it (history, system prompt) get it from one ``generate(max_new_tokens=1)``
   over their prefixes. Either way the vision tower runs once per request.
3. **Later passes** continue from a crop of that cache: only their own tail is prefilled, no ``pixel_values``
   are passed; rows of a pass are batched by :func:`ras_guard._kv.assemble`.
4. **Speculative answer** (``RASConfig.speculative_answer``, greedy answers only): the unsteered answer rows ride
   in the caption and risk calls; rows whose risk is under the floor keep their tokens and continue, the others
   restart from the prefix with steering.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import torch

from ._decoding import GREEDY
from .backends.hf import _kv
from .backends.hf._rows import Out, generate_rows
from .messages import Conversation
from .reformulate import caption_messages, clean_caption, reformulated_text
from .risk import apply_softcap
from .types import is_steered

if TYPE_CHECKING:
    from .backends.hf import HFBackend
    from .calibration import Calibration
    from .guard import RASGuard

Ids = tuple[list[int], dict[str, list[int]]]

_SPECULATIVE_KWARGS = frozenset({"do_sample", "num_beams", "temperature", "top_p", "top_k", "min_new_tokens"})


@dataclass
class AnswerSpec:
    """The answer a session will be asked for (lets the plan share the prefix with the answer pass)."""

    max_new_tokens: int
    tools: list[dict] | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)
    speculative: bool = False


@dataclass
class _Spec:
    tokens: list[int]
    row: _kv.Row | None  # continuation, None once ended


def risk_images(conv: Conversation) -> tuple[str, ...]:
    """Hashes of the images the risk pass shows, in token order (earlier turns, then the last turn's)."""
    before = tuple(h for h, o in zip(conv.image_hashes, conv.image_owners) if o < conv.last_user)
    return before + tuple(conv.last_user_image_hashes())


def speculative_allowed(guard: RASGuard, kwargs: dict[str, Any], stop: Sequence[str] | None) -> bool:
    """Speculation needs plain greedy decoding (rows of one call share the decoding settings)."""
    if not guard.config.speculative_answer or stop or set(kwargs) - _SPECULATIVE_KWARGS:
        return False
    gc = getattr(guard.backend.model, "generation_config", None)
    do_sample = kwargs["do_sample"] if "do_sample" in kwargs else getattr(gc, "do_sample", False)
    beams = kwargs["num_beams"] if "num_beams" in kwargs else getattr(gc, "num_beams", 1)
    return not do_sample and (beams or 1) == 1


class Session:
    """Caption, risk and answer passes of one batch of requests (see the module docstring)."""

    def __init__(
        self,
        guard: RASGuard,
        convs: Sequence[Conversation],
        calibration: Calibration | None = None,
        answer: AnswerSpec | None = None,
        *,
        reuse_prefix: bool = True,
    ) -> None:
        self.guard, self.backend, self.cfg = guard, guard.backend, guard.config
        self.convs = list(convs)
        self.cal = calibration or guard.calibration
        self.answer = answer
        self.reason = _kv.prefix_support(self.backend) if self.cfg.reuse_prefix_cache else "disabled in RASConfig"
        if not reuse_prefix:
            self.reason = "not asked for"
        self.hf = cast("HFBackend", guard.backend)  # only used on the prefix path, where it is one
        self.media = _kv.media_token_ids(self.hf.model.config) if self.reason is None else frozenset()
        self.eos = sorted(self.hf.eos_token_ids) if self.reason is None else []
        self.prefixes: dict[int, _kv.Prefix] = {}
        self.hosts: dict[int, tuple[str, int]] = {}  # request -> (caption image, prefix length): from the caption call
        self.risk_hosted: set[int] = set()  # requests whose prefix comes from their (plain) risk call
        self.spec_hosted: set[int] = set()  # requests whose speculative answer row rides the first (plain) call
        self.answer_ids: dict[int, Ids] = {}
        self.spec: dict[int, _Spec] = {}
        self.caption_tokens = 0

    # ------------------------------------------------------------------ helpers
    def encode(self, convs: Sequence[list[dict[str, Any]]], tools: list[dict] | None = None) -> tuple[Any, list[Ids]]:
        """Encode conversations; also return each row's unpadded token ids and token type ids."""
        enc = self.backend.encode(convs, tools=tools)
        rows: list[Ids] = []
        for i in range(enc["input_ids"].shape[0]):
            m = enc["attention_mask"][i].bool()
            types = {k: enc[k][i][m].tolist() for k in ("token_type_ids", "mm_token_type_ids") if k in enc}
            rows.append((enc["input_ids"][i][m].tolist(), types))
        return enc, rows

    def _row(self, i: int, seq: Ids, images: Sequence[str], **budget: Any) -> _kv.Row:
        cached, kv, delta = self.prefixes[i].crop(seq[0], images, self.media)
        return _kv.Row(seq[0], seq[1], kv, cached, delta, **budget)

    def _call(
        self, rows: list[_kv.Row], *, want_logits: bool = False, plain: Any = None, keep: dict[int, int] | None = None
    ) -> list[Out]:
        return generate_rows(
            self.hf, rows, eos=self.eos, floor=self.cfg.risk_floor,
            prototype_logits=None if self.cal is None else self.cal.prototype_logits,
            want_logits=want_logits, plain=plain, keep=keep,
        )

    def _try_first_call(self, convs: list[list[dict[str, Any]]], **kwargs: Any) -> list[Out]:
        """:meth:`_first_call`, or ``[]`` (speculation dropped, plain path) when the rows cannot share a call."""
        try:
            return self._first_call(convs, **kwargs)
        except _kv.NotCacheable:
            self.spec_hosted.clear()
            self.spec.clear()
            self.prefixes.clear()
            return []

    def _first_call(self, convs: list[list[dict[str, Any]]], *, want_logits: bool, **budget: Any) -> list[Out]:
        """A plain call (images included) of one pass's rows plus the speculative answer rows it hosts.

        The answer rows leave their request's prefix (the answer prompt) and a continuation.
        """
        spec = sorted(self.spec_hosted)
        enc, seqs = self.encode(convs + [self.convs[i].as_list() for i in spec])
        deltas = [0] * len(seqs)
        mpos = None
        if _kv.is_mrope(self.hf.model):
            with torch.inference_mode():
                mpos = _kv.mrope_positions(self.hf.model, dict(enc))[1:].cpu()
            width = mpos.shape[-1]
            deltas = [int(mpos[:, k, width - len(s[0]) :].max()) + 1 - len(s[0]) for k, s in enumerate(seqs)]
        a = cast(AnswerSpec, self.answer)
        min_new = int(a.kwargs.get("min_new_tokens") or 0)
        rows = [_kv.Row(ids, types, [], 0, d, lead=True, **budget) for (ids, types), d in zip(seqs[: len(convs)], deltas)]
        rows += [_kv.Row(ids, types, [], 0, d, max_new=a.max_new_tokens, min_new=min_new)
                 for (ids, types), d in zip(seqs[len(convs) :], deltas[len(convs) :])]
        keep = {len(convs) + k: len(seqs[len(convs) + k][0]) - 1 for k in range(len(spec))}
        outs = self._call(rows, want_logits=want_logits, plain=enc, keep=keep)
        width = int(enc["input_ids"].shape[1])
        for k, i in enumerate(spec):
            row, out = rows[len(convs) + k], outs[len(convs) + k]
            n = keep[len(convs) + k]
            pos = None if mpos is None else mpos[:, len(convs) + k, width - len(row.ids) :][:, :n]
            assert out.prefix is not None
            self.prefixes[i] = _kv.Prefix(row.ids[:n], {t: v[:n] for t, v in row.types.items()}, out.prefix,
                                          tuple(self.convs[i].image_hashes), pos)
            self.spec[i] = _Spec(out.tokens, out.row)
        return outs[: len(convs)]

    def _spec_rows(self) -> list[tuple[int, _kv.Row]]:
        """Rows that carry the speculative answers along in the current call."""
        if self.answer is None or not self.answer.speculative:
            return []
        rows = []
        for i in sorted(self.prefixes):
            state = self.spec.get(i)
            if state is None:
                a = self.answer
                budget = {"max_new": a.max_new_tokens, "min_new": int(a.kwargs.get("min_new_tokens") or 0)}
                rows.append((i, self._row(i, self.answer_ids[i], self.convs[i].image_hashes, **budget)))
            elif state.row is not None:
                rows.append((i, state.row))
        return rows

    def _absorb(self, spec_rows: list[tuple[int, _kv.Row]], outs: Sequence[Out]) -> None:
        for (i, _), out in zip(spec_rows, outs):
            prev = self.spec[i].tokens if i in self.spec else []
            self.spec[i] = _Spec(prev + out.tokens, out.row)

    # ------------------------------------------------------------------ plan
    def plan(self, todo: dict[str, Any], caption_ids: dict[str, Ids]) -> None:
        """Choose which requests reuse a prefix cache, and where each prefix will come from.

        Without speculation, the first pass of a request leaves its prefix (its caption call, or its risk call
        when the caption is cached). Otherwise, and for requests whose caption prompt does not share the prefix,
        one ``generate(max_new_tokens=1)`` over the prefixes computes them.
        """
        if self.reason is not None:
            return
        cand = [
            i for i, c in enumerate(self.convs)
            if self.answer is not None or any(h in todo for h in c.last_user_image_hashes())
        ]
        if not cand:
            return
        answers = self.encode([self.convs[i].as_list() for i in cand], self.answer.tools) if self.answer else None
        if answers is not None:
            self.answer_ids = dict(zip(cand, answers[1]))
        window = _kv.sliding_window(self.hf.model.config)
        if window is not None:
            longest = max(len(x[0]) for x in [*(answers[1] if answers else []), *caption_ids.values()]) + 64
            extra = max(self.answer.max_new_tokens if self.answer else 0, self.cfg.caption_max_new_tokens)
            if 2 * (longest + self.cfg.caption_max_new_tokens) + extra > window - 1:
                return
        if self.answer is not None and self.answer.speculative and self.answer.tools is None:
            self.spec_hosted = set(cand)  # the answer rows ride the first call and leave the prefixes
            return
        if self.answer is None or not self.answer.speculative:
            if not todo and self.answer is not None:
                self.risk_hosted = set(cand)
                return
            self.hosts = self._caption_hosts(cand, todo, caption_ids)
            cand = [i for i in cand if i not in self.hosts]
            if not cand:
                return
        self._plan_prefill(cand, todo, caption_ids, answers if answers and len(answers[1]) == len(cand) else None)

    def _plan_prefill(
        self, cand: list[int], todo: dict[str, Any], caption_ids: dict[str, Ids], answers: tuple[Any, list[Ids]] | None
    ) -> None:
        probes = self.encode([
            self.convs[i].with_last_user_text(reformulated_text(self.convs[i].question, "", self.cfg)) for i in cand
        ])
        chosen: list[tuple[int, int, int]] = []  # (request, row in probes, prefix length)
        for j, i in enumerate(cand):
            probe = probes[1][j][0]
            conv = self.convs[i]
            other: list[int] | None = None
            other_images: tuple[str, ...] = ()
            if self.answer is not None:
                other, other_images = self.answer_ids[i][0], conv.image_hashes
            else:
                h = next((h for h in conv.last_user_image_hashes() if h in todo), None)
                if h is not None:
                    other, other_images = caption_ids[h][0], (h,)
            if other is None or risk_images(conv)[: len(other_images)] != other_images:
                continue
            n = min(_kv.common_prefix(probe, other), len(probe) - 1, len(other) - 1)
            media_inside = any(t in self.media for t in probe[:n])
            if any(t in self.media for t in probe[n:] + other[n:]) or (not media_inside and n < self.cfg.prefix_min_tokens):
                continue
            chosen.append((i, j, n))
        if not chosen:
            return
        source = answers if answers is not None else probes  # rows in `cand` order
        if len(chosen) != len(cand):
            keep = [self.convs[i].as_list() if self.answer else self.convs[i].with_last_user_text(
                reformulated_text(self.convs[i].question, "", self.cfg)) for i, _, _ in chosen]
            source = self.encode(keep, self.answer.tools if self.answer else None)
            chosen = [(i, k, n) for k, (i, _, n) in enumerate(chosen)]
        elif self.answer is not None and answers is None:
            source = self.encode([self.convs[i].as_list() for i in cand], self.answer.tools)
        try:
            self._prefill(chosen, source)
        except _kv.NotCacheable:
            self.prefixes.clear()

    def _caption_hosts(
        self, requests: Sequence[int], todo: dict[str, Any], caption_ids: dict[str, Ids]
    ) -> dict[int, tuple[str, int]]:
        """Requests with one image whose caption prompt starts like their other passes: ``{i: (hash, length)}``."""
        hosts = {}
        for i in requests:
            conv = self.convs[i]
            images = risk_images(conv)
            if len(images) != 1 or images[0] not in todo or (self.answer is not None and conv.image_hashes != images):
                continue
            ids = caption_ids[images[0]][0]
            other = self.answer_ids[i][0] if i in self.answer_ids else ids
            n = min(_kv.common_prefix(ids, other), len(ids) - 1, len(other) - 1)
            if any(t in self.media for t in ids[:n]) and not any(t in self.media for t in ids[n:] + other[n:]):
                hosts[i] = (images[0], n)
        return hosts

    def _adopt(self, res: Any, enc: Any, rows: Sequence[Ids], hosted: dict[int, tuple[int, int]]) -> None:
        """Keep the prefix caches of ``{request: (row of the plain call, prefix length)}`` from a finished call."""
        width = int(enc["input_ids"].shape[1])
        mpos = None
        if _kv.is_mrope(self.hf.model):
            with torch.inference_mode():
                mpos = _kv.mrope_positions(self.hf.model, dict(enc))
        for i, (k, n) in hosted.items():
            pad = width - len(rows[k][0])
            try:
                kv = _kv.harvest(res.cache, k, pad, stop=pad + n)
            except _kv.NotCacheable:
                continue
            images = tuple(risk_images(self.convs[i]))
            self.prefixes[i] = _kv.Prefix(
                rows[k][0][:n], {t: v[:n] for t, v in rows[k][1].items()}, kv, images,
                None if mpos is None else mpos[1:, k, pad : pad + n].cpu(),
            )

    def _prefill(self, chosen: list[tuple[int, int, int]], source: tuple[Any, list[Ids]]) -> None:
        enc, rows = source
        model, width = self.hf.model, max(n for _, _, n in chosen)
        b = len(chosen)
        inputs: dict[str, Any] = {k: v for k, v in enc.items() if k not in ("input_ids", "attention_mask")}
        ids = torch.full((b, width), self.hf.pad_token_id, dtype=torch.long)
        mask = torch.zeros((b, width), dtype=torch.long)
        for r, (_, j, n) in enumerate(chosen):
            ids[r, width - n :] = torch.tensor(rows[j][0][:n])
            mask[r, width - n :] = 1
            for k, v in rows[j][1].items():
                if r == 0:
                    inputs[k] = torch.zeros((b, width), dtype=torch.long)
                inputs[k][r, width - n :] = torch.tensor(v[:n])
        device = enc["input_ids"].device
        inputs = {**inputs, "input_ids": ids.to(device), "attention_mask": mask.to(device)}
        inputs = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in inputs.items()}
        extra: dict[str, Any] = {}
        mpos = None
        if _kv.is_mrope(model):
            with torch.inference_mode():
                extra["position_ids"] = mpos = _kv.mrope_positions(model, inputs)
        res = self.backend.generate(inputs, max_new_tokens=1, want_cache=True, **GREEDY, **extra)
        for r, (i, j, n) in enumerate(chosen):
            kv = _kv.harvest(res.cache, r, width - n)
            images = self.convs[i].image_hashes if self.answer is not None else risk_images(self.convs[i])
            self.prefixes[i] = _kv.Prefix(
                rows[j][0][:n], {k: v[:n] for k, v in rows[j][1].items()}, kv, tuple(images),
                None if mpos is None else mpos[1:, r, width - n :].cpu(),
            )

    # ------------------------------------------------------------------ passes
    def captions(self, todo: dict[str, Any], caption_ids: dict[str, Ids], enc: Any) -> dict[str, str]:
        """Captions of ``todo`` images: from prefix caches where possible (with speculative rows), else plain."""
        cfg, out = self.cfg, {}
        cached: list[tuple[str, _kv.Row]] = []
        plain = list(todo)
        if self.prefixes:
            plain = []
            for h in todo:
                row = None
                for i in (i for i in self.prefixes if h in self.convs[i].last_user_image_hashes()):
                    try:
                        row = self._row(i, caption_ids[h], (h,), max_new=cfg.caption_max_new_tokens, lead=True)
                        break
                    except _kv.NotCacheable:
                        continue
                if row is None:
                    plain.append(h)
                else:
                    cached.append((h, row))
        if cached:
            spec = self._spec_rows()
            try:
                outs = self._call([r for _, r in cached] + [r for _, r in spec])
                self._absorb(spec, outs[len(cached):])
                for (h, r), o in zip(cached, outs):
                    ids, _ = self.backend.trim(torch.tensor(o.tokens, dtype=torch.long))
                    out[h] = clean_caption(self.backend.decode(ids))
                    self.caption_tokens += len(r.ids) + len(ids)
            except _kv.NotCacheable:
                plain += [h for h, _ in cached]
                self.spec.clear()
        outs = []
        if plain and self.spec_hosted and not self.spec:
            outs = self._try_first_call([caption_messages(todo[h], cfg) for h in plain], want_logits=False,
                                        max_new=cfg.caption_max_new_tokens)
        if outs:
            for h, o in zip(plain, outs):
                ids, _ = self.backend.trim(torch.tensor(o.tokens, dtype=torch.long))
                out[h] = clean_caption(self.backend.decode(ids))
                self.caption_tokens += len(caption_ids[h][0]) + len(ids)
            plain = []
        if plain:
            rows = [caption_ids[h] for h in plain] if caption_ids else []
            if len(plain) != len(todo):
                enc, rows = self.encode([caption_messages(todo[h], cfg) for h in plain])
            want = bool(self.hosts)
            res = self.backend.generate(enc, max_new_tokens=cfg.caption_max_new_tokens, want_cache=want, **GREEDY)
            for k, h in enumerate(plain):
                ids, _ = self.backend.trim(res.sequences[k])
                out[h] = clean_caption(self.backend.decode(ids))
                self.caption_tokens += res.prompt_tokens[k] + len(ids)
            if want:
                self._adopt(res, enc, rows, {i: (plain.index(h), n) for i, (h, n) in self.hosts.items() if h in plain})
        return out

    def risk(
        self,
        convs_msgs: list[list[dict[str, Any]]],
        owners: Sequence[int] | None = None,
        images: Sequence[tuple[str, ...]] | None = None,
    ) -> tuple[torch.Tensor, list[list[int]], list[int]]:
        """Risk pass: ``([B, N, V] logits, N tokens per row, prompt tokens per row)``.

        Args:
            convs_msgs: One message list per row; row ``i < len(convs)`` is request ``i``'s primary version.
            owners: The request of each row (default: row ``i`` is request ``i``).
            images: The image hashes each row shows, in token order (default: :func:`risk_images`).
        """
        n = self.cfg.num_steer_tokens
        b = len(convs_msgs)
        owner = list(range(b)) if owners is None else list(owners)
        shown = [risk_images(self.convs[o]) for o in owner] if images is None else [tuple(x) for x in images]
        logits: list[torch.Tensor | None] = [None] * b
        tokens: list[list[int]] = [[] for _ in range(b)]
        prompt = [0] * b
        enc, seqs = self.encode(convs_msgs)
        cached: list[tuple[int, _kv.Row]] = []
        for j, i in enumerate(owner):
            if i not in self.prefixes:
                continue
            try:
                row = self._row(i, seqs[j], shown[j], max_new=n, min_new=n, lead=True)
                cached.append((j, row))
            except _kv.NotCacheable:
                pass
        if cached:
            spec = self._spec_rows()
            try:
                outs = self._call([r for _, r in cached] + [r for _, r in spec], want_logits=True)
                self._absorb(spec, outs[len(cached):])
                for (i, r), o in zip(cached, outs):
                    assert o.logits is not None
                    logits[i], tokens[i], prompt[i] = o.logits[:n], o.tokens, len(r.ids)
            except _kv.NotCacheable:
                cached = []
                self.spec.clear()
        plain = [i for i in range(b) if logits[i] is None]
        outs = []
        if plain and self.spec_hosted and not self.spec:
            outs = self._try_first_call([convs_msgs[i] for i in plain], want_logits=True, max_new=n, min_new=n)
        if outs:
            for i, o in zip(plain, outs):
                assert o.logits is not None
                logits[i], tokens[i], prompt[i] = o.logits[:n], o.tokens, len(seqs[i][0])
            plain = []
        if plain:
            rows = seqs
            if len(plain) != b:
                enc, rows = self.encode([convs_msgs[i] for i in plain])
            hosted = self._risk_hosts(plain, rows)
            res = self.backend.generate(
                enc, max_new_tokens=n, min_new_tokens=n, want_logits=True, want_cache=bool(hosted), **GREEDY
            )
            if hosted:
                self._adopt(res, enc, rows, hosted)
            assert res.logits is not None
            for k, i in enumerate(plain):
                logits[i], tokens[i], prompt[i] = res.logits[k], res.sequences[k].tolist(), res.prompt_tokens[k]
        return torch.stack([x.float() for x in logits if x is not None]), tokens, prompt

    def _risk_hosts(self, plain: Sequence[int], rows: Sequence[Ids]) -> dict[int, tuple[int, int]]:
        """Requests whose answer prefix is kept from their plain risk call: ``{i: (row, prefix length)}``."""
        hosted = {}
        for k, i in enumerate(plain):
            if i not in self.risk_hosted or i not in self.answer_ids:
                continue
            ids, answer = rows[k][0], self.answer_ids[i][0]
            n = min(_kv.common_prefix(ids, answer), len(ids) - 1, len(answer) - 1)
            same_images = risk_images(self.convs[i]) == self.convs[i].image_hashes
            if same_images and n > 0 and not any(t in self.media for t in answer[n:]):
                hosted[i] = (k, n)
        return hosted

    # ------------------------------------------------------------------ answer
    def finish_speculative(self, risks: Sequence[float]) -> dict[int, tuple[list[int], int]]:
        """Complete the speculative answers: ``{request: (generated ids, prompt tokens)}``."""
        a = self.answer
        if not self.spec or a is None:
            return {}
        floor = self.cfg.risk_floor
        done: dict[int, tuple[list[int], int]] = {}
        rows: list[tuple[int, _kv.Row]] = []
        try:
            for i, state in self.spec.items():
                prompt = len(self.answer_ids[i][0])
                if is_steered(risks[i], floor):
                    budget = {"max_new": a.max_new_tokens, "min_new": int(a.kwargs.get("min_new_tokens") or 0)}
                    row = self._row(i, self.answer_ids[i], self.convs[i].image_hashes, risk=risks[i], **budget)
                    rows.append((i, row))
                elif state.row is None or state.row.max_new <= 0:
                    done[i] = (state.tokens, prompt)
                else:
                    rows.append((i, state.row))
            outs = self._call([r for _, r in rows]) if rows else []
        except _kv.NotCacheable:
            return {}  # every answer is then generated again by the normal answer pass
        for (i, r), o in zip(rows, outs):
            before = [] if r.risk > 0.0 else self.spec[i].tokens
            done[i] = (before + o.tokens, len(self.answer_ids[i][0]))
        return done

    def answer_inputs(
        self, indices: Sequence[int], max_new_tokens: int
    ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Layout inputs and ``generate`` kwargs for the answer pass of prefix-group requests.

        Raises:
            NotCacheable: The requests cannot continue from their prefixes (the caller encodes them plainly).
        """
        rows = [self._row(i, self.answer_ids[i], self.convs[i].image_hashes) for i in indices]
        inputs, extra = _kv.assemble(rows, self.hf.model, self.hf.pad_token_id)
        window = _kv.sliding_window(self.hf.model.config)
        if window is not None and len(rows) > 1 and inputs["input_ids"].shape[1] + max_new_tokens > window - 1:
            raise _kv.NotCacheable("the batch would outgrow the sliding window")
        return inputs, extra

    def answer_cacheable(self, i: int) -> bool:
        """Whether request ``i``'s answer pass can continue from its prefix cache."""
        return i in self.prefixes and i in self.answer_ids


def prototype(session: Session) -> torch.Tensor:
    """The soft-capped prototype logits of the session's calibration."""
    return apply_softcap(session.guard._prototype_logits(session.cal), session.backend.softcap)
