"""HTTP side of the remote chat model: retried requests, SSE parsing, OpenAI bodies to messages (private).

Example:
    >>> body = {"choices": [{"message": {"content": "hi"}, "finish_reason": "stop"}], "ras": {}}
    >>> message_of(body, "m").content
    'hi'
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncGenerator, Generator, Iterator
from typing import Any

import httpx
from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGenerationChunk
from ras_guard.errors import GenerationError, InvalidMessageError, RASGuardError, ServerOverloadedError
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
)

__all__ = ["ChunkBuilder", "RemoteHTTP", "message_of"]

_RETRY_STATUS = (429, 500, 502, 503, 504)


class _Retryable(Exception):
    def __init__(self, status: int, message: str, retry_after: float | None) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status, self.message, self.retry_after = status, message, retry_after


def _error_message(resp: httpx.Response) -> str:
    try:
        return str(resp.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return resp.text[:200]


def _raise_for(resp: httpx.Response) -> None:
    if resp.status_code < 400:
        return
    msg = _error_message(resp)
    if resp.status_code in _RETRY_STATUS:
        after = resp.headers.get("retry-after")
        raise _Retryable(resp.status_code, msg, float(after) if after and after.isdigit() else None)
    if resp.status_code in (401, 403):
        raise RASGuardError(f"the server refused the API key (HTTP {resp.status_code}): {msg}")
    raise InvalidMessageError(f"the server rejected the request (HTTP {resp.status_code}): {msg}")


def _final(exc: BaseException) -> BaseException:
    if isinstance(exc, _Retryable):
        if exc.status in (429, 503):
            return ServerOverloadedError(f"the server stayed overloaded through every retry: {exc.message}")
        return GenerationError(f"the server failed to answer (HTTP {exc.status}): {exc.message}")
    if isinstance(exc, httpx.TransportError):
        return GenerationError(f"cannot reach the ras-guard server: {exc!r}")
    return exc


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, _Retryable | httpx.ConnectError | httpx.ConnectTimeout | httpx.RemoteProtocolError)


class RemoteHTTP:
    """Calls of one ``/v1/chat/completions`` endpoint with bounded retries."""

    def __init__(self, base_url: str, api_key: str | None, *, timeout: float, max_retries: int) -> None:
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.timeout, self.max_retries = timeout, max_retries
        self._deadline = time.monotonic() + timeout

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        backoff = min(4.0, 0.25 * 2 ** (state.attempt_number - 1))
        hint = exc.retry_after if isinstance(exc, _Retryable) and exc.retry_after else 0.0
        return max(0.0, min(max(backoff, hint), self._deadline - time.monotonic()))

    def _policy(self) -> dict[str, Any]:
        return dict(
            retry=retry_if_exception(_retryable),
            wait=self._wait,
            reraise=True,
            stop=stop_after_attempt(self.max_retries + 1) | stop_after_delay(self.timeout),
        )

    def _left(self) -> float:
        return max(0.1, self._deadline - time.monotonic())

    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        """One answer (retried)."""
        try:
            for attempt in Retrying(**self._policy()):
                with attempt, httpx.Client(timeout=self._left()) as client:
                    resp = client.post(self.url, json=body, headers=self.headers)
                    _raise_for(resp)
                    return resp.json()
        except BaseException as exc:
            raise _final(exc) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    async def apost(self, body: dict[str, Any]) -> dict[str, Any]:
        """Async :meth:`post`."""
        try:
            async for attempt in AsyncRetrying(**self._policy()):
                with attempt:
                    async with httpx.AsyncClient(timeout=self._left()) as client:
                        resp = await client.post(self.url, json=body, headers=self.headers)
                        _raise_for(resp)
                        return resp.json()
        except BaseException as exc:
            raise _final(exc) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def stream(self, body: dict[str, Any]) -> Generator[dict[str, Any], None, None]:
        """SSE events as dicts; retried until the first byte of an accepted answer only."""
        client = httpx.Client(timeout=self._left())
        try:
            resp = None
            try:
                for attempt in Retrying(**self._policy()):
                    with attempt:
                        resp = client.send(
                            client.build_request("POST", self.url, json=body, headers=self.headers),
                            stream=True,
                        )
                        if resp.status_code >= 400:
                            resp.read()
                            _raise_for(resp)
            except BaseException as exc:
                raise _final(exc) from exc
            assert resp is not None
            try:
                yield from _events(resp.iter_lines())
            finally:
                resp.close()
        finally:
            client.close()

    async def astream(self, body: dict[str, Any]) -> AsyncGenerator[dict[str, Any], None]:
        """Async :meth:`stream`."""
        async with httpx.AsyncClient(timeout=self._left()) as client:
            resp = None
            try:
                async for attempt in AsyncRetrying(**self._policy()):
                    with attempt:
                        req = client.build_request("POST", self.url, json=body, headers=self.headers)
                        resp = await client.send(req, stream=True)
                        if resp.status_code >= 400:
                            await resp.aread()
                            _raise_for(resp)
            except BaseException as exc:
                raise _final(exc) from exc
            assert resp is not None
            try:
                async for line in resp.aiter_lines():
                    for event in _events([line]):
                        yield event
            finally:
                await resp.aclose()


def _events(lines: Any) -> Iterator[dict[str, Any]]:
    for line in lines:
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            return
        event = json.loads(data)
        if "error" in event:
            raise GenerationError(f"the server failed mid-answer: {event['error'].get('message')}")
        yield event


def _usage(u: dict[str, Any] | None) -> UsageMetadata:
    u = u or {}
    return UsageMetadata(
        input_tokens=int(u.get("prompt_tokens", 0)),
        output_tokens=int(u.get("completion_tokens", 0)),
        total_tokens=int(u.get("total_tokens", 0)),
    )


def _tool_calls(raw: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    return [
        {
            "name": c["function"]["name"],
            "args": json.loads(c["function"]["arguments"] or "{}"),
            "id": c.get("id"),
            "type": "tool_call",
        }
        for c in raw or []
    ]


def message_of(data: dict[str, Any], model: str) -> AIMessage:
    """The AIMessage of a ``chat.completion`` body (a refusal becomes a standard refusal block)."""
    choice = data["choices"][0]
    msg = choice["message"]
    meta = {
        "model_name": data.get("model", model),
        "finish_reason": choice.get("finish_reason"),
        "ras": data.get("ras", {}),
    }
    if msg.get("refusal"):
        meta["finish_reason"] = "refusal"
        return AIMessage(
            content=[{"type": "refusal", "refusal": msg["refusal"]}],
            usage_metadata=_usage(None),
            response_metadata=meta,
        )
    return AIMessage(
        content=msg.get("content") or "",
        tool_calls=_tool_calls(msg.get("tool_calls")),
        usage_metadata=_usage(data.get("usage")),
        response_metadata=meta,
    )


class ChunkBuilder:
    """SSE events to LangChain chunks: the first carries ``ras`` (and a refusal), the last usage and tools."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.finish: str | None = None
        self.tool_chunks: list[dict[str, Any]] = []
        self.refused = False

    def feed(self, event: dict[str, Any]) -> list[ChatGenerationChunk]:
        """Chunks for one event (the closing one is made by :meth:`close`)."""
        if not event.get("choices"):
            return [self.close(event.get("usage"))]
        choice = event["choices"][0]
        delta = choice.get("delta") or {}
        if "ras" in event and delta.get("role"):  # the first event
            content: Any = ""
            if delta.get("refusal"):
                self.refused = True
                content = [{"type": "refusal", "refusal": delta["refusal"]}]
            return [
                ChatGenerationChunk(
                    message=AIMessageChunk(content=content, response_metadata={"ras": event["ras"]})
                )
            ]
        if choice.get("finish_reason"):
            self.finish = "refusal" if self.refused else choice["finish_reason"]
        for k, call in enumerate(delta.get("tool_calls") or []):
            self.tool_chunks.append(
                {
                    "name": call["function"]["name"],
                    "args": call["function"]["arguments"],
                    "id": call.get("id"),
                    "index": call.get("index", k),
                    "type": "tool_call_chunk",
                }
            )
        text = delta.get("content") or ""
        return [ChatGenerationChunk(message=AIMessageChunk(content=text))] if text else []

    def close(self, usage: dict[str, Any] | None) -> ChatGenerationChunk:
        """The last chunk: tool calls, usage, finish reason, ``chunk_position="last"``."""
        return ChatGenerationChunk(
            message=AIMessageChunk(
                content="",
                tool_call_chunks=self.tool_chunks,  # type: ignore[arg-type]
                usage_metadata=_usage(usage),
                chunk_position="last",
                response_metadata={"model_name": self.model, "finish_reason": self.finish or "stop"},
            )
        )
