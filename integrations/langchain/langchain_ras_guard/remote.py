"""``RemoteRASGuardedChatModel``: the guarded chat model served by ``ras-guard serve``, over HTTP.

The same experience as the in-process :class:`~langchain_ras_guard.RASGuardedChatModel`: the custom event
``ras_risk_assessed`` before the first token, ``response_metadata["ras"]``, usage, tools and structured
output (through ``bind_tools``), the middleware and the safety log. Requests go over httpx; connection errors,
429 and 5xx answers are retried with exponential back-off, all attempts bounded by ``timeout``. Image URLs are
fetched here, with the same SSRF protection as the local model, and sent as data URIs.

Example:
    >>> from langchain_ras_guard import RemoteRASGuardedChatModel
    >>> llm = RemoteRASGuardedChatModel(base_url="http://127.0.0.1:8000/v1", model="demo")  # doctest: +SKIP
    >>> llm.invoke("How do I bake bread?").response_metadata["ras"]["decision"]  # doctest: +SKIP
    'answered'
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any, Literal

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage, convert_to_openai_messages
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ConfigDict, Field, SecretStr
from ras_guard.fetch import FetchPolicy, ImageFetcher
from typing_extensions import override

from . import _runs
from ._remote_http import ChunkBuilder, RemoteHTTP, message_of
from .chat_models import RAS_EVENT

__all__ = ["RemoteRASGuardedChatModel"]


class RemoteRASGuardedChatModel(_runs.RunLinkedChatModel):
    """A chat model answered by a ``ras-guard serve`` endpoint (OpenAI-compatible, plus the ``ras`` object).

    Per-call keyword arguments: ``max_tokens``, ``temperature``, ``top_p``, ``seed``, ``ras_policy``.

    Example:
        >>> llm = RemoteRASGuardedChatModel(base_url="http://127.0.0.1:8000/v1")  # doctest: +SKIP
        >>> for chunk in llm.stream("Tell me a joke"):  # doctest: +SKIP
        ...     print(chunk.text, end="")
    """

    model_config = ConfigDict(populate_by_name=True)

    base_url: str = "http://127.0.0.1:8000/v1"
    """The server's OpenAI base URL (ending in ``/v1``)."""
    api_key: SecretStr | None = None
    """Bearer key, if the server was started with ``--api-key``."""
    model: str = "demo"
    """The model id the server serves."""
    max_tokens: int = Field(default=256, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    seed: int | None = None
    stop: list[str] | None = Field(default=None, alias="stop_sequences")
    streaming: bool = False
    """Stream tokens to callback handlers also from ``invoke``."""
    policy: Literal["steer", "block", "monitor"] | None = None
    """Per-request policy override (None: the server's)."""
    block_threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    timeout: float = Field(default=120.0, gt=0.0)
    """Seconds a call may take, every retry included."""
    max_retries: int = Field(default=3, ge=0)
    """Retries after a connection error, a 429 or a 5xx answer."""
    allowed_hosts: list[str] = Field(default_factory=list)
    """Image URL hosts exempt from the private-address check."""
    allow_private_urls: bool = False
    max_image_bytes: int = Field(default=20 * 1024 * 1024, ge=1)
    image_timeout: float = Field(default=10.0, gt=0.0)

    @property
    def _llm_type(self) -> str:
        return "ras-guard-remote"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "base_url": self.base_url,
            "model": self.model,
            "policy": self.policy,
            "max_tokens": self.max_tokens,
        }

    @property
    def model_name(self) -> str:
        """The name reported in ``response_metadata["model_name"]``."""
        return self.model

    # ------------------------------------------------------------------ requests
    def _http(self) -> RemoteHTTP:
        key = self.api_key.get_secret_value() if self.api_key else None
        return RemoteHTTP(self.base_url, key, timeout=self.timeout, max_retries=self.max_retries)

    def _inline_image(self, url: str) -> str:
        if not url.startswith(("http://", "https://")):
            return url
        fetcher = ImageFetcher(
            FetchPolicy(
                allowed_hosts=tuple(self.allowed_hosts),
                allow_private=self.allow_private_urls,
                max_bytes=self.max_image_bytes,
                timeout=self.image_timeout,
            )
        )
        return "data:image/png;base64," + base64.b64encode(fetcher.fetch(url)).decode()

    def _body(
        self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any], stream: bool
    ) -> dict[str, Any]:
        msgs = convert_to_openai_messages(messages)
        for m in msgs:
            content = m.get("content")
            for part in content if isinstance(content, list) else []:
                if part.get("type") == "image_url":
                    part["image_url"] = {
                        **part["image_url"],
                        "url": self._inline_image(part["image_url"]["url"]),
                    }
        body: dict[str, Any] = {
            "model": self.model,
            "messages": msgs,
            "max_tokens": kwargs.pop("max_tokens", self.max_tokens),
            "stream": stream,
        }
        for name in ("temperature", "top_p", "seed"):
            value = kwargs.pop(name, getattr(self, name))
            if value is not None:
                body[name] = value
        if stops := (stop or self.stop):
            body["stop"] = list(stops)
        policy = kwargs.pop("ras_policy", self.policy)
        ras = {
            k: v for k, v in (("policy", policy), ("block_threshold", self.block_threshold)) if v is not None
        }
        if ras:
            body["ras"] = ras
        for name in ("tools", "tool_choice"):
            if (value := kwargs.pop(name, None)) is not None:
                body[name] = value
        if stream:
            body["stream_options"] = {"include_usage": True}
        if kwargs:
            raise TypeError(f"unknown arguments {sorted(kwargs)}; see RemoteRASGuardedChatModel's docstring.")
        return body

    def _link(self, run_manager: Any) -> _runs.RunLink | None:
        return _runs.link(self, run_manager)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        data = self._http().post(self._body(messages, stop, kwargs, stream=False))
        _runs.dispatch(self._link(run_manager), RAS_EVENT, data.get("ras", {}))
        return ChatResult(generations=[ChatGeneration(message=message_of(data, self.model))])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        data = await self._http().apost(self._body(messages, stop, kwargs, stream=False))
        await _runs.adispatch(self._link(run_manager), RAS_EVENT, data.get("ras", {}))
        return ChatResult(generations=[ChatGeneration(message=message_of(data, self.model))])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        events = self._http().stream(self._body(messages, stop, kwargs, stream=True))
        builder = ChunkBuilder(self.model)
        try:
            for event in events:
                for chunk in builder.feed(event):
                    if "ras" in chunk.message.response_metadata:
                        _runs.dispatch(
                            self._link(run_manager), RAS_EVENT, chunk.message.response_metadata["ras"]
                        )
                    elif run_manager and chunk.text:
                        run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                    yield chunk
        finally:
            events.close()  # closing the connection cancels the generation on the server

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        events = self._http().astream(self._body(messages, stop, kwargs, stream=True))
        builder = ChunkBuilder(self.model)
        try:
            async for event in events:
                for chunk in builder.feed(event):
                    if "ras" in chunk.message.response_metadata:
                        await _runs.adispatch(
                            self._link(run_manager), RAS_EVENT, chunk.message.response_metadata["ras"]
                        )
                    elif run_manager and chunk.text:
                        await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                    yield chunk
        finally:
            await events.aclose()

    # ------------------------------------------------------------------ tools
    @override
    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: dict[str, Any] | str | bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Send tools to the server (rendered by the model's chat template, calls parsed there).

        Example:
            >>> llm.bind_tools([get_weather]).invoke("Weather in Paris?").tool_calls  # doctest: +SKIP
        """
        schemas = [convert_to_openai_tool(t) for t in tools]
        names = [s["function"]["name"] for s in schemas]
        if tool_choice in ("any", True):
            tool_choice = "required"
        elif isinstance(tool_choice, str) and tool_choice in names:
            tool_choice = {"type": "function", "function": {"name": tool_choice}}
        return super().bind(tools=schemas, tool_choice=tool_choice, **kwargs)
