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

import time
from collections.abc import Iterator
from typing import Any

from typing_extensions import Self  # typing.Self is 3.11+; requires-python is 3.10

from ._decoding import cut_at_stop
from .errors import GenerationError
from .types import GuardedGeneration, RiskAssessment, guarded_generation

__all__ = ["GuardedStream"]


class GuardedStream:
    """An iterator of answer text pieces over a backend's stream (:meth:`Backend.stream`).

    Args:
        pieces: The backend's text deltas; its ``result`` (a
            :class:`~ras_guard.backends.protocol.GenerationResult`) is read once exhausted, its ``close()`` on close.
        assessment: The risk assessment (available immediately).
        steered: Whether the answer is steered.
        stop: Stop strings: text is held back while it could begin one, and cut before the first one.

    Attributes:
        assessment: The risk assessment.
        steered: Whether the answer is steered.
        result: The full :class:`GuardedGeneration` once the stream is exhausted (None before).

    Closing the stream (or leaving a ``with`` block) stops generation at the next token.

    Example:
        >>> s = GuardedStream(iter(["a", "b"]), RiskAssessment(0.0, 0.1, "", ""), False, None)
        >>> "".join(s), s.result.text, s.result.usage.output_tokens
        ('ab', 'ab', 0)
    """

    def __init__(self, pieces: Any, assessment: RiskAssessment, steered: bool, stop: list[str] | None) -> None:
        self.assessment = assessment
        self.steered = steered
        self.result: GuardedGeneration | None = None
        self._source = pieces
        self._stop = [s for s in (stop or []) if s]
        self._t0 = time.perf_counter()
        self._iter = self._pieces()

    @classmethod
    def finished(cls, assessment: RiskAssessment, finish_reason: str) -> GuardedStream:
        """A stream that generates nothing (a refused row): no pieces, ``result`` ready at once."""
        self = cls(iter(()), assessment, True, None)
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
        """Stop generating (the backend stops at the next token) and wait for it."""
        close = getattr(self._source, "close", None)
        if callable(close):
            close()

    def _pieces(self) -> Iterator[str]:
        hold = max((len(s) for s in self._stop), default=1) - 1
        emitted, text, stopped = 0, "", False
        try:
            for piece in self._source:
                if stopped:
                    continue
                text += piece
                cut, stopped = cut_at_stop(text, self._stop)
                upto = len(cut) if stopped else max(len(text) - hold, emitted)
                if upto > emitted:
                    yield text[emitted:upto]
                    emitted = upto
        except GenerationError:
            raise
        except Exception as exc:
            raise GenerationError(f"streaming generation failed: {exc}") from exc
        cut, stopped = cut_at_stop(text, self._stop)
        if len(cut) > emitted:
            yield cut[emitted:]
        self._finish(cut, stopped)

    def _finish(self, text: str, stopped: bool) -> None:
        res = getattr(self._source, "result", None)
        ids = list(res.token_ids) if res is not None else []
        reason = res.finish_reason if res is not None else "stop"
        self.result = guarded_generation(
            text, ids, self.assessment, steered=self.steered, prompt_tokens=res.prompt_tokens if res else 0,
            finish_reason="stop" if stopped else reason, answer_s=time.perf_counter() - self._t0,
        )
