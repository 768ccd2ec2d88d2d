"""Streamed guarded answers on vLLM: :class:`VLLMStream` (``vllm.LLM``) and :class:`AsyncVLLMStream` (``AsyncLLM``).

Both have the shape of :class:`ras_guard.streaming.GuardedStream`: ``assessment`` and ``steered`` are known when
the stream is returned, iterating yields text pieces as the engine generates them, ``result`` is the
:class:`~ras_guard.types.GuardedGeneration` once the stream is exhausted, and closing it (or leaving a ``with`` /
``async with`` block) aborts the engine request.

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
import weakref
from collections import deque
from collections.abc import AsyncIterator, Iterator
from typing import Any

from typing_extensions import Self

from ...errors import GenerationError
from ...messages import Conversation
from ...types import GuardedGeneration, RiskAssessment
from ._stages import _Guard, answer_call, generation
from ._steer import RequestSteering

__all__ = ["AsyncVLLMStream", "VLLMStream"]

_MAILBOXES: weakref.WeakKeyDictionary[Any, _Mailbox] = weakref.WeakKeyDictionary()


class _Mailbox:
    """Outputs of a sync engine's steps, sorted by request id, for the streams open on it."""

    def __init__(self, llm_engine: Any) -> None:
        self.llm_engine = llm_engine
        self.boxes: dict[str, deque[Any]] = {}

    @classmethod
    def of(cls, llm_engine: Any) -> _Mailbox:
        box = _MAILBOXES.get(llm_engine)
        if box is None:
            box = _MAILBOXES[llm_engine] = cls(llm_engine)
        return box

    def next(self, request_id: str) -> Any:
        queue = self.boxes[request_id]
        while not queue:
            if not self.llm_engine.has_unfinished_requests():
                raise GenerationError(f"the vLLM engine dropped streamed request {request_id}.")
            for out in self.llm_engine.step():
                if out.request_id in self.boxes:
                    self.boxes[out.request_id].append(out)
        return queue.popleft()


class _Decoder:
    """Growing token ids to text pieces; the pieces join to the decode of the final ids."""

    def __init__(self, engine: Any) -> None:
        self.engine, self.emitted = engine, ""

    def text(self, ids: list[int]) -> str:
        for i, t in enumerate(ids):
            if t in self.engine.eos_token_ids:
                ids = ids[:i]
                break
        return self.engine.decode(ids)

    def piece(self, ids: list[int], final: bool = False) -> str:
        text = self.text(ids)
        if (not final and text.endswith("\ufffd")) or not text.startswith(self.emitted):
            return ""  # an incomplete character, or a re-tokenized prefix: wait for more tokens
        piece, self.emitted = text[len(self.emitted) :], text
        return piece


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
        ((self._prompt, self._kwargs),) = guard.engine.prompts(call.conversations)
        self._params = call.params[0]
        self._params.output_kind = RequestOutputKind.CUMULATIVE
        self._id = f"ras-stream-{uuid.uuid4().hex}"
        self._decoder = _Decoder(guard.engine)
        self._t0 = time.perf_counter()

    def _piece(self, out: Any) -> str:
        if not out.finished:
            return self._decoder.piece(list(out.outputs[0].token_ids))
        done = self._guard.engine.trim(out, self._max)
        piece = self._decoder.piece(done.token_ids, final=True)
        text = self._decoder.text(done.token_ids)
        self.result = generation(self._guard, self.assessment, done, text, time.perf_counter() - self._t0)
        return piece


class VLLMStream(_Base):
    """A streamed guarded answer on ``vllm.LLM`` (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        engine = self._guard.engine.llm.llm_engine
        self._mail = _Mailbox.of(engine)
        self._mail.boxes[self._id] = deque()
        engine.add_request(self._id, self._prompt, self._params, tokenization_kwargs=self._kwargs)
        self._open = True
        self._iter = self._pieces()

    def _pieces(self) -> Iterator[str]:
        try:
            while self._open:  # a closed stream ends at the next piece asked for
                out = self._mail.next(self._id)
                piece = self._piece(out)
                if piece:
                    yield piece
                if out.finished:
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
            self._mail.boxes.pop(self._id, None)
            if self.result is None:
                self._mail.llm_engine.abort_request([self._id])


class AsyncVLLMStream(_Base):
    """A streamed guarded answer on ``AsyncLLM``: ``async for piece in stream``; ``await stream.aclose()``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._llm = self._guard.engine.llm
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
                if out.finished:
                    return
        finally:
            await self._stop()

    async def _stop(self) -> None:
        await self._outs.aclose()
        if self.result is None:
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
        await self._stop()
