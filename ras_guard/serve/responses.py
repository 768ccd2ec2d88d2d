"""OpenAI-shaped bodies: completions, SSE chunks and error objects (private to the server).

Example:
    >>> error_body("bad", code="x")["error"]["code"]
    'x'
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from ..constrained import REFUSAL
from ..tools import forced_tool, openai_tool_calls, parse_tool_calls
from ..types import Decision, GuardedGeneration
from .convert import GuardCall, usage_dict

__all__ = ["Answer", "HTTPError", "error_body", "sse"]


class HTTPError(Exception):
    """An error answered as OpenAI's ``{"error": {...}}`` body with a status code."""

    def __init__(
        self, status: int, message: str, *, type: str = "invalid_request_error", code: str | None = None,
        param: str | None = None, headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type, code, param
        self.headers = headers or {}


def error_body(message: str, *, type: str = "invalid_request_error", code: str | None = None,
               param: str | None = None) -> dict[str, Any]:
    """OpenAI's error object."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def sse(obj: Any) -> str:
    """One server-sent event."""
    return f"data: {obj if isinstance(obj, str) else json.dumps(obj)}\n\n"


@dataclass
class Answer:
    """Builds the bodies of one answer (ids, model name, tool parsing)."""

    call: GuardCall
    model: str
    refusal: str
    ras: dict[str, Any]
    id: str = field(default_factory=lambda: f"chatcmpl-{uuid.uuid4().hex}")
    created: int = field(default_factory=lambda: int(time.time()))

    @property
    def blocked(self) -> bool:
        return self.ras["decision"] == Decision.BLOCKED.value

    def headers(self) -> dict[str, str]:
        """The assessment as response headers (readable by clients that only expose headers)."""
        h = {"x-ras-risk": f"{self.ras['risk']:.6f}", "x-ras-decision": self.ras["decision"],
             "x-ras-calibration-id": str(self.ras["calibration_id"])}
        if self.ras["similarity"] is not None:
            h["x-ras-similarity"] = f"{self.ras['similarity']:.6f}"
        return h

    @staticmethod
    def refused(gen: GuardedGeneration | None) -> bool:
        """Blocked (no answer), or refused by constrained decoding (a high-risk row under a response_format)."""
        return gen is None or gen.finish_reason == REFUSAL

    def _split(self, gen: GuardedGeneration) -> tuple[str, list[dict[str, Any]], str]:
        if not self.call.tools:
            return gen.text, [], gen.finish_reason
        names = [t["function"]["name"] for t in self.call.tools]
        parsed = parse_tool_calls(gen.text, names, forced_tool(self.call.tool_choice, names))
        if parsed.invalid or not parsed.calls:  # OpenAI has no invalid calls: the model's text, unparsed
            return gen.text, [], gen.finish_reason
        return parsed.text, openai_tool_calls(parsed), "tool_calls"

    def _final_ras(self, gen: GuardedGeneration | None) -> dict[str, Any]:
        if gen is None:
            return self.ras
        timings = {**self.ras["timings"], "answer": gen.timings.get("answer", 0.0)}
        return {**self.ras, "timings": timings}

    def completion(self, gen: GuardedGeneration | None) -> dict[str, Any]:
        """The ``chat.completion`` object (a refusal in ``message.refusal``, finish_reason ``stop``)."""
        if self.refused(gen):
            message: dict[str, Any] = {"role": "assistant", "content": None, "refusal": self.refusal}
            finish = "stop"
        else:
            assert gen is not None
            text, calls, finish = self._split(gen)
            message = {"role": "assistant", "content": text, "refusal": None}
            if calls:
                message["tool_calls"] = calls
        return {
            "id": self.id, "object": "chat.completion", "created": self.created, "model": self.model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
            "usage": usage_dict(gen), "ras": self._final_ras(gen),
        }

    def chunk(self, delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
        """One ``chat.completion.chunk``."""
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}], **extra}

    def first_chunk(self) -> dict[str, Any]:
        """The first event: the role and the ``ras`` object (and the refusal when blocked), before any token."""
        delta: dict[str, Any] = {"role": "assistant", "content": None if self.blocked else ""}
        if self.blocked:
            delta["refusal"] = self.refusal
        return self.chunk(delta, ras=self.ras)

    def last_chunks(self, gen: GuardedGeneration | None, streamed_text: bool, include_usage: bool) -> list[str]:
        """The closing events: tool calls or buffered text, the finish reason, usage, ``[DONE]``."""
        out = []
        if gen is None:
            out.append(self.chunk({}, "stop"))
        elif gen.finish_reason == REFUSAL:
            out.append(self.chunk({"refusal": self.refusal}, "stop", ras=self._final_ras(gen)))
        else:
            text, calls, finish = self._split(gen)
            delta: dict[str, Any] = {}
            if calls:
                delta["tool_calls"] = [{"index": k, **c} for k, c in enumerate(calls)]
            if text and not streamed_text:
                delta["content"] = text
            out.append(self.chunk(delta, finish, ras=self._final_ras(gen)))
        if include_usage:
            body = self.chunk({}, None, usage=usage_dict(gen))
            body["choices"] = []
            out.append(body)
        return [*(sse(o) for o in out), sse("[DONE]")]
