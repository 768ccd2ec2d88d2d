"""The chunks of one streamed, already decided turn: risk first, then text, then the closing chunk (private).

:meth:`RASGuardedChatModel._stream` / ``_astream`` assess and decide the turn, send the ``ras_risk_assessed``
event, then hand the turn here. A blocked turn streams its refusal without generating; any other opens the
guarded stream (``open_stream``, run in a worker thread for async callers) and turns its pieces into chunks,
passing tool call text through the :class:`~._tools.ToolTextBuffer`. Leaving early cancels generation.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from langchain_core.outputs import ChatGenerationChunk
from ras_guard import Decision, GuardedStream

from ._streams import apieces, pieces
from ._tools import ToolTextBuffer
from ._turns import Turn

__all__ = ["astream_turn", "stream_turn"]

Opener = Callable[[Turn], tuple[GuardedStream, ToolTextBuffer | None]]


def stream_turn(turn: Turn, open_stream: Opener, run_manager: Any) -> Iterator[ChatGenerationChunk]:
    """Chunks of ``turn`` (sync); ``run_manager`` (or None) gets ``on_llm_new_token`` per text chunk."""
    if turn.decision is Decision.BLOCKED:
        yield turn.first_chunk()
        yield turn.last_chunk(None, None)
        return
    stream, buffer = open_stream(turn)
    pulled = pieces(stream)
    try:
        yield turn.first_chunk()
        for piece in pulled:
            if text := (buffer.feed(piece) if buffer else piece):
                chunk = turn.text_chunk(text)
                if run_manager:
                    run_manager.on_llm_new_token(text, chunk=chunk)
                yield chunk
        yield turn.last_chunk(buffer.finish() if buffer else None, stream.result)
    finally:
        pulled.close()  # cancels generation when the consumer stopped early


async def astream_turn(
    turn: Turn, open_stream: Opener, run_manager: Any
) -> AsyncIterator[ChatGenerationChunk]:
    """Chunks of ``turn`` (async): the stream is opened and read in worker threads, never on the loop."""
    if turn.decision is Decision.BLOCKED:
        yield turn.first_chunk()
        yield turn.last_chunk(None, None)
        return
    stream, buffer = await asyncio.to_thread(open_stream, turn)
    pulled = apieces(stream)
    try:
        yield turn.first_chunk()
        async for piece in pulled:
            if text := (buffer.feed(piece) if buffer else piece):
                chunk = turn.text_chunk(text)
                if run_manager:
                    await run_manager.on_llm_new_token(text, chunk=chunk)
                yield chunk
        yield turn.last_chunk(buffer.finish() if buffer else None, stream.result)
    finally:
        await pulled.aclose()  # stops the producer thread, which cancels generation
