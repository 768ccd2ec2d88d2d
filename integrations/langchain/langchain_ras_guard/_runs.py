"""Reaching the callback handlers of the current chat-model run, to send a custom event (private).

Why this exists: the risk assessment must reach callback handlers as a custom event before the first token.
``BaseChatModel._generate`` receives the run manager, but in langchain-core 1.8 ``stream()`` / ``astream()``
(and ``invoke()`` when it streams internally, e.g. under ``astream_events``) call ``_stream`` / ``_astream``
WITHOUT it, ``CallbackManagerForLLMRun`` has no ``on_custom_event``, and ``dispatch_custom_event``
addresses the *parent* run (and fails when there is none).

What we do:

* With a run manager (``_generate``, ``_agenerate``, the v2/v3 event path of ``_stream``): build a
  ``CallbackManager`` over ``run_manager.handlers`` and call its public ``on_custom_event`` with the chat
  model's own ``run_id``; it honours ``ignore_custom_event``, ``raise_error`` and async handlers.
* Without one: the model's ``invoke`` / ``ainvoke`` / ``stream`` / ``astream`` configure the callback manager
  themselves, exactly as the base class would, fix the ``run_id`` in the config, and pass the configured
  manager down as ``config["callbacks"]``. The base class then re-configures from that manager, so the run
  has the very same handler objects and the same run id. A :class:`RunLink` with those handlers is put in a
  context variable for the duration of the call (for streams: until the first chunk, which is produced after
  the event), and ``_stream`` reads it.

The event therefore reaches every handler of the run, with the run's id (so ``astream_events`` shows it under
the chat model run), before ``on_llm_new_token`` is called for the first time.

Example:
    >>> link = RunLink(owner=1, run_id=uuid.uuid4(), handlers=[], parent_run_id=None, tags=[], metadata={})
    >>> dispatch(link, "ras_risk_assessed", {"risk": 0.1})  # no handlers: nothing happens
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, cast

from langchain_core.callbacks import (
    AsyncCallbackManager,
    AsyncCallbackManagerForLLMRun,
    BaseCallbackHandler,
    CallbackManager,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_core.runnables import RunnableConfig, ensure_config
from typing_extensions import override

__all__ = ["RunLink", "RunLinkedChatModel", "adispatch", "bound", "current", "dispatch", "link", "prepare"]


@dataclass(frozen=True)
class RunLink:
    """The handlers and id of one chat-model run.

    Attributes:
        owner: ``id()`` of the chat model the run belongs to.
        run_id: The run's id (events are reported under it).
        handlers: The run's handlers.
        parent_run_id: Id of the enclosing run, if any.
        tags: The run's tags.
        metadata: The run's metadata.
    """

    owner: int
    run_id: uuid.UUID
    handlers: list[BaseCallbackHandler]
    parent_run_id: uuid.UUID | None
    tags: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_run_manager(
        cls, owner: object, run_manager: CallbackManagerForLLMRun | AsyncCallbackManagerForLLMRun
    ) -> RunLink:
        """The link of a run the base class opened."""
        return cls(
            owner=id(owner),
            run_id=run_manager.run_id,
            handlers=list(run_manager.handlers),
            parent_run_id=run_manager.parent_run_id,
            tags=list(run_manager.tags or []),
            metadata=dict(run_manager.metadata or {}),
        )


_LINK: ContextVar[RunLink | None] = ContextVar("langchain_ras_guard_run_link", default=None)


def prepare(model: Any, config: RunnableConfig | None, *, is_async: bool) -> tuple[RunnableConfig, RunLink]:
    """Configure the run's callback manager up front; return the config to pass on and the run's link.

    Args:
        model: The chat model (its ``callbacks``, ``verbose``, ``tags`` and ``metadata`` are used as the base
            class uses them).
        config: The caller's config.
        is_async: Build an :class:`AsyncCallbackManager` (for ``ainvoke`` / ``astream``).
    """
    cfg = ensure_config(config)
    run_id = cfg.get("run_id") or uuid.uuid4()
    manager_cls = AsyncCallbackManager if is_async else CallbackManager
    manager = manager_cls.configure(
        cfg.get("callbacks"),
        model.callbacks,
        model.verbose,
        cfg.get("tags"),
        model.tags,
        cfg.get("metadata"),
        model.metadata,
    )
    new_cfg: RunnableConfig = {**cfg, "callbacks": manager, "run_id": run_id}
    link = RunLink(
        owner=id(model),
        run_id=run_id,
        handlers=list(manager.handlers),
        parent_run_id=manager.parent_run_id,
        tags=list(manager.tags),
        metadata=dict(manager.metadata),
    )
    return new_cfg, link


@contextmanager
def bound(link: RunLink) -> Iterator[None]:
    """Make ``link`` the current run link inside the block."""
    token = _LINK.set(link)
    try:
        yield
    finally:
        _LINK.reset(token)


def current(model: object) -> RunLink | None:
    """The current run link if it belongs to ``model``."""
    link = _LINK.get()
    return link if link is not None and link.owner == id(model) else None


def link(model: Any, run_manager: Any) -> RunLink | None:
    """The run ``model``'s events go to: its own run manager's, else the current link it owns."""
    return RunLink.from_run_manager(model, run_manager) if run_manager else current(model)


def dispatch(link: RunLink | None, name: str, data: dict[str, Any]) -> None:
    """Send a custom event to the run's handlers (synchronously; async handlers are awaited)."""
    if link is None or not link.handlers:
        return
    manager = CallbackManager(
        handlers=link.handlers, parent_run_id=link.parent_run_id, tags=link.tags, metadata=link.metadata
    )
    manager.on_custom_event(name, data, run_id=link.run_id)


async def adispatch(link: RunLink | None, name: str, data: dict[str, Any]) -> None:
    """Send a custom event to the run's handlers from async code (sync handlers run in the executor)."""
    if link is None or not link.handlers:
        return
    manager = AsyncCallbackManager(
        handlers=link.handlers, parent_run_id=link.parent_run_id, tags=link.tags, metadata=link.metadata
    )
    await manager.on_custom_event(name, data, run_id=link.run_id)


_END: Any = object()


class RunLinkedChatModel(BaseChatModel):
    """A ``BaseChatModel`` whose ``_stream`` / ``_astream`` can reach the run's handlers (see module doc).

    ``invoke`` / ``ainvoke`` / ``stream`` / ``astream`` bind the run's :class:`RunLink` while they run.
    Streams keep it bound only while their first chunk is produced (the event is sent before it), so the
    context variable never leaks into the consumer's code between chunks.
    """

    @override
    def invoke(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AIMessage:
        config, link = prepare(self, config, is_async=False)
        with bound(link):
            return super().invoke(input, config, stop=stop, **kwargs)

    @override
    async def ainvoke(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AIMessage:
        config, link = prepare(self, config, is_async=True)
        with bound(link):
            return await super().ainvoke(input, config, stop=stop, **kwargs)

    @override
    def stream(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> Iterator[AIMessageChunk]:
        config, link = prepare(self, config, is_async=False)
        inner = super().stream(input, config, stop=stop, **kwargs)
        with bound(link):  # the event is sent while the first chunk is produced
            first = next(inner, _END)
        if first is _END:
            return
        yield first  # type: ignore[misc]
        yield from inner

    @override
    async def astream(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[AIMessageChunk]:
        config, link = prepare(self, config, is_async=True)
        inner = cast(
            "AsyncGenerator[AIMessageChunk, None]", super().astream(input, config, stop=stop, **kwargs)
        )
        try:
            with bound(link):
                first = await anext(inner, _END)
            if first is _END:
                return
            yield first  # type: ignore[misc]
            async for chunk in inner:
                yield chunk
        finally:
            await inner.aclose()
