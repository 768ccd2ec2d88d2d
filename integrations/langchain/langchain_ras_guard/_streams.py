"""Consuming a :class:`ras_guard.GuardedStream` from sync and async code (private).

Sync: pieces are pulled in the caller's thread; an abandoned stream is closed (generation cancelled).

Async: one producer thread pulls the pieces and hands them to the event loop through an
:class:`asyncio.Queue` (``loop.call_soon_threadsafe``), so the loop never blocks on a token. The producer is
the stream's only consumer; when the async consumer goes away it sets a flag and the producer closes the
stream itself after its current piece (closing from a second thread could race with the producer's read).

Why not transformers' ``AsyncTextIteratorStreamer`` (checked for issue 13.6, transformers 5.24): it binds to
the running loop in its constructor (``asyncio.get_running_loop()``), while the guarded stream is built in a
worker thread so that the loop never blocks on assessment and encoding; it replaces only this module's queue
hand-off, not the stop-string hold-back, cancellation and error forwarding of
:class:`ras_guard.GuardedStream`; and when generation fails its consumer is never told: measured on the demo
model with a logits processor raising at the third step, ``async for`` over it waited the whole ``timeout``
(5.1 s of 5 s; forever with the default None) and then raised ``TimeoutError`` instead of the error, where
this bridge re-raises the error at once.

Example:
    >>> list(pieces(["a", "b"]))  # any iterable of str works for the sync helper
    ['a', 'b']
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator, Generator, Iterable
from typing import Any

__all__ = ["apieces", "pieces"]

_PIECE, _END, _ERROR = "piece", "end", "error"


def _close(stream: Any) -> None:
    """Cancel generation of an unfinished stream.

    ``GuardedStream.close()`` drains the streamer; once generation has ended and its end signal was read, that
    drain would wait for the streamer's timeout. The generation thread is alive exactly until then, so only a
    live stream is closed.
    """
    close = getattr(stream, "close", None)
    if close is None:
        return
    thread = getattr(stream, "_thread", None)
    if thread is None or thread.is_alive():
        close()


def pieces(stream: Iterable[str]) -> Generator[str, None, None]:
    """Yield a stream's text pieces; cancel generation if the consumer stops early."""
    it = iter(stream)
    done = False
    try:
        while True:
            try:
                piece = next(it)
            except StopIteration:
                done = True
                return
            except BaseException:
                done = True
                raise
            yield piece
    finally:
        if not done:
            _close(stream)


async def apieces(stream: Iterable[str]) -> AsyncGenerator[str, None]:
    """Yield a stream's text pieces in async code without blocking the event loop."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
    stop = threading.Event()

    def put(item: tuple[str, Any]) -> None:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, item)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            stop.set()

    def produce() -> None:
        it = iter(stream)
        try:
            while True:
                if stop.is_set():
                    _close(stream)
                    return
                try:
                    piece = next(it)
                except StopIteration:
                    put((_END, None))
                    return
                put((_PIECE, piece))
        except BaseException as exc:  # re-raised in the consumer
            put((_ERROR, exc))

    thread = threading.Thread(target=produce, name="ras-guard-astream", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = await queue.get()
            if kind == _END:
                return
            if kind == _ERROR:
                raise value
            yield value
    finally:
        stop.set()
