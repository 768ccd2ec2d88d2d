"""Tool calls in the text a local model writes (private).

Recognised forms:

* Qwen / Hermes style: ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` (several allowed, text
  around them kept as content);
* a bare JSON object (optionally in a ```json fence) ``{"name": ..., "arguments": {...}}`` (``parameters``
  is accepted for ``arguments``, and ``{"function": {...}}`` wrappers), or a list of them;
* when exactly one tool is forced (``tool_choice`` naming a tool, or ``"any"`` with one tool bound, as
  ``with_structured_output`` does), a bare JSON object without ``name`` is taken as that tool's arguments.

Malformed calls (bad JSON, unknown tool, arguments that are not an object, an unterminated tag) become
``invalid_tool_calls`` instead of being dropped.

Example:
    >>> out = parse_tool_calls('<tool_call>{"name": "add", "arguments": {"a": 1}}</tool_call>', ["add"])
    >>> out.tool_calls[0]["name"], out.tool_calls[0]["args"], out.text
    ('add', {'a': 1}, '')
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from langchain_core.messages import InvalidToolCall, ToolCall
from langchain_core.messages.tool import invalid_tool_call, tool_call
from langchain_core.utils.json import parse_partial_json

__all__ = ["ParsedOutput", "ToolTextBuffer", "forced_tool", "parse_tool_calls", "tool_call_chunks"]

_OPEN, _CLOSE = "<tool_call>", "</tool_call>"
_TAGGED = re.compile(r"<tool_call>(.*?)(</tool_call>|\Z)", re.DOTALL)
_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)


@dataclass
class ParsedOutput:
    """Model text split into content and tool calls."""

    text: str
    tool_calls: list[ToolCall] = field(default_factory=list)
    invalid_tool_calls: list[InvalidToolCall] = field(default_factory=list)


def _new_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def forced_tool(tool_choice: Any, names: Sequence[str]) -> str | None:
    """The one tool a ``tool_choice`` forces, if any.

    Example:
        >>> forced_tool("any", ["Person"]), forced_tool("auto", ["a"]), forced_tool({"name": "b"}, [])
        ('Person', None, 'b')
    """
    if isinstance(tool_choice, dict):
        fn = tool_choice.get("function") or tool_choice
        name = fn.get("name") if isinstance(fn, dict) else None
        return name if isinstance(name, str) else None
    if isinstance(tool_choice, str):
        if tool_choice in ("any", "required"):
            return names[0] if len(names) == 1 else None
        if tool_choice not in ("auto", "none") and tool_choice in names:
            return tool_choice
    if tool_choice is True and len(names) == 1:
        return names[0]
    return None


def _is_envelope(obj: Any, names: Sequence[str]) -> bool:
    """Whether a JSON value looks like ``{"name": ..., "arguments": ...}`` rather than bare arguments."""
    if not isinstance(obj, dict):
        return False
    if isinstance(obj.get("function"), dict):
        return True
    return "name" in obj and (
        any(k in obj for k in ("arguments", "parameters", "args")) or obj["name"] in names
    )


def _one_call(obj: Any, raw: str, names: Sequence[str], forced: str | None) -> ToolCall | InvalidToolCall:
    if isinstance(obj, dict) and isinstance(obj.get("function"), dict):
        obj = obj["function"]
    if not isinstance(obj, dict):
        return invalid_tool_call(name=None, args=raw, id=_new_id(), error="tool call is not a JSON object")
    name = obj.get("name")
    args: Any
    if forced is not None and not _is_envelope(obj, names):
        name, args = forced, obj
    else:
        args = obj.get("arguments", obj.get("parameters", obj.get("args", {})))
    if isinstance(args, str):
        try:
            args = json.loads(args) if args.strip() else {}
        except json.JSONDecodeError as exc:
            return invalid_tool_call(
                name=name, args=args, id=_new_id(), error=f"arguments are not JSON: {exc}"
            )
    if not isinstance(name, str) or not name:
        return invalid_tool_call(name=None, args=raw, id=_new_id(), error="tool call has no 'name'")
    if names and name not in names:
        return invalid_tool_call(
            name=name,
            args=json.dumps(args),
            id=_new_id(),
            error=f"unknown tool {name!r}; bound tools: {list(names)}",
        )
    if not isinstance(args, dict):
        return invalid_tool_call(
            name=name, args=json.dumps(args), id=_new_id(), error="tool arguments must be a JSON object"
        )
    return tool_call(name=name, args=args, id=_new_id())


def _collect(payload: str, names: Sequence[str], forced: str | None, out: ParsedOutput) -> None:
    try:
        obj = json.loads(payload)
    except json.JSONDecodeError as exc:
        out.invalid_tool_calls.append(
            invalid_tool_call(
                name=None, args=payload, id=_new_id(), error=f"tool call is not valid JSON: {exc}"
            )
        )
        return
    for item in obj if isinstance(obj, list) else [obj]:
        call = _one_call(item, payload, names, forced)
        if call.get("type") == "tool_call":
            out.tool_calls.append(cast("ToolCall", call))
        else:
            out.invalid_tool_calls.append(cast("InvalidToolCall", call))


def _bare_json(text: str) -> str | None:
    body = text.strip()
    fenced = _FENCE.match(body)
    if fenced:
        body = fenced.group(1)
    return body if body[:1] in ("{", "[") else None


def parse_tool_calls(text: str, names: Sequence[str], forced: str | None = None) -> ParsedOutput:
    """Split model output into content text, tool calls and invalid tool calls.

    Args:
        text: The generated text.
        names: Names of the bound tools (calls to other names are invalid).
        forced: The tool ``tool_choice`` forces, if exactly one.

    Example:
        >>> parse_tool_calls('{"name": "add", "arguments": "{\\"a\\": 2}"}', ["add"]).tool_calls[0]["args"]
        {'a': 2}
    """
    out = ParsedOutput(text=text)
    if _OPEN in text:
        pieces: list[str] = []
        last = 0
        for m in _TAGGED.finditer(text):
            pieces.append(text[last : m.start()])
            last = m.end()
            if not m.group(2):
                out.invalid_tool_calls.append(
                    invalid_tool_call(
                        name=None,
                        args=m.group(1).strip(),
                        id=_new_id(),
                        error="unterminated <tool_call> (generation stopped inside it)",
                    )
                )
                continue
            _collect(m.group(1).strip(), names, forced, out)
        pieces.append(text[last:])
        out.text = "".join(pieces).strip()
        return out
    body = _bare_json(text)
    if body is None:
        return out
    try:
        obj = json.loads(body)
    except json.JSONDecodeError:
        if body.lstrip("[{ \n").startswith('"name"'):
            _collect(body, names, forced, out)
            out.text = ""
        return out
    items = obj if isinstance(obj, list) else [obj]
    looks_like_calls = bool(items) and all(_is_envelope(i, names) for i in items)
    if looks_like_calls or (forced is not None and isinstance(obj, dict)):
        _collect(body, names, forced, out)
        out.text = ""
    return out


class ToolTextBuffer:
    """Streams text but holds back whatever may be a tool call, to be parsed when generation ends.

    Example:
        >>> buf = ToolTextBuffer(["add"])
        >>> buf.feed("Sure. "), buf.feed("<tool_"), buf.feed('call>{"name": "add"}</tool_call>')
        ('Sure. ', '', '')
        >>> buf.finish().tool_calls[0]["name"]
        'add'
    """

    def __init__(self, names: Sequence[str], forced: str | None = None) -> None:
        self.names = list(names)
        self.forced = forced
        self._text = ""
        self._sent = 0

    def _hold_from(self) -> int:
        t = self._text
        if not t.strip() or t.lstrip()[:1] in ("{", "[", "`"):
            return 0
        at = t.find(_OPEN)
        if at >= 0:
            return at
        for k in range(min(len(_OPEN) - 1, len(t)), 0, -1):
            if t.endswith(_OPEN[:k]):
                return len(t) - k
        return len(t)

    def feed(self, piece: str) -> str:
        """Add generated text; return the part that is safe to stream now."""
        self._text += piece
        upto = max(self._hold_from(), self._sent)
        if upto <= self._sent:
            return ""
        safe = self._text[self._sent : upto]
        self._sent = upto
        return safe

    def finish(self) -> ParsedOutput:
        """Parse the held-back rest; its ``text`` is what remains to be streamed."""
        return parse_tool_calls(self._text[self._sent :], self.names, self.forced)


def tool_call_chunks(parsed: ParsedOutput) -> list[dict[str, Any]]:
    """Streaming form of parsed calls (one chunk each, ``index`` set).

    LangChain re-derives valid/invalid calls from chunk arguments when chunks are merged, so an invalid call
    whose arguments are a JSON object (e.g. an unknown tool name) is given its arguments as a JSON *string*
    literal, which keeps it invalid after merging.
    """
    out: list[dict[str, Any]] = []
    for i, call in enumerate(parsed.tool_calls):
        out.append(
            {
                "type": "tool_call_chunk",
                "name": call["name"],
                "args": json.dumps(call["args"]),
                "id": call["id"],
                "index": i,
            }
        )
    for j, bad in enumerate(parsed.invalid_tool_calls, start=len(out)):
        args = bad.get("args") or ""
        try:
            keeps_invalid = not isinstance(parse_partial_json(args), dict)
        except Exception:  # unparsable even leniently: stays invalid as is
            keeps_invalid = True
        out.append(
            {
                "type": "tool_call_chunk",
                "name": bad.get("name"),
                "args": args if keeps_invalid else json.dumps(args),
                "id": bad.get("id"),
                "index": j,
            }
        )
    return out
