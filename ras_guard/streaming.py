"""Streaming a guarded answer: text pieces as they are generated, the assessment known before the first one.

Example:
    >>> stream = guard.stream(messages, max_new_tokens=64)  # doctest: +SKIP
    >>> stream.assessment.risk  # ready before iterating  # doctest: +SKIP
    0.02
    >>> for piece in stream: print(piece, end="")  # doctest: +SKIP
    >>> stream.result.usage.output_tokens  # doctest: +SKIP
    17
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Iterator
from typing import Any, Self

from transformers import StoppingCriteriaList, TextIteratorStreamer

from ._decoding import CancelCriteria, StopOnStrings, cut_at_stop
from .backends.base import Backend
from .errors import GenerationError
from .types import GuardedGeneration, RiskAssessment, Usage

__all__ = ["GuardedStream"]


class GuardedStream:
    """An iterator of answer text pieces; generation runs in a background thread.

    Attributes:
        assessment: The risk assessment (available immediately).
        steered: Whether the answer is steered.
        result: The full :class:`GuardedGeneration` once the stream is exhausted (None before).

    Closing the stream (or leaving a ``with`` block) stops generation at the next token.
    """

    def __init__(
        self,
        backend: Backend,
        inputs: Any,
        assessment: RiskAssessment,
        steered: bool,
        processors: list[Any],
        max_new_tokens: int,
        stop: list[str] | None,
        kwargs: dict[str, Any],
        timeout: float | None = 600.0,
        decoder: Any = None,
    ) -> None:
        self.assessment = assessment
        self.steered = steered
        self.result: GuardedGeneration | None = None
        self._backend = backend
        self._stop = [s for s in (stop or []) if s]
        self._cancel = threading.Event()
        self._streamer = TextIteratorStreamer(
            decoder if decoder is not None else backend.tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=timeout
        )
        self._error: BaseException | None = None
        self._ended = False  # the streamer's end signal has been consumed
        self._gen: Any = None
        self._t0 = time.perf_counter()
        criteria = [*(kwargs.get("stopping_criteria") or []), CancelCriteria(self._cancel)]
        if self._stop:
            criteria.append(StopOnStrings(backend.tokenizer, self._stop, int(inputs["input_ids"].shape[1])))
        gen_kwargs = dict(kwargs, stopping_criteria=StoppingCriteriaList(criteria))

        def _run() -> None:
            try:
                self._gen = backend.generate(
                    inputs, max_new_tokens=max_new_tokens, logits_processors=processors, streamer=self._streamer,
                    **gen_kwargs,
                )
            except BaseException as exc:  # noqa: BLE001 - re-raised in the consumer's thread
                self._error = exc
                self._streamer.end()

        # the thread runs in a copy of this context, so a call's deadline (ras_guard._deadline) carries over
        context = contextvars.copy_context()
        self._thread = threading.Thread(target=context.run, args=(_run,), name="ras-guard-stream", daemon=True)
        self._thread.start()
        self._iter = self._pieces()

    @classmethod
    def finished(cls, backend: Backend, assessment: RiskAssessment, finish_reason: str) -> GuardedStream:
        """A stream that generates nothing (a refused row): no pieces, ``result`` ready at once."""
        self = cls.__new__(cls)
        self.assessment, self.steered, self._backend, self._stop = assessment, True, backend, []
        self._cancel, self._ended, self._error = threading.Event(), True, None
        self._thread = threading.Thread(target=lambda: None)
        self._thread.start()
        self.result = GuardedGeneration(
            text="", token_ids=[], assessment=assessment, steered=True,
            usage=Usage(0, 0, assessment.guard_tokens), finish_reason=finish_reason,
            timings={f"assess_{k}": v for k, v in assessment.timings.items()},
        )
        self._iter = iter(())
        return self

    def __iter__(self) -> Iterator[str]:
        return self._iter

    def __next__(self) -> str:
        return next(self._iter)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop generating and wait for the background thread."""
        self._cancel.set()
        if not self._ended:
            for _ in self._streamer:  # drain until the end signal, so the producer never blocks
                pass
            self._ended = True
        self._thread.join()

    def _pieces(self) -> Iterator[str]:
        hold = max((len(s) for s in self._stop), default=1) - 1
        emitted, text, stopped = 0, "", False
        for piece in self._streamer:
            if stopped:
                continue
            text += piece
            cut, stopped = cut_at_stop(text, self._stop)
            upto = len(cut) if stopped else max(len(text) - hold, emitted)
            if upto > emitted:
                yield text[emitted:upto]
                emitted = upto
        self._ended = True
        self._thread.join()
        if self._error is not None:
            if isinstance(self._error, GenerationError):
                raise self._error
            raise GenerationError(f"streaming generation failed: {self._error}") from self._error
        cut, stopped = cut_at_stop(text, self._stop)
        if len(cut) > emitted:
            yield cut[emitted:]
        self._finish(cut, stopped)

    def _finish(self, text: str, stopped: bool) -> None:
        res = self._gen
        ids, reason = self._backend.trim(res.sequences[0])
        self.result = GuardedGeneration(
            text=text,
            token_ids=ids,
            assessment=self.assessment,
            steered=self.steered,
            usage=Usage(res.prompt_tokens[0], len(ids), self.assessment.guard_tokens),
            finish_reason="stop" if stopped else reason,
            timings={**{f"assess_{k}": v for k, v in self.assessment.timings.items()},
                     "answer": time.perf_counter() - self._t0},
        )
