""":class:`VLLMGuard`: RAS on a vLLM engine, with the transformers guard's API and result types.

Stage 1 captions every distinct image of the batch's last user turns in one greedy engine call (cached by image
hash); stage 2 scores all reformulated queries in one call from their full-vocabulary first-N log-probabilities;
stage 3 answers all original queries in one call, each carrying its own risk to the steering processor. The
formulas are the core's (:mod:`ras_guard.reformulate`, :mod:`ras_guard.risk`); one calibration folder serves
both backends.

Example:
    >>> from ras_guard.backends.vllm import VLLMGuard
    >>> guard = VLLMGuard.from_pretrained("/models/llava-1.5-7b-hf", "cal/llava", dtype="bfloat16")  # doctest: +SKIP
    >>> guard.generate(messages, max_new_tokens=64).steered  # doctest: +SKIP
    True
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..._cache import LRUCache
from ...calibration import Calibration
from ...config import RASConfig
from ...errors import CalibrationError, InvalidMessageError
from ...messages import Conversation, normalize_messages
from ...reformulate import caption_messages, clean_caption, reformulated_text
from ...risk import apply_softcap, risk_from_similarity, similarity
from ...types import GuardedGeneration, RiskAssessment, Usage
from ._steer import CALIBRATION_KEY, RequestSteering
from .engine import VLLMEngine

__all__ = ["VLLMGuard"]

Messages = Sequence[dict[str, Any]]


class VLLMGuard:
    """A vLLM engine with its RAS calibration (assess, generate, generate_batch).

    Args:
        engine: A :class:`VLLMEngine` whose steering processor was configured with this calibration's folder.
        calibration: The calibration (object or folder).
        config: Method constants; default: the calibration's.

    Raises:
        CalibrationMismatchError: The calibration was made for another model or configuration.
        CalibrationError: The engine's steering processor uses a different calibration.
    """

    def __init__(
        self, engine: VLLMEngine, calibration: Calibration | str | Path, config: RASConfig | None = None
    ):
        if isinstance(calibration, (str, Path)):
            calibration = Calibration.load(calibration)
        self.engine = engine
        self.config = config or calibration.config()
        calibration.check_compatible(engine.fingerprint(), self.config)
        extra = engine.llm.llm_engine.vllm_config.additional_config or {}
        steering_dir = extra.get(CALIBRATION_KEY) if isinstance(extra, dict) else None
        if (
            steering_dir is None
            or Calibration.load(steering_dir).calibration_id != calibration.calibration_id
        ):
            raise CalibrationError(
                f"the engine's steering processor uses calibration {steering_dir!r}, not {calibration.calibration_id}; "
                "build the engine with VLLMGuard.from_pretrained or VLLMEngine.from_pretrained(path, same_folder)."
            )
        self.calibration = calibration
        self._captions = LRUCache(self.config.caption_cache_size)

    @classmethod
    def from_pretrained(
        cls,
        model_path: str | Path,
        calibration: str | Path,
        *,
        config: RASConfig | None = None,
        **engine_args: Any,
    ) -> VLLMGuard:
        """Start a vLLM engine on a checkpoint with the steering processor and the calibration folder.

        Args:
            model_path: Local checkpoint folder.
            calibration: Calibration folder (``Calibration.save`` writes one).
            config: Method constants.
            **engine_args: Passed to ``vllm.LLM`` (``dtype``, ``max_model_len``, ``gpu_memory_utilization``...).
        """
        return cls(VLLMEngine.from_pretrained(model_path, calibration, **engine_args), calibration, config)

    @property
    def model_name(self) -> str:
        """The checkpoint the engine serves."""
        return self.engine.name

    def normalize(self, messages: Messages) -> Conversation:
        """Validate messages and decode their images under this guard's limits."""
        return normalize_messages(
            messages,
            max_pixels=self.config.max_image_pixels,
            max_bytes=self.config.max_image_bytes,
            allow_images=self.engine.is_multimodal,
        )

    # ----------------------------------------------------------------- stage 1 and 2
    def _contexts(self, convs: Sequence[Conversation]) -> tuple[list[str], list[bool], int]:
        cfg = self.config
        key = (cfg.caption_prompt, cfg.caption_max_new_tokens)
        found: dict[str, str] = {}
        todo: dict[str, Any] = {}
        for conv in convs:
            for h, img in zip(conv.last_user_image_hashes(), conv.last_user_images()):
                cached = found.get(h) or self._captions.get((h, *key))
                if cached is not None:
                    found[h] = cached
                elif h not in todo:
                    todo[h] = img
        spent = 0
        if todo:
            done = self.engine.complete(
                [caption_messages(img, cfg) for img in todo.values()], max_tokens=cfg.caption_max_new_tokens
            )
            for h, c in zip(todo, done):
                found[h] = clean_caption(self.engine.decode(c.token_ids))
                self._captions.put((h, *key), found[h])
                spent += c.prompt_tokens + len(c.token_ids)
        contexts = [" ".join(found[h] for h in c.last_user_image_hashes()) for c in convs]
        from_cache = [all(h not in todo for h in c.last_user_image_hashes()) for c in convs]
        return contexts, from_cache, spent

    def _assess(self, convs: Sequence[Conversation]) -> list[RiskAssessment]:
        cfg, cal, n = self.config, self.calibration, self.config.num_steer_tokens
        proto = apply_softcap(cal.prototype_logits, self.engine.softcap)
        t0 = time.perf_counter()
        contexts, from_cache, caption_tokens = self._contexts(convs)
        t1 = time.perf_counter()
        texts = [reformulated_text(c.question, vc, cfg) for c, vc in zip(convs, contexts)]
        logprobs, tokens, prompt = self.engine.first_step_logprobs(
            [c.with_last_user_text(t) for c, t in zip(convs, texts)], n
        )
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
                    risk_tokens=self.engine.decode(tokens[i]),
                    timings=dict(timings),
                    calibration_id=cal.calibration_id,
                    image_sha256=conv.image_hashes,
                    cached_caption=from_cache[i] and bool(conv.last_user_image_hashes()),
                    guard_tokens=prompt[i] + n + (caption_tokens if i == 0 else 0),
                )
            )
        return out

    def assess(self, messages: Messages) -> RiskAssessment:
        """Score one request: visual context, reformulated risk pass, similarity and risk."""
        return self.assess_batch([messages])[0]

    def assess_batch(self, batch: Sequence[Messages]) -> list[RiskAssessment]:
        """Score several requests; captions and risk passes each run as one engine call."""
        return self._assess([self.normalize(m) for m in batch])

    # ----------------------------------------------------------------- stage 3
    def _resolve(
        self,
        convs: Sequence[Conversation],
        risks: Sequence[float] | None,
        assessments: Sequence[RiskAssessment] | None,
    ) -> list[RiskAssessment]:
        if risks is not None:
            if len(risks) != len(convs):
                raise InvalidMessageError(
                    f"got {len(risks)} risks for {len(convs)} requests; pass one per request."
                )
            bad = [r for r in risks if isinstance(r, bool) or not 0.0 <= float(r) <= 1.0]
            if bad:
                raise InvalidMessageError(f"risk must lie in [0, 1], got {bad[0]!r}.")
            return [
                RiskAssessment(
                    risk=float(r),
                    similarity=float("nan"),
                    visual_context="",
                    reformulated_prompt="",
                    calibration_id=self.calibration.calibration_id,
                    image_sha256=c.image_hashes,
                    given=True,
                )
                for r, c in zip(risks, convs)
            ]
        if assessments is not None:
            if len(assessments) != len(convs):
                raise InvalidMessageError(f"got {len(assessments)} assessments for {len(convs)} requests.")
            return list(assessments)
        return self._assess(convs)

    def generate(
        self,
        messages: Messages,
        *,
        max_new_tokens: int = 256,
        risk: float | None = None,
        assessment: RiskAssessment | None = None,
        **sampling: Any,
    ) -> GuardedGeneration:
        """Answer the original request, steering its first N tokens by the assessed risk.

        Args:
            messages: Chat messages (see :mod:`ras_guard.messages`).
            max_new_tokens: Answer length limit.
            risk: Skip the assessment and steer with this risk.
            assessment: Reuse an assessment computed earlier for these messages.
            **sampling: ``vllm.SamplingParams`` fields (``temperature``, ``top_p``, ``seed``...); greedy by default.
        """
        return self.generate_batch(
            [messages],
            max_new_tokens=max_new_tokens,
            risks=None if risk is None else [risk],
            assessments=None if assessment is None else [assessment],
            **sampling,
        )[0]

    def generate_batch(
        self,
        batch: Sequence[Messages],
        *,
        max_new_tokens: int = 256,
        risks: Sequence[float] | None = None,
        assessments: Sequence[RiskAssessment] | None = None,
        **sampling: Any,
    ) -> list[GuardedGeneration]:
        """Assess and answer several requests; every row is steered by its own risk, in one engine call."""
        convs = [self.normalize(m) for m in batch]
        found = self._resolve(convs, risks, assessments)
        floor = self.config.risk_floor
        t0 = time.perf_counter()
        done = self.engine.complete(
            [c.as_list() for c in convs],
            max_tokens=max_new_tokens,
            risks=[a.risk for a in found],
            floor=floor,
            **sampling,
        )
        answer_s = time.perf_counter() - t0
        return [
            GuardedGeneration(
                text=self.engine.decode(c.token_ids),
                token_ids=c.token_ids,
                assessment=a,
                steered=RequestSteering(a.risk, floor).steered,
                usage=Usage(c.prompt_tokens, len(c.token_ids), a.guard_tokens),
                finish_reason=c.finish_reason,
                timings={**{f"assess_{k}": v for k, v in a.timings.items()}, "answer": answer_s},
            )
            for a, c in zip(found, done)
        ]
