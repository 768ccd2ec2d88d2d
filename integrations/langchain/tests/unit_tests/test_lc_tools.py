"""Tool-call parsing of local model output, whole and streamed."""

from __future__ import annotations

from langchain_core.messages import AIMessageChunk

from langchain_ras_guard._tools import ToolTextBuffer, forced_tool, parse_tool_calls, tool_call_chunks

NAMES = ["get_weather", "add"]


def test_hermes_tags_with_surrounding_text() -> None:
    text = (
        'Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
        '<tool_call>{"name": "add", "arguments": "{\\"a\\": 1, \\"b\\": 2}"}</tool_call>'
    )
    out = parse_tool_calls(text, NAMES)
    assert out.text == "Let me check."
    assert [(c["name"], c["args"]) for c in out.tool_calls] == [
        ("get_weather", {"city": "Paris"}),
        ("add", {"a": 1, "b": 2}),
    ]
    assert len({c["id"] for c in out.tool_calls}) == 2 and not out.invalid_tool_calls


def test_bare_json_forms() -> None:
    assert parse_tool_calls('{"name": "add", "arguments": {"a": 1}}', NAMES).tool_calls[0]["args"] == {"a": 1}
    assert parse_tool_calls('{"name": "add", "parameters": {"a": 1}}', NAMES).tool_calls[0]["args"] == {
        "a": 1
    }
    fenced = '```json\n{"function": {"name": "add", "arguments": {"b": 3}}}\n```'
    assert parse_tool_calls(fenced, NAMES).tool_calls[0]["args"] == {"b": 3}
    both = parse_tool_calls(
        '[{"name": "add", "arguments": {}}, {"name": "get_weather", "arguments": {}}]', NAMES
    )
    assert [c["name"] for c in both.tool_calls] == ["add", "get_weather"] and both.text == ""


def test_plain_text_and_plain_json_are_not_calls() -> None:
    assert parse_tool_calls("The answer is 3.", NAMES).tool_calls == []
    out = parse_tool_calls('{"answer": 3}', NAMES)
    assert out.tool_calls == [] and out.text == '{"answer": 3}'


def test_forced_tool_takes_bare_arguments() -> None:
    out = parse_tool_calls('{"name": "Bob", "age": 3}', ["Person"], forced="Person")
    assert out.tool_calls[0]["name"] == "Person" and out.tool_calls[0]["args"] == {"name": "Bob", "age": 3}
    assert forced_tool("any", ["Person"]) == "Person"
    assert forced_tool("required", ["a", "b"]) is None
    assert forced_tool("add", NAMES) == "add"
    assert forced_tool({"type": "function", "function": {"name": "add"}}, NAMES) == "add"
    assert forced_tool("auto", ["a"]) is None


def test_invalid_calls_are_kept_as_invalid() -> None:
    out = parse_tool_calls('<tool_call>{"name": "add", "arguments": {"a": 1</tool_call>', NAMES)
    assert out.tool_calls == [] and "not valid JSON" in out.invalid_tool_calls[0]["error"]
    out = parse_tool_calls('<tool_call>{"name": "rm_rf", "arguments": {}}</tool_call>', NAMES)
    assert (
        out.invalid_tool_calls[0]["name"] == "rm_rf" and "unknown tool" in out.invalid_tool_calls[0]["error"]
    )
    out = parse_tool_calls('<tool_call>{"name": "add", "arguments": [1, 2]}</tool_call>', NAMES)
    assert "JSON object" in out.invalid_tool_calls[0]["error"]
    out = parse_tool_calls('ok <tool_call>{"name": "add", "argu', NAMES)
    assert out.text == "ok" and "unterminated" in out.invalid_tool_calls[0]["error"]
    out = parse_tool_calls('{"name": "add", "arguments": {"a": ', NAMES)
    assert out.invalid_tool_calls and out.text == ""


def test_stream_buffer_holds_back_calls_only() -> None:
    buf = ToolTextBuffer(NAMES)
    emitted = [
        buf.feed(p)
        for p in [
            "The ",
            "weather: ",
            "<tool",
            "_call>",
            '{"name": "get_weather", ',
            '"arguments": {}}',
            "</tool_call>",
        ]
    ]
    assert "".join(emitted) == "The weather: "
    tail = buf.finish()
    assert tail.text == "" and tail.tool_calls[0]["name"] == "get_weather"

    plain = ToolTextBuffer(NAMES)
    assert "".join(plain.feed(p) for p in ["a <b> ", "c <", "d"]) + plain.finish().text == "a <b> c <d"

    bare = ToolTextBuffer(["Person"], forced="Person")
    assert [bare.feed(p) for p in ['{"name": ', '"Al"}']] == ["", ""]
    assert bare.finish().tool_calls[0]["args"] == {"name": "Al"}


def test_streamed_chunks_merge_back_to_the_same_calls() -> None:
    parsed = parse_tool_calls(
        '<tool_call>{"name": "add", "arguments": {"a": 1}}</tool_call>'
        '<tool_call>{"name": "nope", "arguments": {"x": 1}}</tool_call>',
        NAMES,
    )
    merged = AIMessageChunk(content="x") + AIMessageChunk(
        content="", tool_call_chunks=tool_call_chunks(parsed), chunk_position="last"
    )
    assert [c["name"] for c in merged.tool_calls] == ["add"]
    assert [c["name"] for c in merged.invalid_tool_calls] == ["nope"]
