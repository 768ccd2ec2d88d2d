"""``batch`` / ``abatch`` that batch: the rows of a chunk go through one ``generate_batch`` call (private).

Why this shape: LangChain's ``Runnable.batch`` runs ``invoke`` once per input in a thread pool
(``abatch``: ``ainvoke`` per input in tasks). That machinery gives every row its own callbacks
(``on_chat_model_start`` / ``on_llm_end`` / ``on_llm_error``), run id, message id, LLM-cache lookup and
``return_exceptions`` slot, and we keep all of it. Only the model work is pooled:

* :meth:`BatchingChatModel.batch` splits the inputs into chunks of ``batch_size`` and runs the base
  ``batch`` on each with one thread per row, a :class:`Collector` for the chunk in a context variable;
* each row converts its messages in its own thread (images are fetched in parallel), then its ``_generate``
  submits the prepared request to the collector and waits;
* when every row of the chunk has submitted or left (an error before ``_generate``, an LLM-cache hit, a
  row that streams), the last one runs the chunk: one ``assess_batch`` for the rows to assess, the policy's
  decision per row, one ``generate_batch`` for the rows to answer (blocked rows never generate). If a
  batched call raises, its rows are redone one by one, so each row gets its own answer or its own exception;
* each row then continues in its own thread: its ``ras_risk_assessed`` event, its message, its ``on_llm_end``.

Rows that take the streaming path (``streaming=True``, a streaming callback handler, ``astream_events``) are
answered one by one, as before, since their tokens go to their own handlers.

Example:
    >>> Collector(owner=None, expected=1).expected
    1
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, cast

from langchain_core.language_models import LanguageModelInput
from langchain_core.messages import AIMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import get_config_list
from pydantic import Field
from typing_extensions import override

from ._runs import RunLinkedChatModel

__all__ = ["BatchingChatModel", "Collector", "Row", "current_row"]

Work = Callable[[list[Any]], list[Any]]
"""Runs a chunk: prepared requests in, per row a result or the row's exception out."""


@dataclass(eq=False)
class Row:
    """One input of a pooled chunk."""

    collector: Collector
    request: Any = None
    result: Any = None
    submitted: bool = False
    finished: bool = False


@dataclass(eq=False)
class Collector:
    """Pools the requests of one chunk until every row has submitted or left, then runs them together."""

    owner: Any
    expected: int
    work: Work | None = None
    rows: list[Row] = field(default_factory=list)
    _arrived: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _done: threading.Event = field(default_factory=threading.Event)
    _adone: asyncio.Event | None = None

    def join(self) -> Row:
        """A new row of this chunk."""
        row = Row(self)
        with self._lock:
            self.rows.append(row)
        return row

    def _arrive(self, row: Row, request: Any | None) -> bool:
        """Record a submission (or, with None, a leave); True when this arrival completes the chunk."""
        with self._lock:
            if row.finished:
                return False
            row.finished = True
            if request is not None:
                row.request, row.submitted = request, True
            self._arrived += 1
            return self._arrived == self.expected

    def _run(self) -> None:
        pending = [r for r in self.rows if r.submitted]
        try:
            results = self.work([r.request for r in pending]) if pending and self.work else []
        except BaseException as exc:  # noqa: BLE001 - every waiting row must wake up with it
            results = [exc] * len(pending)
        for row, res in zip(pending, results, strict=False):
            row.result = res
        self._done.set()

    async def _arun(self) -> None:
        await asyncio.to_thread(self._run)
        self._aevent().set()  # in the loop: asyncio.Event is not thread-safe

    @staticmethod
    def _unwrap(row: Row) -> Any:
        if isinstance(row.result, BaseException):
            raise row.result
        return row.result

    # ------------------------------------------------------------------ sync rows
    def submit(self, row: Row, request: Any) -> Any:
        """Submit a row's prepared request; block until its chunk ran; its result (or raise its error)."""
        if self._arrive(row, request):
            self._run()
        else:
            self._done.wait()
        return self._unwrap(row)

    def leave(self, row: Row) -> None:
        """A row that will not submit (finished, failed or streamed by itself)."""
        if self._arrive(row, None):
            self._run()

    # ------------------------------------------------------------------ async rows
    def _aevent(self) -> asyncio.Event:
        if self._adone is None:
            self._adone = asyncio.Event()
        return self._adone

    async def asubmit(self, row: Row, request: Any) -> Any:
        """:meth:`submit` for async rows (the chunk runs in a worker thread)."""
        event = self._aevent()
        if self._arrive(row, request):
            await self._arun()
        else:
            await event.wait()
        return self._unwrap(row)

    async def aleave(self, row: Row) -> None:
        """:meth:`leave` for async rows."""
        self._aevent()
        if self._arrive(row, None):
            await self._arun()


_COLLECTOR: ContextVar[Collector | None] = ContextVar("langchain_ras_guard_collector", default=None)
_ROW: ContextVar[Row | None] = ContextVar("langchain_ras_guard_row", default=None)


def current_row(owner: object) -> Row | None:
    """The pooled row the current call belongs to (None: answer alone)."""
    row = _ROW.get()
    if row is None or row.collector.owner is not owner or row.finished:
        return None
    return row


def _chunks(n: int, size: int) -> list[range]:
    return [range(i, min(i + size, n)) for i in range(0, n, size)]


class BatchingChatModel(RunLinkedChatModel):
    """A chat model whose ``batch`` / ``abatch`` pool their rows (see the module docstring)."""

    batch_size: int = Field(default=16, ge=1)
    """Rows answered together by ``batch`` / ``abatch`` (default 16): larger chunks are faster per row and use
    more memory. ``max_concurrency`` in the config caps it."""

    def _batch_work(self, requests: list[Any]) -> list[Any]:
        """Run one chunk (implemented by the chat model)."""
        raise NotImplementedError

    def _plan(
        self, n: int, config: RunnableConfig | Sequence[RunnableConfig] | None
    ) -> tuple[list[Any], int]:
        configs = get_config_list(config, n)
        cap = configs[0].get("max_concurrency") if configs else None
        return configs, max(1, min(self.batch_size, cap or self.batch_size))

    @override
    def batch(
        self,
        inputs: list[LanguageModelInput],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[AIMessage]:
        if not inputs:
            return []
        configs, size = self._plan(len(inputs), config)
        out: list[Any] = []
        for part in _chunks(len(inputs), size):
            collector = Collector(self, len(part), self._batch_work)
            cfgs = [cast("RunnableConfig", {**configs[i], "max_concurrency": len(part)}) for i in part]
            token = _COLLECTOR.set(collector)
            try:
                out.extend(
                    super().batch(
                        [inputs[i] for i in part], cfgs, return_exceptions=return_exceptions, **kwargs
                    )
                )
            finally:
                _COLLECTOR.reset(token)
        return out

    @override
    async def abatch(
        self,
        inputs: list[LanguageModelInput],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[AIMessage]:
        if not inputs:
            return []
        configs, size = self._plan(len(inputs), config)
        out: list[Any] = []
        for part in _chunks(len(inputs), size):
            collector = Collector(self, len(part), self._batch_work)
            cfgs = [cast("RunnableConfig", {**configs[i], "max_concurrency": None}) for i in part]
            token = _COLLECTOR.set(collector)
            try:
                out.extend(
                    await super().abatch(
                        [inputs[i] for i in part], cfgs, return_exceptions=return_exceptions, **kwargs
                    )
                )
            finally:
                _COLLECTOR.reset(token)
        return out

    def _row_of_batch(self) -> Row | None:
        collector = _COLLECTOR.get()
        if collector is None or collector.owner is not self or _ROW.get() is not None:
            return None
        return collector.join()

    @override
    def invoke(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AIMessage:
        row = self._row_of_batch()
        if row is None:
            return super().invoke(input, config, stop=stop, **kwargs)
        token = _ROW.set(row)
        try:
            return super().invoke(input, config, stop=stop, **kwargs)
        finally:
            _ROW.reset(token)
            row.collector.leave(row)

    @override
    async def ainvoke(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AIMessage:
        row = self._row_of_batch()
        if row is None:
            return await super().ainvoke(input, config, stop=stop, **kwargs)
        token = _ROW.set(row)
        try:
            return await super().ainvoke(input, config, stop=stop, **kwargs)
        finally:
            _ROW.reset(token)
            await row.collector.aleave(row)
