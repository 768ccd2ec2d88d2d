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

import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ._cache import LRUCache
from ._compat_check import check_calibration as _check_calibration
from ._deadline import with_timeout
from ._limits import PromptLimits
from .backends.protocol import Backend
from .calibration import Calibration
from .config import RASConfig
from .constrained import REFUSAL, make_constraint
from .errors import InvalidMessageError, ModelLoadError
from .messages import Conversation, normalize_messages
from .sampling import request_sampling
from .stages import (
    AnswerOptions,
    StageModel,
    answer,
    answer_requests,
    drive,
    given_assessments,
    release,
    score,
)
from .stages import visual_contexts as _visual_contexts
from .streaming import GuardedStream
from .types import GuardedGeneration, RiskAssessment, is_steered

__all__ = ["BACKENDS", "RASGuard"]

Messages = Sequence[dict[str, Any]]


def _load_hf(path: str | Path, *, device: Any = None, dtype: Any = None) -> Backend:
    from .backends.hf import HFBackend

    return HFBackend.from_pretrained(path, device=device, dtype=dtype)


BACKENDS: dict[str, Callable[..., Backend]] = {"hf": _load_hf}
"""``RASGuard.from_pretrained(..., backend=NAME)``: the loader of each engine (the one place to add one)."""


class RASGuard:
    """A model runtime with its RAS calibration.

    Args:
        model: A :class:`~ras_guard.backends.protocol.Backend`, or a transformers model (wrapped in
            :class:`~ras_guard.backends.hf.HFBackend` with ``processor``).
        processor: The model's processor (vision-language) or tokenizer (text-only); unused with a backend.
        calibration: A :class:`Calibration`, or the folder of one; None allows only ``risk=`` calls and fitting.
        config: Method constants; default: the calibration's (else :class:`RASConfig` defaults).

    Raises:
        CalibrationMismatchError: The calibration was made for another model or configuration.

    Example:
        >>> from ras_guard.testing import FakeBackend
        >>> RASGuard(FakeBackend()).generate([{"role": "user", "content": "hi"}], risk=0.0).steered
        False
    """

    def __init__(
        self,
        model: Any,
        processor: Any = None,
        calibration: Calibration | str | Path | None = None,
        config: RASConfig | None = None,
    ) -> None:
        if isinstance(model, Backend):
            self.backend: Backend = model
        else:
            from .backends.hf import HFBackend

            self.backend = HFBackend(model, processor)
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
        backend: str = "hf",
        device: Any = None,
        dtype: Any = None,
        config: RASConfig | None = None,
    ) -> RASGuard:
        """Load a local checkpoint (and its calibration) on an engine.

        Args:
            model_path: Checkpoint folder, or ``"demo"`` for the bundled synthetic demo model (whose calibration is
                then used when ``calibration`` is None).
            calibration: Calibration folder or object.
            backend: The engine, a key of :data:`BACKENDS` (``"hf"``: transformers, in process).
            device: Torch device; default CUDA when available.
            dtype: ``"auto"``, ``"float32"``, ``"bfloat16"``, a ``torch.dtype``.
            config: Method constants.

        Raises:
            ModelLoadError: Unknown ``backend``, or the checkpoint cannot be loaded.

        Example:
            >>> guard = RASGuard.from_pretrained("/models/llava-1.5-7b-hf", "cal/llava", dtype="bfloat16")  # doctest: +SKIP
        """
        from .demo import resolve

        loader = BACKENDS.get(backend) if isinstance(backend, str) else None
        if loader is None:
            raise ModelLoadError(f"backend {backend!r} is not known; use one of {sorted(BACKENDS)}.")
        model_path, calibration = resolve(model_path, calibration)
        return cls(loader(model_path, device=device, dtype=dtype), calibration=calibration, config=config)

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

    def _stage_model(self, calibration: Calibration | None = None) -> StageModel:
        return StageModel.of(self.config, calibration or self.calibration, self.backend.softcap)

    def _groups(self, n: int) -> list[str | None]:
        """One request group per guard call (its passes may share prompt-prefix caches), or none if disabled."""
        group = uuid.uuid4().hex if self.config.reuse_prefix_cache else None
        return [group] * n

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
        groups = self._groups(len(convs))
        try:
            return self._assess(convs, groups)
        finally:
            release(self.backend, groups)

    def _assess(
        self, convs: Sequence[Conversation], groups: Sequence[str | None] | None = None
    ) -> list[RiskAssessment]:
        """Stages 1 and 2 on the backend."""
        model = self._stage_model()
        model.prototypes()
        if not convs:
            return []
        t0 = time.perf_counter()
        contexts = drive(_visual_contexts(convs, self.config, self._captions, groups), self.backend)  # stage 1
        caption_s = time.perf_counter() - t0
        return drive(score(convs, contexts, model, groups, caption_s=caption_s), self.backend)  # stage 2

    def visual_contexts(self, convs: Sequence[Conversation]) -> tuple[list[str], list[bool], int]:
        """One visual context per conversation (captions of its last turn's images, joined), batch-captioned.

        Captions are cached by image hash, so a conversation that resends an image pays for it once.

        Returns:
            ``(contexts, whether each came entirely from the cache, tokens spent)``.

        Example:
            >>> guard.visual_contexts([guard.normalize(msgs)])[0]  # doctest: +SKIP
            ['The image shows a bomb .']
        """
        ctx = drive(_visual_contexts(convs, self.config, self._captions), self.backend)
        return ctx.texts, ctx.from_cache, ctx.tokens

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
            **generation_kwargs: ``do_sample``, ``temperature``, ``top_p``, ``top_k``, ``seed``,
                ``min_new_tokens`` (see :func:`ras_guard.sampling.request_sampling`); others go to the engine.

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

    def _prepare(
        self,
        batch: Sequence[Messages],
        risks: Sequence[float] | None,
        assessments: Sequence[RiskAssessment] | None,
        *,
        max_new_tokens: int,
        stop: list[str] | None,
        tools: list[dict] | None,
        response_format: Any,
        generation_kwargs: dict[str, Any],
    ) -> tuple[list[Conversation], AnswerOptions]:
        """Validate a call (options, messages, prompt limits) before any pass runs."""
        fmt = make_constraint(response_format, stop)
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise InvalidMessageError(f"max_new_tokens must be an integer >= 1, got {max_new_tokens!r}.")
        sampling, min_new, options = request_sampling(generation_kwargs)
        convs = [self.normalize(m) for m in batch]
        if not convs:
            raise InvalidMessageError("the batch is empty; pass at least one request.")
        self._limits.check(
            convs, max_new_tokens=max_new_tokens, assess=risks is None and assessments is None, tools=tools
        )
        stops = tuple(s for s in (stop or []) if s)
        return convs, AnswerOptions(max_new_tokens, min_new, sampling, stops, tools, fmt, options)

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
        convs, options = self._prepare(
            batch, risks, assessments, max_new_tokens=max_new_tokens, stop=stop, tools=tools,
            response_format=response_format, generation_kwargs=generation_kwargs,
        )
        model = self._stage_model()
        groups = self._groups(len(convs))
        try:
            found = given_assessments(convs, model, risks, assessments)
            if found is None:
                found = self._assess(convs, groups)  # stages 1 and 2
            return drive(answer(convs, found, model, options, groups), self.backend)  # stage 3
        finally:
            release(self.backend, groups)

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
        risks = None if risk is None else [risk]
        given = None if assessment is None else [assessment]
        convs, options = self._prepare(
            [messages], risks, given, max_new_tokens=max_new_tokens, stop=stop, tools=tools,
            response_format=response_format, generation_kwargs=generation_kwargs,
        )
        model = self._stage_model()
        groups = self._groups(1)
        try:
            found = given_assessments(convs, model, risks, given) or self._assess(convs, groups)
            _, requests = answer_requests(convs, found, model, options, groups)
        except BaseException:
            release(self.backend, groups)
            raise
        if not requests:  # refused under a grammar
            release(self.backend, groups)
            return GuardedStream.finished(found[0], REFUSAL)
        steered = is_steered(found[0].risk, self.config.risk_floor)
        try:
            pieces = self.backend.stream(requests[0])
        finally:
            release(self.backend, groups)  # the stream has taken what it needs of its group's prefix
        return GuardedStream(pieces, found[0], steered, list(options.stop))

