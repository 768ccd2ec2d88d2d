"""One streamed request on transformers (private): ``model.generate`` in a thread, a text streamer out.

Example:
    >>> for piece in backend.stream(request): print(piece, end="")  # doctest: +SKIP
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ...errors import GenerationError
from ..protocol import GenerationRequest, GenerationResult
from . import _requests

if TYPE_CHECKING:
    from ._backend import HFBackend

__all__ = ["HFStream"]


class HFStream:
    """Text deltas of one request; ``result`` is set once exhausted; ``close()`` stops at the next token.

    Args:
        backend: The transformers backend.
        request: The request (its group's prefix is continued from, as in ``generate``).
        timeout: Seconds to wait for each next piece.
    """

    def __init__(self, backend: HFBackend, request: GenerationRequest, timeout: float | None = 600.0) -> None:
        from transformers import TextIteratorStreamer

        calls, _ = _requests.layout(backend, [request])
        self._call = calls[0]
        self._backend = backend
        self._procs = _requests.processors(backend, self._call)
        grammar = self._procs[2]
        self._streamer = TextIteratorStreamer(
            grammar if grammar is not None else backend.tokenizer, skip_prompt=True, skip_special_tokens=True,
            timeout=timeout,
        )
        self._cancel = threading.Event()
        self._error: BaseException | None = None
        self._res: Any = None
        self._ended = False
        self.result: GenerationResult | None = None

        def _run() -> None:
            try:
                self._res = _requests.run_call(backend, self._call, streamer=self._streamer, cancel=self._cancel)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the consumer's thread
                self._error = exc
                self._streamer.end()

        # the thread runs in a copy of this context, so a call's deadline (ras_guard._deadline) carries over
        context = contextvars.copy_context()
        self._thread = threading.Thread(target=context.run, args=(_run,), name="ras-guard-stream", daemon=True)
        self._thread.start()
        self._iter = self._pieces()

    def __iter__(self) -> Iterator[str]:
        return self._iter

    def __next__(self) -> str:
        return next(self._iter)

    def close(self) -> None:
        """Stop generating and wait for the background thread."""
        self._cancel.set()
        if not self._ended:
            for _ in self._streamer:  # drain until the end signal, so the producer never blocks
                pass
            self._ended = True
        self._thread.join()

    def _pieces(self) -> Iterator[str]:
        yield from self._streamer
        self._ended = True
        self._thread.join()
        if self._error is not None:
            if isinstance(self._error, GenerationError):
                raise self._error
            raise GenerationError(f"streaming generation failed: {self._error}") from self._error
        res, grammar, seconds = self._res
        self.result = _requests.results(self._backend, self._call, res, grammar, seconds)[0]
