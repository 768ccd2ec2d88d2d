""":class:`AsyncVLLMGuard`: RAS on ``vllm.v1.engine.async_llm.AsyncLLM``, so concurrent requests share batches.

Every ``aassess`` / ``agenerate`` / ``astream`` call runs the same stage plans as :class:`VLLMGuard`
(:mod:`ras_guard.backends.vllm._stages`), but each row of each stage is one engine request: the caption, risk and
answer passes of concurrent calls are batched together by the engine's scheduler, and each row carries its own
risk to the steering processor, so rows never see each other's steering.

Example:
    >>> guard = AsyncVLLMGuard.from_pretrained("/models/llava-1.5-7b-hf", "cal/llava")  # doctest: +SKIP
    >>> outs = await asyncio.gather(*(guard.agenerate(m, max_new_tokens=64) for m in batch))  # doctest: +SKIP
    >>> guard.shutdown()  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ...types import GuardedGeneration, RiskAssessment
from ._run import arun_row
from ._stages import EngineCall, adrive, assess_plan, found_plan, generate_plan
from ._stream import AsyncVLLMStream
from .engine import VLLMEngine, steering_args
from .guard import BaseVLLMGuard, Messages

__all__ = ["AsyncVLLMEngine", "AsyncVLLMGuard"]


class AsyncVLLMEngine(VLLMEngine):
    """A :class:`VLLMEngine` over ``AsyncLLM``: each row of an engine call is its own engine request."""

    @classmethod
    def from_pretrained(
        cls, model_path: str | Path, calibration_dir: str | Path, **engine_args: Any
    ) -> AsyncVLLMEngine:
        """Build ``AsyncLLM`` on a checkpoint with the steering processor and the calibration.

        Args:
            model_path: Local checkpoint folder.
            calibration_dir: A ras-guard calibration folder made for this checkpoint.
            **engine_args: ``vllm.AsyncEngineArgs`` fields (``dtype``, ``max_model_len``...).
        """
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        args = AsyncEngineArgs(model=str(model_path), **steering_args(calibration_dir, engine_args))
        return cls(AsyncLLM.from_engine_args(args), model_path)

    def run(self, call: Any) -> list[Any]:
        """Not available: ``AsyncLLM`` is driven with :meth:`arun`."""
        raise TypeError(
            "an AsyncLLM engine is driven with await engine.arun(call); use AsyncVLLMGuard's a* methods."
        )

    async def arun(self, call: EngineCall) -> list[Any]:
        """The last ``RequestOutput`` of every row, each row submitted as one concurrent engine request (rows
        with stop strings are aborted at the first one)."""
        return await self.arun_prompts(self.prompts(call.conversations), call.params, call.stops)

    async def arun_prompts(
        self,
        prompted: Sequence[tuple[dict[str, Any], dict[str, Any] | None]],
        params: Sequence[Any],
        stops: Sequence[Sequence[str]] | None = None,
    ) -> list[Any]:
        """:meth:`arun` on rendered rows."""
        stops = stops or [()] * len(params)
        rows = (arun_row(self.llm, self.text_of, p, sp, st) for p, sp, st in zip(prompted, params, stops))
        return list(await asyncio.gather(*rows))


class AsyncVLLMGuard(BaseVLLMGuard):
    """An ``AsyncLLM`` with its RAS calibration: ``aassess``, ``aassess_batch``, ``agenerate``,
    ``agenerate_batch``, ``astream``. Wrap a running ``AsyncLLM`` with :meth:`wrap`.
    """

    _engine_class = AsyncVLLMEngine
    engine: AsyncVLLMEngine

    async def aassess(self, messages: Messages) -> RiskAssessment:
        """Score one request (:meth:`VLLMGuard.assess`)."""
        return (await self.aassess_batch([messages]))[0]

    async def aassess_batch(self, batch: Sequence[Messages]) -> list[RiskAssessment]:
        """Score several requests (:meth:`VLLMGuard.assess_batch`)."""
        return await adrive(assess_plan(self, [self.normalize(m) for m in batch]), self.engine.arun)

    async def agenerate(
        self,
        messages: Messages,
        *,
        max_new_tokens: int = 256,
        risk: float | None = None,
        assessment: RiskAssessment | None = None,
        **sampling: Any,
    ) -> GuardedGeneration:
        """Assess and answer one request (:meth:`VLLMGuard.generate`)."""
        outs = await self.agenerate_batch(
            [messages],
            max_new_tokens=max_new_tokens,
            risks=None if risk is None else [risk],
            assessments=None if assessment is None else [assessment],
            **sampling,
        )
        return outs[0]

    async def agenerate_batch(
        self,
        batch: Sequence[Messages],
        *,
        max_new_tokens: int = 256,
        risks: Sequence[float] | None = None,
        assessments: Sequence[RiskAssessment] | None = None,
        **sampling: Any,
    ) -> list[GuardedGeneration]:
        """Assess and answer several requests (:meth:`VLLMGuard.generate_batch`)."""
        convs = [self.normalize(m) for m in batch]
        plan = generate_plan(self, convs, risks, assessments, max_new_tokens, sampling)
        return await adrive(plan, self.engine.arun)

    async def astream(
        self,
        messages: Messages,
        *,
        max_new_tokens: int = 256,
        risk: float | None = None,
        assessment: RiskAssessment | None = None,
        **sampling: Any,
    ) -> AsyncVLLMStream:
        """Assess, then return the answer's stream (``async for piece in stream``; see :meth:`VLLMGuard.stream`)."""
        conv = self.normalize(messages)
        plan = found_plan(
            self, [conv], None if risk is None else [risk], None if assessment is None else [assessment]
        )
        (found,) = await adrive(plan, self.engine.arun)
        return AsyncVLLMStream(self, conv, found, max_new_tokens, sampling)

    def shutdown(self) -> None:
        """Stop the engine (its engine-core process)."""
        self.engine.llm.shutdown()
