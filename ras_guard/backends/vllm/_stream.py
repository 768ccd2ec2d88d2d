"""Streamed guarded answers on vLLM: :class:`VLLMStream` (``vllm.LLM``) and :class:`AsyncVLLMStream` (``AsyncLLM``).

Both have the shape of :class:`ras_guard.streaming.GuardedStream`: ``assessment`` and ``steered`` are known when
the stream is returned, iterating yields text pieces as the engine generates them, ``result`` is the
:class:`~ras_guard.types.GuardedGeneration` once the stream is exhausted, and closing it (or leaving a ``with`` /
``async with`` block) aborts the engine request. Stop strings (``stop=[...]``) are honoured on ras-guard's own decoding: the request is
aborted at the first one, and the last ``len(longest stop) - 1`` characters are held back until more text comes,
so a stop string split across pieces never leaks (see :mod:`._text`).

``vllm.LLM`` has no per-request streaming, so :class:`VLLMStream` adds its request to ``llm.llm_engine`` and steps
the engine from the consumer's thread as pieces are asked for; streams open at the same time on one engine share
the steps (a per-engine mailbox hands each its outputs). Do not call the guard's blocking ``generate`` on the same
engine while a stream is open: ``vllm.LLM`` runs every pending request to its end inside that call.

Example:
    >>> with guard.stream(messages, max_new_tokens=32) as s:  # doctest: +SKIP
    ...     text = "".join(s)
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

from typing_extensions import Self

from ...messages import Conversation
from ...types import GuardedGeneration, RiskAssessment
from ._run import Mailbox
from ._stages import _Guard, answer_call, generation
from ._steer import RequestSteering
from ._text import TextDeltas

__all__ = ["AsyncVLLMStream", "VLLMStream"]

class _Base:
    def __init__(
        self,
        guard: _Guard,
        conv: Conversation,
        assessment: RiskAssessment,
        max_new_tokens: int,
        sampling: dict[str, Any],
    ) -> None:
        from vllm.sampling_params import RequestOutputKind

        self.assessment = assessment
        self.steered = RequestSteering(assessment.risk, guard.config.risk_floor).steered
        self.result: GuardedGeneration | None = None
        self._guard, self._max = guard, max_new_tokens
        call = answer_call(guard, [conv], [assessment], max_new_tokens, sampling)
        self._stop = call.stops[0] if call.stops else ()
        ((self._prompt, self._kwargs),) = guard.engine.prompts(call.conversations)
        self._params = call.params[0]
        self._params.output_kind = RequestOutputKind.CUMULATIVE
        self._deltas = TextDeltas(guard.engine.text_of, self._stop)
        self._engine_done = False
        self._t0 = time.perf_counter()

    def _piece(self, out: Any) -> str:
        """The text safe to emit after ``out``; sets ``result`` once the row finished or reached a stop string."""
        self._engine_done = bool(out.finished)
        piece = ""
        if not out.finished:
            piece = self._deltas.push(list(out.outputs[0].token_ids))
            if not self._deltas.stopped:
                return piece
        done, text = self._guard.engine.finish(out, self._max, self._stop)
        piece += self._deltas.push(done.token_ids, final=True)
        self.result = generation(self._guard, self.assessment, done, text, time.perf_counter() - self._t0)
        return piece


class VLLMStream(_Base):
    """A streamed guarded answer on ``vllm.LLM`` (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._mail = Mailbox.of(self._guard.engine.llm.llm_engine)
        self._id = self._mail.open((self._prompt, self._kwargs), self._params)
        self._open = True
        self._iter = self._pieces()

    def _pieces(self) -> Iterator[str]:
        try:
            while self._open:  # a closed stream ends at the next piece asked for
                out = self._mail.next(self._id)
                piece = self._piece(out)
                if piece:
                    yield piece
                if self.result is not None:
                    return
        finally:
            self.close()

    def __iter__(self) -> Iterator[str]:
        return self._iter

    def __next__(self) -> str:
        return next(self._iter)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Abort the engine request (nothing more is generated for it)."""
        if self._open:
            self._open = False
            self._mail.close(self._id, self._engine_done)


class AsyncVLLMStream(_Base):
    """A streamed guarded answer on ``AsyncLLM``: ``async for piece in stream``; ``await stream.aclose()``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._llm = self._guard.engine.llm
        self._id = f"ras-stream-{uuid.uuid4().hex}"
        self._outs = self._llm.generate(
            self._prompt, self._params, self._id, tokenization_kwargs=self._kwargs
        )
        self._iter = self._pieces()

    async def _pieces(self) -> AsyncIterator[str]:
        try:
            async for out in self._outs:
                piece = self._piece(out)
                if piece:
                    yield piece
                if self.result is not None:
                    return
        finally:
            await self._abort()

    async def _abort(self) -> None:
        await self._outs.aclose()
        if not self._engine_done:
            self._engine_done = True  # abort once
            await self._llm.abort(self._id)

    def __aiter__(self) -> AsyncIterator[str]:
        return self._iter

    async def __anext__(self) -> str:
        return await self._iter.__anext__()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Abort the engine request (nothing more is generated for it)."""
        await self._iter.aclose()
        await self._abort()
