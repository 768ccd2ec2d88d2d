"""OpenAI chat requests to ras-guard calls, and guarded answers back to OpenAI's response shape.

Images arrive as ``image_url`` parts: ``data:`` URIs are decoded here (their size is checked before decoding);
http(s) URLs are fetched only when the server was given a fetcher (``ImageFetcher.fetch``-like callable), and
refused otherwise.

Example:
    >>> from ras_guard.serve.schemas import ChatCompletionRequest
    >>> req = ChatCompletionRequest.model_validate(
    ...     {"model": "demo", "messages": [{"role": "user", "content": "hi"}], "temperature": 0})
    >>> to_call(req, default_max_tokens=16, max_tokens_limit=64, fetcher=None).generation_kwargs
    {'do_sample': False, 'temperature': None, 'top_p': None, 'top_k': None}
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import ImageTooLargeError, InvalidMessageError, UnsupportedRequestError
from ..types import Decision, GuardedGeneration, RiskAssessment
from .schemas import ChatCompletionRequest, ImagePart, Message, TextPart

__all__ = ["GuardCall", "parse_tool_calls", "ras_object", "to_call"]

Fetcher = Callable[[str], bytes]
_DATA_URI = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(;[^;,]*)*?);base64,(?P<data>.*)$", re.DOTALL)


@dataclass(frozen=True)
class GuardCall:
    """One request in ras-guard's terms.

    Attributes:
        messages: ras-guard chat dicts (images as bytes).
        max_new_tokens: Answer length limit.
        stop: Stop strings.
        tools: OpenAI tool definitions for the chat template (None: no tools).
        tool_choice: The request's ``tool_choice``.
        generation_kwargs: Sampling arguments of ``generate``.
        seed: Seed of the sampler (None: unseeded).
    """

    messages: list[dict[str, Any]]
    max_new_tokens: int
    stop: tuple[str, ...] = ()
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None
    generation_kwargs: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None

    def batch_key(self) -> str:
        """Requests with equal keys can run in one ``generate_batch`` call."""
        return json.dumps([self.max_new_tokens, self.stop, self.tools, self.generation_kwargs, self.seed],
                          sort_keys=True, default=str)


def _image_bytes(part: ImagePart, where: str, max_bytes: int, fetcher: Fetcher | None) -> bytes:
    url = part.image_url.url
    if url.startswith("data:"):
        m = _DATA_URI.match(url)
        if m is None:
            raise InvalidMessageError(f"{where}: a data URI must be 'data:<mime>;base64,<data>' (got {url[:40]!r}).")
        data = m.group("data")
        if len(data) * 3 // 4 > max_bytes:
            raise ImageTooLargeError(f"{where}: the image of about {len(data) * 3 // 4} bytes exceeds {max_bytes}.")
        try:
            return base64.b64decode(re.sub(r"\s+", "", data), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InvalidMessageError(f"{where}: the data URI holds invalid base64 ({exc}).") from exc
    if url.startswith(("http://", "https://")):
        if fetcher is None:
            raise UnsupportedRequestError(
                f"{where}: this server does not fetch image URLs ({url[:60]!r}); send the image as a "
                "'data:image/png;base64,...' URI."
            )
        return fetcher(url)
    raise InvalidMessageError(f"{where}: image_url must be a data: URI or an http(s) URL, got {url[:40]!r}.")


def _tool_calls(msg: Message, where: str) -> list[dict[str, Any]]:
    calls = []
    for j, call in enumerate(msg.tool_calls or []):
        try:
            args = json.loads(call.function.arguments or "{}")
        except json.JSONDecodeError as exc:
            raise InvalidMessageError(f"{where}.tool_calls[{j}]: arguments are not valid JSON ({exc}).") from exc
        calls.append({"id": call.id, "type": "function",
                      "function": {"name": call.function.name, "arguments": args}})
    return calls


def _messages(req: ChatCompletionRequest, max_bytes: int, fetcher: Fetcher | None) -> list[dict[str, Any]]:
    out = []
    for i, msg in enumerate(req.messages):
        where = f"messages[{i}]"
        parts: list[dict[str, Any]] = []
        content = msg.content
        if isinstance(content, str):
            parts.append({"type": "text", "text": content})
        for j, part in enumerate(content if isinstance(content, list) else []):
            if isinstance(part, TextPart):
                parts.append({"type": "text", "text": part.text})
            elif isinstance(part, ImagePart):
                if msg.role != "user":
                    raise InvalidMessageError(f"{where}.content[{j}]: only user messages may hold images.")
                parts.append({"type": "image", "image": _image_bytes(part, f"{where}.content[{j}]", max_bytes,
                                                                     fetcher)})
            else:
                parts.append({"type": "text", "text": part.refusal})
        d: dict[str, Any] = {"role": "system" if msg.role == "developer" else msg.role, "content": parts}
        if msg.tool_calls:
            d["tool_calls"] = _tool_calls(msg, where)
        if msg.tool_call_id is not None:
            d["tool_call_id"] = msg.tool_call_id
        if msg.name is not None:
            d["name"] = msg.name
        out.append(d)
    return out


def _sampling(req: ChatCompletionRequest) -> dict[str, Any]:
    if req.temperature is None:
        return {} if req.top_p is None else {"top_p": float(req.top_p)}
    if req.temperature == 0:
        return {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
    gen: dict[str, Any] = {"do_sample": True, "temperature": float(req.temperature)}
    if req.top_p is not None:
        gen["top_p"] = float(req.top_p)
    return gen


def to_call(
    req: ChatCompletionRequest, *, default_max_tokens: int, max_tokens_limit: int, fetcher: Fetcher | None,
    max_image_bytes: int = 20 * 1024 * 1024, max_images: int = 8,
) -> GuardCall:
    """Check a request against what the engine can do and convert it.

    Raises:
        UnsupportedRequestError: ``n > 1``, ``response_format`` other than text, image URLs without a fetcher.
        InvalidMessageError: Bad images, too many images, bad tool-call arguments or a ``max_tokens`` over the
            server's limit.
    """
    if req.n != 1:
        raise UnsupportedRequestError(f"n={req.n} is not supported; this server returns one choice (n=1).")
    fmt = (req.response_format or {}).get("type", "text")
    if fmt != "text":
        raise UnsupportedRequestError(
            f"response_format type {fmt!r} is not supported by this engine (no constrained decoding yet); "
            "ask for JSON in the prompt, or use tools."
        )
    images = sum(isinstance(p, ImagePart) for m in req.messages if isinstance(m.content, list) for p in m.content)
    if images > max_images:
        raise InvalidMessageError(f"the request holds {images} images; this server takes at most {max_images}.")
    max_new = req.max_completion_tokens or req.max_tokens or default_max_tokens
    if max_new > max_tokens_limit:
        raise InvalidMessageError(f"max_tokens={max_new} exceeds this server's limit of {max_tokens_limit}.")
    gen = _sampling(req)
    if req.min_tokens:
        if req.min_tokens > max_new:
            raise InvalidMessageError(f"min_tokens={req.min_tokens} exceeds max_tokens={max_new}.")
        gen["min_new_tokens"] = req.min_tokens
    tools = None
    if req.tools and req.tool_choice != "none":
        tools = [t.model_dump(exclude_none=True) for t in req.tools]
    return GuardCall(
        messages=_messages(req, max_image_bytes, fetcher), max_new_tokens=max_new, stop=tuple(req.stops),
        tools=tools, tool_choice=req.tool_choice, generation_kwargs=gen, seed=req.seed,
    )


# ---------------------------------------------------------------------------------------------- responses
def ras_object(
    a: RiskAssessment, decision: Decision, *, policy: str, timings: dict[str, float] | None = None,
    visual_context: bool = False,
) -> dict[str, Any]:
    """The ``ras`` extension object of a response (the visual context only when the server exposes it)."""
    sim = a.similarity if math.isfinite(a.similarity) else None
    out: dict[str, Any] = {
        "risk": float(a.risk), "similarity": sim, "decision": decision.value, "policy": policy,
        "risk_given": a.given, "calibration_id": a.calibration_id, "guard_tokens": a.guard_tokens,
        "timings": dict(timings if timings is not None else a.timings),
    }
    if visual_context:
        out["visual_context"] = a.visual_context
    return out


_TAGGED = re.compile(r"<tool_call>(.*?)</tool_call>", re.DOTALL)


def _call(obj: Any, names: list[str], forced: str | None) -> dict[str, Any] | None:
    if not isinstance(obj, dict):
        return None
    obj = obj.get("function", obj) if isinstance(obj.get("function"), dict) else obj
    name = obj.get("name", forced)
    args = obj.get("arguments", obj.get("parameters")) if "name" in obj else obj
    if name not in names or not isinstance(args, dict):
        return None
    return {"id": f"call_{uuid.uuid4().hex[:24]}", "type": "function",
            "function": {"name": name, "arguments": json.dumps(args)}}


def parse_tool_calls(text: str, names: list[str], forced: str | None = None) -> tuple[str, list[dict[str, Any]]]:
    """Split model text into content and OpenAI tool calls (``<tool_call>`` tags or one bare JSON object).

    Example:
        >>> parse_tool_calls('<tool_call>{"name": "add", "arguments": {"a": 1}}</tool_call>', ["add"])[1][0]["function"]
        {'name': 'add', 'arguments': '{"a": 1}'}
    """
    payloads = _TAGGED.findall(text)
    rest = _TAGGED.sub("", text).strip() if payloads else ""
    if not payloads:
        stripped = text.strip().removeprefix("```json").removeprefix("```").removesuffix("```").strip()
        if not stripped.startswith(("{", "[")):
            return text, []
        payloads, rest = [stripped], ""
    calls = []
    for raw in payloads:
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError:
            return text, []
        for item in obj if isinstance(obj, list) else [obj]:
            call = _call(item, names, forced)
            if call is None:
                return text, []
            calls.append(call)
    return rest, calls


def usage_dict(gen: GuardedGeneration | None) -> dict[str, int]:
    """OpenAI ``usage`` of an answer (zeros for a blocked request)."""
    if gen is None:
        return {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    u = gen.usage
    return {"prompt_tokens": u.input_tokens, "completion_tokens": u.output_tokens, "total_tokens": u.total_tokens}


def forced_tool(tool_choice: Any, names: list[str]) -> str | None:
    """The tool name a ``tool_choice`` forces (``required`` with one tool, or a named function)."""
    if isinstance(tool_choice, dict):
        return (tool_choice.get("function") or {}).get("name")
    if tool_choice == "required" and len(names) == 1:
        return names[0]
    return None
