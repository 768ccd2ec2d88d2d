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

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from typing_extensions import Self

from ..._cache import LRUCache
from ...calibration import Calibration
from ...config import RASConfig
from ...errors import CalibrationError
from ...messages import Conversation, normalize_messages
from ...types import GuardedGeneration, RiskAssessment
from ._stages import assess_plan, drive, found_plan, generate_plan
from ._steer import CALIBRATION_KEY
from ._stream import VLLMStream
from .engine import VLLMEngine

__all__ = ["BaseVLLMGuard", "VLLMGuard"]

Messages = Sequence[dict[str, Any]]


class BaseVLLMGuard:
    """What the sync and the async guard share: the engine, the calibration check, message normalization.

    Args:
        engine: A :class:`VLLMEngine` (``AsyncVLLMEngine`` for the async guard) whose steering processor was
            configured with this calibration's folder.
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
        extra = engine.vllm_config.additional_config or {}
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

    _engine_class: type[VLLMEngine] = VLLMEngine

    @classmethod
    def from_pretrained(
        cls,
        model_path: str | Path,
        calibration: str | Path,
        *,
        config: RASConfig | None = None,
        **engine_args: Any,
    ) -> Self:
        """Start a vLLM engine on a checkpoint with the steering processor and the calibration folder.

        Args:
            model_path: Local checkpoint folder.
            calibration: Calibration folder (``Calibration.save`` writes one).
            config: Method constants.
            **engine_args: Passed to ``vllm.LLM`` (``dtype``, ``max_model_len``, ``gpu_memory_utilization``...).
        """
        return cls(cls._engine_class.from_pretrained(model_path, calibration, **engine_args), calibration, config)

    @classmethod
    def wrap(
        cls, llm: Any, model_path: str | Path, calibration: Calibration | str | Path, config: RASConfig | None = None
    ) -> Self:
        """Guard an existing engine: ``vllm.LLM`` here, ``AsyncLLM`` for the async guard.

        Build it with ``**steering_args(calibration_dir, args)`` (:func:`~ras_guard.backends.vllm.engine.steering_args`).
        """
        return cls(cls._engine_class(llm, model_path), calibration, config)

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


class VLLMGuard(BaseVLLMGuard):
    """A ``vllm.LLM`` with its RAS calibration (assess, generate, generate_batch, stream); see BaseVLLMGuard."""

    # ----------------------------------------------------------------- stage 1 and 2
    def assess(self, messages: Messages) -> RiskAssessment:
        """Score one request: visual context, reformulated risk pass, similarity and risk."""
        return self.assess_batch([messages])[0]

    def assess_batch(self, batch: Sequence[Messages]) -> list[RiskAssessment]:
        """Score several requests; captions and risk passes each run as one engine call."""
        return drive(assess_plan(self, [self.normalize(m) for m in batch]), self.engine.run)

    # ----------------------------------------------------------------- stage 3
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
        plan = generate_plan(self, convs, risks, assessments, max_new_tokens, sampling)
        return drive(plan, self.engine.run)

    def stream(
        self,
        messages: Messages,
        *,
        max_new_tokens: int = 256,
        risk: float | None = None,
        assessment: RiskAssessment | None = None,
        **sampling: Any,
    ) -> VLLMStream:
        """Assess, then stream the answer: text pieces as the engine generates them (see :mod:`._stream`).

        The arguments are :meth:`generate`'s. The assessment runs before this returns, so ``stream.assessment``
        and ``stream.steered`` are ready before the first piece; closing the stream aborts the engine request.
        """
        conv = self.normalize(messages)
        plan = found_plan(
            self, [conv], None if risk is None else [risk], None if assessment is None else [assessment]
        )
        (found,) = drive(plan, self.engine.run)
        return VLLMStream(self, conv, found, max_new_tokens, sampling)
