"""OpenAI chat requests to ras-guard calls, and guarded answers back to OpenAI's response shape.

Images arrive as ``image_url`` parts and become bytes through :mod:`.images` (data URIs decoded, http(s) URLs
fetched only with ``--allow-image-urls``, limits). ``temperature`` / ``top_p`` map
through :func:`ras_guard.sampling.sampling_kwargs`; ``response_format`` (json_object / json_schema) is
validated here and passed to the guard's constrained decoding.

Example:
    >>> from ras_guard.serve.schemas import ChatCompletionRequest
    >>> req = ChatCompletionRequest.model_validate(
    ...     {"model": "demo", "messages": [{"role": "user", "content": "hi"}], "temperature": 0})
    >>> to_call(req, default_max_tokens=16, max_tokens_limit=64, fetcher=None).generation_kwargs
    {'do_sample': False, 'temperature': None, 'top_p': None, 'top_k': None}
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from ..constrained import parse_response_format
from ..errors import InvalidMessageError, ResponseFormatError, UnsupportedRequestError
from ..sampling import sampling_kwargs
from ..types import Decision, GuardedGeneration, RiskAssessment
from .images import Fetcher, check_image_count, image_bytes
from .schemas import ChatCompletionRequest, ImagePart, Message, TextPart

__all__ = ["GuardCall", "ras_object", "to_call", "usage_dict"]



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
        response_format: The request's ``response_format`` (json_object / json_schema; None: free text).
    """

    messages: list[dict[str, Any]]
    max_new_tokens: int
    stop: tuple[str, ...] = ()
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None
    generation_kwargs: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    response_format: dict[str, Any] | None = None

    def batch_key(self) -> str:
        """Requests with equal keys can run in one ``generate_batch`` call."""
        return json.dumps([self.max_new_tokens, self.stop, self.tools, self.generation_kwargs, self.seed,
                           self.response_format], sort_keys=True, default=str)


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
                parts.append({"type": "image", "image": image_bytes(part.image_url.url, f"{where}.content[{j}]",
                                                                    max_bytes, fetcher)})
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


def _response_format(req: ChatCompletionRequest) -> dict[str, Any] | None:
    fmt = req.response_format
    if fmt is None or fmt.get("type") == "text":
        return None
    parse_response_format(fmt)  # ResponseFormatError (400) for a malformed one
    if req.stops:
        raise ResponseFormatError(
            f"stop={req.stops!r} would cut a structured answer into invalid JSON; drop 'stop' when sending "
            "'response_format' (the grammar decides where the answer ends)."
        )
    return fmt


def to_call(
    req: ChatCompletionRequest, *, default_max_tokens: int, max_tokens_limit: int, fetcher: Fetcher | None,
    max_image_bytes: int = 20 * 1024 * 1024, max_images: int = 8,
) -> GuardCall:
    """Check a request against what the engine can do and convert it.

    Raises:
        UnsupportedRequestError: ``n > 1``, image URLs without a fetcher.
        ResponseFormatError: A malformed ``response_format``, or one sent with ``stop``.
        InvalidMessageError: Bad images, too many images, bad tool-call arguments or a ``max_tokens`` over the
            server's limit.
    """
    if req.n != 1:
        raise UnsupportedRequestError(
            f"n={req.n} is not supported: this server returns one choice per request; leave 'n' out (or send "
            "n=1) and send several requests for several answers."
        )
    response_format = _response_format(req)
    check_image_count(req, max_images)
    max_new = req.max_completion_tokens or req.max_tokens or default_max_tokens
    if max_new > max_tokens_limit:
        raise InvalidMessageError(f"max_tokens={max_new} exceeds this server's limit of {max_tokens_limit}.")
    gen = sampling_kwargs(req.temperature, req.top_p)
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
        response_format=response_format,
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


def usage_dict(gen: GuardedGeneration | None) -> dict[str, int]:
    """OpenAI ``usage`` of an answer (zeros for a blocked request)."""
    if gen is None:
        return {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    u = gen.usage
    return {"prompt_tokens": u.input_tokens, "completion_tokens": u.output_tokens, "total_tokens": u.total_tokens}
