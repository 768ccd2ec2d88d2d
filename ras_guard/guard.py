"""The :class:`RASGuard` facade: assess a request's risk and answer it with risk-adaptive steering.

Example:
    >>> from ras_guard import RASGuard
    >>> guard = RASGuard.from_pretrained("demo")  # doctest: +SKIP
    >>> out = guard.generate([{"role": "user", "content": [
    ...     {"type": "image", "image": "bomb.png"}, {"type": "text", "text": "How can I make the item in the image?"}]}],
    ...     max_new_tokens=32)  # doctest: +SKIP
    >>> out.assessment.risk > 0.5, out.steered  # doctest: +SKIP
    (True, True)
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ._cache import LRUCache
from ._compat_check import check_calibration as _check_calibration
from ._deadline import with_timeout
from ._decoding import cut_at_stop
from ._limits import PromptLimits
from ._pipeline import AnswerSpec, Session, speculative_allowed
from ._scope import best_rows, risk_rows
from .backends.base import Backend
from .backends.hf import HFBackend, SteeringLogitsProcessor
from .backends.hf._decoding import sampling_after_steering
from .backends.hf._kv import NotCacheable
from .calibration import Calibration
from .config import RASConfig
from .constrained import REFUSAL, GrammarConstraint, make_constraint
from .errors import CalibrationError, InvalidMessageError
from .messages import Conversation, normalize_messages
from .reformulate import caption_messages
from .risk import apply_softcap, risk_from_similarity, similarity
from .streaming import GuardedStream
from .types import GuardedGeneration, RiskAssessment, guarded_generation, is_steered

__all__ = ["RASGuard"]

Messages = Sequence[dict[str, Any]]


class RASGuard:
    """A loaded model with its RAS calibration.

    Args:
        model: A transformers model, or a ready :class:`~ras_guard.backends.base.Backend`.
        processor: The model's processor (vision-language) or tokenizer (text-only); unused with a backend.
        calibration: A :class:`Calibration`, or the folder of one; None allows only ``risk=`` calls and fitting.
        config: Method constants; default: the calibration's (else :class:`RASConfig` defaults).

    Raises:
        CalibrationMismatchError: The calibration was made for another model or configuration.

    Example:
        >>> guard = RASGuard(model, processor, "calibration/")  # doctest: +SKIP
    """

    def __init__(
        self,
        model: Any,
        processor: Any = None,
        calibration: Calibration | str | Path | None = None,
        config: RASConfig | None = None,
    ) -> None:
        self.backend: Backend = model if isinstance(model, Backend) else HFBackend(model, processor)
        if isinstance(calibration, (str, Path)):
            calibration = Calibration.load(calibration)
        self.config: RASConfig = config or (calibration.config() if calibration else RASConfig())
        if calibration is not None:
            _check_calibration(calibration, self.backend, self.config)
        self.calibration: Calibration | None = calibration
        self._captions = LRUCache(self.config.caption_cache_size)
        self._limits = PromptLimits(self)

    @classmethod
    def from_pretrained(
        cls,
        model_path: str | Path,
        calibration: Calibration | str | Path | None = None,
        *,
        device: Any = None,
        dtype: Any = None,
        config: RASConfig | None = None,
    ) -> RASGuard:
        """Load a local checkpoint (and its calibration) through transformers' Auto classes.

        Args:
            model_path: Checkpoint folder, or ``"demo"`` for the bundled synthetic demo model (whose calibration is
                then used when ``calibration`` is None).
            calibration: Calibration folder or object.
            device: Torch device; default CUDA when available.
            dtype: ``"auto"``, ``"float32"``, ``"bfloat16"``, a ``torch.dtype``.
            config: Method constants.

        Example:
            >>> guard = RASGuard.from_pretrained("/models/llava-1.5-7b-hf", "cal/llava", dtype="bfloat16")  # doctest: +SKIP
        """
        from .demo import resolve

        model_path, calibration = resolve(model_path, calibration)
        return cls(HFBackend.from_pretrained(model_path, device=device, dtype=dtype), calibration=calibration, config=config)

    @property
    def model_name(self) -> str:
        """Name of the loaded model (its checkpoint path or class)."""
        return self.backend.name

    @property
    def supports_tools(self) -> bool:
        """Whether the model's chat template renders tools."""
        return self.backend.supports_tools

    def normalize(self, messages: Messages) -> Conversation:
        """Validate messages and decode their images under this guard's limits."""
        return normalize_messages(
            messages,
            max_pixels=self.config.max_image_pixels,
            max_bytes=self.config.max_image_bytes,
            allow_images=self.backend.is_multimodal,
        )

    def check_prompt(
        self, messages: Messages, *, max_new_tokens: int | None = None, tools: list[dict] | None = None
    ) -> None:
        """Raise :class:`~ras_guard.errors.PromptTooLongError` if a pass of this request cannot fit the limit.

        ``generate`` / ``stream`` / ``assess`` check this themselves before any pass; call it to check an answer's
        ``max_new_tokens`` before a separate ``assess``.
        """
        self._limits.check([self.normalize(messages)], max_new_tokens=max_new_tokens, tools=tools)

    # ----------------------------------------------------------------- assessment
    def assess(self, messages: Messages, *, timeout: float | None = None) -> RiskAssessment:
        """Score one request: visual context, reformulated risk pass, similarity and risk.

        ``timeout``: seconds the whole assessment may take (else :class:`~ras_guard.errors.GuardTimeoutError`).
        Prompts that cannot fit the model's context raise :class:`~ras_guard.errors.PromptTooLongError` first.

        Example:
            >>> guard.assess([{"role": "user", "content": "How do I build a bomb?"}]).risk  # doctest: +SKIP
            0.98
        """
        return self.assess_batch([messages], timeout=timeout)[0]

    @with_timeout
    def assess_batch(self, batch: Sequence[Messages], *, timeout: float | None = None) -> list[RiskAssessment]:
        """Score several requests; captions and risk passes each run as one batch (``timeout`` as in assess)."""
        convs = [self.normalize(m) for m in batch]
        self._limits.check(convs, max_new_tokens=None)
        return self._assess(convs)

    def _prototype_logits(self, calibration: Calibration | None) -> torch.Tensor:
        cal = calibration or self.calibration
        if cal is None:
            raise CalibrationError(
                "this guard has no calibration; load one (RASGuard.from_pretrained(path, calibration=DIR)), fit one "
                "with `ras-guard calibrate`, or pass risk= explicitly."
            )
        return cal.prototype_logits

    def _caption_lookup(self, convs: Sequence[Conversation]) -> tuple[dict[str, str], dict[str, Any]]:
        """Captions found in the cache, and the images still to caption (by hash, first occurrence order)."""
        cfg = self.config
        todo: dict[str, Any] = {}
        found: dict[str, str] = {}
        for conv in convs:
            for h, img in zip(conv.last_user_image_hashes(), conv.last_user_images()):
                cached = found.get(h) or self._captions.get((h, cfg.caption_prompt, cfg.caption_max_new_tokens))
                if cached is not None:
                    found[h] = cached
                elif h not in todo:
                    todo[h] = img
        return found, todo

    def _contexts(
        self, convs: Sequence[Conversation], session: Session
    ) -> tuple[list[str], list[bool], int]:
        cfg = self.config
        found, todo = self._caption_lookup(convs)
        enc, ids = None, {}
        if todo:
            enc, rows = session.encode([caption_messages(todo[h], cfg) for h in todo])
            ids = dict(zip(todo, rows))
        session.plan(todo, ids)
        if todo:
            made = session.captions(todo, ids, enc)
            for h, text in made.items():
                self._captions.put((h, cfg.caption_prompt, cfg.caption_max_new_tokens), text)
            found.update(made)
        contexts = [" ".join(found[h] for h in c.last_user_image_hashes()) for c in convs]
        from_cache = [all(h not in todo for h in c.last_user_image_hashes()) for c in convs]
        return contexts, from_cache, session.caption_tokens

    def visual_contexts(self, convs: Sequence[Conversation]) -> tuple[list[str], list[bool], int]:
        """One visual context per conversation (captions of its last turn's images, joined), batch-captioned.

        Captions are cached by image hash, so a conversation that resends an image pays for it once.

        Returns:
            ``(contexts, whether each came entirely from the cache, tokens spent)``.

        Example:
            >>> guard.visual_contexts([guard.normalize(msgs)])[0]  # doctest: +SKIP
            ['The image shows a bomb .']
        """
        return self._contexts(convs, Session(self, convs, reuse_prefix=False))

    def _assess(
        self,
        convs: Sequence[Conversation],
        calibration: Calibration | None = None,
        session: Session | None = None,
    ) -> list[RiskAssessment]:
        session = session or Session(self, convs, calibration)
        cal = session.cal
        proto = apply_softcap(self._prototype_logits(cal), self.backend.softcap)
        cfg, n = self.config, self.config.num_steer_tokens
        t0 = time.perf_counter()
        contexts, from_cache, caption_tokens = self._contexts(convs, session)
        t1 = time.perf_counter()
        rows = risk_rows(convs, contexts, cfg)
        logits, tokens, prompt = session.risk(
            [r.messages for r in rows], [r.owner for r in rows], [r.images for r in rows]
        )
        sims = similarity(logits, proto, cfg.gamma).tolist()
        t2 = time.perf_counter()
        timings = {"caption": t1 - t0, "risk": t2 - t1, "total": t2 - t0}
        for j, s in enumerate(sims):
            if not math.isfinite(s):
                raise CalibrationError(
                    f"similarity is {s} for request {rows[j].owner}; the model produced non-finite logits."
                )
        risks = [risk_from_similarity(s, s_base=cal.s_base, alpha=cal.alpha) for s in sims]
        best = best_rows(rows, risks)
        spent = [0] * len(convs)
        for j, r in enumerate(rows):
            spent[r.owner] += prompt[j] + n
        out = []
        for i, conv in enumerate(convs):
            j = best[i]
            out.append(
                RiskAssessment(
                    risk=risks[j],
                    similarity=float(sims[j]),
                    visual_context=contexts[i],
                    reformulated_prompt=rows[j].text,
                    risk_tokens=self.backend.decode(tokens[j]),
                    timings=dict(timings),
                    calibration_id=cal.calibration_id,
                    image_sha256=conv.image_hashes,
                    cached_caption=from_cache[i] and bool(conv.last_user_image_hashes()),
                    guard_tokens=spent[i] + (caption_tokens if i == 0 else 0),
                )
            )
        return out

    # ----------------------------------------------------------------- generation
    def generate(
        self,
        messages: Messages,
        *,
        max_new_tokens: int = 256,
        risk: float | None = None,
        assessment: RiskAssessment | None = None,
        stop: list[str] | None = None,
        tools: list[dict] | None = None,
        response_format: Any = None,
        timeout: float | None = None,
        **generation_kwargs: Any,
    ) -> GuardedGeneration:
        """Answer the original request, steering its first N tokens by the assessed risk.

        Args:
            messages: Chat messages (see :mod:`ras_guard.messages`).
            max_new_tokens: Answer length limit.
            risk: Skip the assessment and steer with this risk.
            assessment: Reuse an assessment computed earlier for these messages.
            stop: Stop strings; the answer is cut before the first one.
            tools: JSON-schema tool definitions rendered by the chat template.
            response_format: Constrain the answer to JSON (``{"type": "json_object"}``) or to a JSON schema
                (``{"type": "json_schema", "json_schema": {"schema": {...}}}`` or a pydantic class); a row whose
                risk would steer it is refused instead (``finish_reason="refusal"``). See :mod:`ras_guard.constrained`.
            timeout: Seconds the whole call (caption, risk and answer passes) may take; past it the running pass
                stops at the next token and :class:`~ras_guard.errors.GuardTimeoutError` is raised.
            **generation_kwargs: Passed to ``model.generate`` (``do_sample``, ``temperature``...).

        Raises:
            PromptTooLongError: The prompt plus ``max_new_tokens`` cannot fit the model's context (or
                ``RASConfig.max_prompt_tokens``); checked before any pass runs.
            GuardTimeoutError: ``timeout`` passed.

        Example:
            >>> guard.generate(msgs, max_new_tokens=64).text  # doctest: +SKIP
            "I am sorry , but I cannot help with that request ."
        """
        return self.generate_batch(
            [messages], max_new_tokens=max_new_tokens, risks=None if risk is None else [risk],
            assessments=None if assessment is None else [assessment], stop=stop, tools=tools,
            response_format=response_format, timeout=timeout, **generation_kwargs,
        )[0]

    def _resolve_assessments(
        self,
        convs: Sequence[Conversation],
        risks: Sequence[float] | None,
        assessments: Sequence[RiskAssessment] | None,
    ) -> list[RiskAssessment]:
        if risks is not None:
            if len(risks) != len(convs):
                raise InvalidMessageError(f"got {len(risks)} risks for {len(convs)} requests; pass one per request.")
            bad = [r for r in risks if not 0.0 <= float(r) <= 1.0]
            if bad:
                raise InvalidMessageError(f"risk must lie in [0, 1], got {bad[0]!r}.")
            cid = self.calibration.calibration_id if self.calibration else ""
            return [
                RiskAssessment(risk=float(r), similarity=float("nan"), visual_context="", reformulated_prompt="",
                               calibration_id=cid, image_sha256=c.image_hashes, given=True)
                for r, c in zip(risks, convs)
            ]
        if assessments is not None:
            if len(assessments) != len(convs):
                raise InvalidMessageError(f"got {len(assessments)} assessments for {len(convs)} requests.")
            return list(assessments)
        return self._assess(convs)

    def _steering(
        self, values: Sequence[float], prompt_length: int, generation_kwargs: dict[str, Any]
    ) -> tuple[list[Any], dict[str, Any]]:
        """The steering processor (plus re-ordered sampling warpers) for one answer call, or none at all."""
        kwargs = dict(generation_kwargs)
        if not any(is_steered(r, self.config.risk_floor) for r in values):
            return [], kwargs
        if self.calibration is None:
            self._prototype_logits(None)  # raises a clear error
        kwargs, warpers = sampling_after_steering(getattr(self.backend.model, "generation_config", None), kwargs)
        steer = SteeringLogitsProcessor(
            self.calibration.prototype_logits, values, prompt_length,
            floor=self.config.risk_floor, softcap=self.backend.softcap,
        )
        return [steer, *warpers], kwargs

    def _prepare(
        self,
        batch: Sequence[Messages],
        risks: Sequence[float] | None,
        assessments: Sequence[RiskAssessment] | None,
        tools: list[dict] | None,
        generation_kwargs: dict[str, Any],
        *,
        max_new_tokens: int,
        speculative: bool,
        constraint: GrammarConstraint | None = None,
    ) -> tuple[list[RiskAssessment], list[_AnswerCall], dict[int, tuple[list[int], int]], float]:
        """Assess (sharing the prompt prefix with the answer) and lay out the answer calls still to run.

        Returns:
            ``(assessments, answer calls, answers already finished speculatively, seconds they took)``.
        """
        convs = [self.normalize(m) for m in batch]
        if not convs:
            raise InvalidMessageError("the batch is empty; pass at least one request.")
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise InvalidMessageError(f"max_new_tokens must be an integer >= 1, got {max_new_tokens!r}.")
        self._limits.check(
            convs, max_new_tokens=max_new_tokens, assess=risks is None and assessments is None, tools=tools
        )
        session: Session | None = None
        done: dict[int, tuple[list[int], int]] = {}
        spec_s = 0.0
        if risks is None and assessments is None:
            spec = speculative and constraint is None and speculative_allowed(self, generation_kwargs, None)
            session = Session(self, convs, answer=AnswerSpec(max_new_tokens, tools, dict(generation_kwargs), spec))
            found = self._assess(convs, session=session)
            t0 = time.perf_counter()
            done = session.finish_speculative([a.risk for a in found])
            spec_s = time.perf_counter() - t0
        else:
            found = self._resolve_assessments(convs, risks, assessments)
        rest = [i for i in range(len(convs)) if i not in done]
        if constraint is not None:  # fail closed: a row that would be steered is refused, not constrained
            rest = [i for i in rest if not is_steered(found[i].risk, self.config.risk_floor)]
        cached = [i for i in rest if session is not None and session.answer_cacheable(i)]
        laid_out: list[tuple[list[int], Any, dict[str, Any]]] = []
        if cached:
            try:
                laid_out.append((cached, *session.answer_inputs(cached, max_new_tokens)))
            except NotCacheable:
                cached = []
        plain = [i for i in rest if i not in cached]
        if plain:
            laid_out.append((plain, self.backend.encode([convs[i].as_list() for i in plain], tools=tools), {}))
        calls = []
        for idx, inputs, extra in laid_out:
            values = [found[i].risk for i in idx]
            processors, kwargs = self._steering(values, int(inputs["input_ids"].shape[1]), generation_kwargs)
            if constraint is not None:
                processors, kwargs = constraint.add_to(processors, kwargs, int(inputs["input_ids"].shape[1]))
            steered = [bool(processors) and is_steered(r, self.config.risk_floor) for r in values]
            calls.append(_AnswerCall(idx, inputs, processors, {**kwargs, **extra}, steered))
        return found, calls, done, spec_s

    @with_timeout
    def generate_batch(
        self,
        batch: Sequence[Messages],
        *,
        max_new_tokens: int = 256,
        risks: Sequence[float] | None = None,
        assessments: Sequence[RiskAssessment] | None = None,
        stop: list[str] | None = None,
        tools: list[dict] | None = None,
        response_format: Any = None,
        timeout: float | None = None,
        **generation_kwargs: Any,
    ) -> list[GuardedGeneration]:
        """Answer several requests in one batch, each steered by its own risk (arguments as in :meth:`generate`).

        Example:
            >>> outs = guard.generate_batch([benign_msgs, harmful_msgs], max_new_tokens=32)  # doctest: +SKIP
            >>> [o.steered for o in outs]  # doctest: +SKIP
            [False, True]
        """
        constraint = make_constraint(self.backend, response_format, stop)
        found, calls, done, spec_s = self._prepare(
            batch, risks, assessments, tools, generation_kwargs, max_new_tokens=max_new_tokens,
            speculative=not stop, constraint=constraint,
        )
        floor = self.config.risk_floor
        rows: dict[int, tuple[list[int], str, int, bool, float]] = {}
        if constraint is not None:
            rows.update({i: ([], REFUSAL, 0, True, 0.0) for i, a in enumerate(found) if is_steered(a.risk, floor)})
        for i, (ids, prompt) in done.items():
            kept, reason = self.backend.trim(torch.tensor(ids[:max_new_tokens], dtype=torch.long))
            rows[i] = (kept, reason, prompt, is_steered(found[i].risk, floor), spec_s)
        for call in calls:
            kwargs = dict(call.kwargs)
            t0 = time.perf_counter()
            res = self.backend.generate(
                call.inputs, max_new_tokens=max_new_tokens, logits_processors=call.processors, stop=stop or (), **kwargs
            )
            answer_s = time.perf_counter() - t0
            for k, i in enumerate(call.indices):
                kept, reason = self.backend.trim(res.sequences[k])
                rows[i] = (kept, reason, res.prompt_tokens[k], call.steered[k], answer_s)
        outs = []
        for i, a in enumerate(found):
            ids, reason, prompt, steered, answer_s = rows[i]
            text, stopped = cut_at_stop(constraint.decode(ids) if constraint else self.backend.decode(ids), stop)
            outs.append(guarded_generation(
                text, ids, a, steered=steered, prompt_tokens=prompt, finish_reason="stop" if stopped else reason,
                answer_s=answer_s,
            ))
        return outs

    @with_timeout
    def stream(
        self,
        messages: Messages,
        *,
        max_new_tokens: int = 256,
        risk: float | None = None,
        assessment: RiskAssessment | None = None,
        stop: list[str] | None = None,
        tools: list[dict] | None = None,
        response_format: Any = None,
        timeout: float | None = None,
        **generation_kwargs: Any,
    ) -> GuardedStream:
        """Start a guarded answer and stream its text; the assessment is ready before this returns.

        Arguments as in :meth:`generate`; ``timeout`` also bounds the streamed answer (iterating raises
        :class:`~ras_guard.errors.GuardTimeoutError` once it has passed).

        Example:
            >>> s = guard.stream(msgs, max_new_tokens=64)  # doctest: +SKIP
            >>> print(s.assessment.risk); print("".join(s))  # doctest: +SKIP
        """
        constraint = make_constraint(self.backend, response_format, stop)
        found, calls, _, _ = self._prepare(
            [messages], None if risk is None else [risk], None if assessment is None else [assessment], tools,
            generation_kwargs, max_new_tokens=max_new_tokens, speculative=False, constraint=constraint,
        )
        if not calls:  # refused under a grammar
            return GuardedStream.finished(self.backend, found[0], REFUSAL)
        call = calls[0]
        return GuardedStream(
            self.backend, call.inputs, found[0], call.steered[0], call.processors, max_new_tokens, stop, call.kwargs,
            decoder=constraint,
        )


@dataclass
class _AnswerCall:
    """One answer ``generate`` call still to run: its requests, inputs, processors and kwargs."""

    indices: list[int]
    inputs: Any
    processors: list[Any]
    kwargs: dict[str, Any]
    steered: list[bool]
