"""Tool calls in the text a model writes: one parser for the server and the LangChain package.

Recognised forms:

* Qwen / Hermes style: ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` (several allowed, text
  around them kept as content);
* a bare JSON object (optionally in a ```json fence) ``{"name": ..., "arguments": {...}}`` (``parameters`` or
  ``args`` are accepted for ``arguments``, and ``{"function": {...}}`` wrappers), or a list of them;
* when exactly one tool is forced (``tool_choice`` naming a tool, or ``"required"`` / ``"any"`` with one tool),
  a bare JSON object without ``name`` is taken as that tool's arguments.

Malformed calls (bad JSON, unknown tool, arguments that are not an object, an unterminated tag) are returned
as :class:`InvalidCall` instead of being dropped; each caller decides how to show them (LangChain:
``invalid_tool_calls``; the server: the model's text as content, with no tool calls).

Example:
    >>> out = parse_tool_calls('<tool_call>{"name": "add", "arguments": {"a": 1}}</tool_call>', ["add"])
    >>> out.calls[0].name, out.calls[0].args, out.text
    ('add', {'a': 1}, '')
    >>> openai_tool_calls(out)[0]["function"]
    {'name': 'add', 'arguments': '{"a": 1}'}
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["InvalidCall", "ParsedCall", "ParsedText", "forced_tool", "openai_tool_calls", "parse_tool_calls"]

OPEN_TAG = "<tool_call>"
_TAGGED = re.compile(r"<tool_call>(.*?)(</tool_call>|\Z)", re.DOTALL)
_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)


@dataclass(frozen=True)
class ParsedCall:
    """A well-formed call of a known tool."""

    id: str
    name: str
    args: dict[str, Any]


@dataclass(frozen=True)
class InvalidCall:
    """A call that could not be used; ``args`` is the raw (or re-serialised) text, ``error`` says why."""

    id: str
    name: str | None
    args: str
    error: str


@dataclass
class ParsedText:
    """Model text split into content, tool calls and invalid calls."""

    text: str
    calls: list[ParsedCall] = field(default_factory=list)
    invalid: list[InvalidCall] = field(default_factory=list)


def _new_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def forced_tool(tool_choice: Any, names: Sequence[str]) -> str | None:
    """The one tool a ``tool_choice`` forces, if any (OpenAI and LangChain forms).

    Example:
        >>> forced_tool("required", ["Person"]), forced_tool("auto", ["a"]), forced_tool({"name": "b"}, [])
        ('Person', None, 'b')
        >>> forced_tool({"type": "function", "function": {"name": "c"}}, ["c", "d"])
        'c'
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
    return "name" in obj and (any(k in obj for k in ("arguments", "parameters", "args")) or obj["name"] in names)


def _one_call(obj: Any, raw: str, names: Sequence[str], forced: str | None) -> ParsedCall | InvalidCall:
    if isinstance(obj, dict) and isinstance(obj.get("function"), dict):
        obj = obj["function"]
    if not isinstance(obj, dict):
        return InvalidCall(_new_id(), None, raw, "tool call is not a JSON object")
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
            return InvalidCall(_new_id(), name if isinstance(name, str) else None, args,
                               f"arguments are not JSON: {exc}")
    if not isinstance(name, str) or not name:
        return InvalidCall(_new_id(), None, raw, "tool call has no 'name'")
    if names and name not in names:
        return InvalidCall(_new_id(), name, json.dumps(args), f"unknown tool {name!r}; bound tools: {list(names)}")
    if not isinstance(args, dict):
        return InvalidCall(_new_id(), name, json.dumps(args), "tool arguments must be a JSON object")
    return ParsedCall(_new_id(), name, args)


def _collect(payload: str, names: Sequence[str], forced: str | None, out: ParsedText) -> None:
    try:
        obj = json.loads(payload)
    except json.JSONDecodeError as exc:
        out.invalid.append(InvalidCall(_new_id(), None, payload, f"tool call is not valid JSON: {exc}"))
        return
    for item in obj if isinstance(obj, list) else [obj]:
        call = _one_call(item, payload, names, forced)
        (out.calls if isinstance(call, ParsedCall) else out.invalid).append(call)  # type: ignore[arg-type]


def _bare_json(text: str) -> str | None:
    body = text.strip()
    fenced = _FENCE.match(body)
    if fenced:
        body = fenced.group(1)
    return body if body[:1] in ("{", "[") else None


def parse_tool_calls(text: str, names: Sequence[str], forced: str | None = None) -> ParsedText:
    """Split model output into content text, tool calls and invalid calls.

    Args:
        text: The generated text.
        names: Names of the bound tools (calls to other names are invalid).
        forced: The tool ``tool_choice`` forces, if exactly one (:func:`forced_tool`).

    Example:
        >>> parse_tool_calls('{"function": {"name": "add", "arguments": {"a": 2}}}', ["add"]).calls[0].args
        {'a': 2}
        >>> parse_tool_calls("plain text", ["add"]).text
        'plain text'
    """
    out = ParsedText(text=text)
    if OPEN_TAG in text:
        pieces: list[str] = []
        last = 0
        for m in _TAGGED.finditer(text):
            pieces.append(text[last : m.start()])
            last = m.end()
            if not m.group(2):
                out.invalid.append(InvalidCall(_new_id(), None, m.group(1).strip(),
                                               "unterminated <tool_call> (generation stopped inside it)"))
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


def openai_tool_calls(parsed: ParsedText) -> list[dict[str, Any]]:
    """The valid calls in OpenAI's wire form (``arguments`` as a JSON string)."""
    return [{"id": c.id, "type": "function", "function": {"name": c.name, "arguments": json.dumps(c.args)}}
            for c in parsed.calls]
