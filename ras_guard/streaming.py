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
from typing import Any

from typing_extensions import Self  # typing.Self is 3.11+; requires-python is 3.10

from ._decoding import cut_at_stop
from .backends.base import Backend
from .errors import GenerationError
from .types import GuardedGeneration, RiskAssessment, guarded_generation

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
        self._streamer = backend.text_streamer(decoder, timeout=timeout)
        self._error: BaseException | None = None
        self._ended = False  # the streamer's end signal has been consumed
        self._gen: Any = None
        self._t0 = time.perf_counter()
        gen_kwargs = dict(kwargs, stop=self._stop, cancel=self._cancel)

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
        self.result = guarded_generation("", [], assessment, steered=True, prompt_tokens=0, finish_reason=finish_reason)
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
        self.result = guarded_generation(
            text, ids, self.assessment, steered=self.steered, prompt_tokens=res.prompt_tokens[0],
            finish_reason="stop" if stopped else reason, answer_s=time.perf_counter() - self._t0,
        )
