"""Tool calls in the text a local model writes, as LangChain tool calls (private).

The parsing is the core's (:mod:`ras_guard.tools`, shared with the server); this module turns its result into
LangChain's ``ToolCall`` / ``InvalidToolCall`` and adds the streaming helpers. Malformed calls (bad JSON,
unknown tool, arguments that are not an object, an unterminated tag) become ``invalid_tool_calls`` instead of
being dropped.

Example:
    >>> out = parse_tool_calls('<tool_call>{"name": "add", "arguments": {"a": 1}}</tool_call>', ["add"])
    >>> out.tool_calls[0]["name"], out.tool_calls[0]["args"], out.text
    ('add', {'a': 1}, '')
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import InvalidToolCall, ToolCall
from langchain_core.messages.tool import invalid_tool_call, tool_call
from langchain_core.utils.json import parse_partial_json
from ras_guard import tools as _core
from ras_guard.tools import forced_tool

__all__ = ["ParsedOutput", "ToolTextBuffer", "forced_tool", "parse_tool_calls", "tool_call_chunks"]

_OPEN = _core.OPEN_TAG


@dataclass
class ParsedOutput:
    """Model text split into content and tool calls."""

    text: str
    tool_calls: list[ToolCall] = field(default_factory=list)
    invalid_tool_calls: list[InvalidToolCall] = field(default_factory=list)


def parse_tool_calls(text: str, names: Sequence[str], forced: str | None = None) -> ParsedOutput:
    """Split model output into content text, tool calls and invalid tool calls (see :mod:`ras_guard.tools`).

    Args:
        text: The generated text.
        names: Names of the bound tools (calls to other names are invalid).
        forced: The tool ``tool_choice`` forces, if exactly one.

    Example:
        >>> out = parse_tool_calls('{"function": {"name": "add", "arguments": {"a": 2}}}', ["add"])
        >>> out.tool_calls[0]["args"]
        {'a': 2}
    """
    parsed = _core.parse_tool_calls(text, names, forced)
    return ParsedOutput(
        text=parsed.text,
        tool_calls=[tool_call(name=c.name, args=c.args, id=c.id) for c in parsed.calls],
        invalid_tool_calls=[
            invalid_tool_call(name=c.name, args=c.args, id=c.id, error=c.error) for c in parsed.invalid
        ],
    )


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
