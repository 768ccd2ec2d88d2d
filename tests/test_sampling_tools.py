"""``ras_guard.sampling`` (OpenAI temperature / top_p -> generate arguments) and ``ras_guard.tools`` (tool calls in
model text), and tools through the server's chat template on a tiny tool-capable checkpoint (Qwen-style template
from ``ras_guard.testing``) with its own fitted calibration.
"""

from __future__ import annotations

import json
import math

import openai
import pytest

from ras_guard import Calibration, RASConfig, RASGuard
from ras_guard.data import ReferenceQuery
from ras_guard.errors import InvalidMessageError
from ras_guard.sampling import GREEDY, sampling_kwargs
from ras_guard.serve import ServeSettings, create_app, serve_in_thread
from ras_guard.tools import InvalidCall, forced_tool, openai_tool_calls, parse_tool_calls

NAMES = ["get_weather", "add"]


# ------------------------------------------------------------------------------------------------ sampling
@pytest.mark.parametrize(
    "temperature, top_p, want",
    [
        (None, None, {}),
        (0, None, GREEDY),
        (0.0, 0.3, GREEDY),  # greedy: top_p is moot and dropped
        (0.7, None, {"do_sample": True, "temperature": 0.7}),
        (1.3, 0.9, {"do_sample": True, "temperature": 1.3, "top_p": 0.9}),
        (None, 0.5, {"do_sample": True, "temperature": 1.0, "top_p": 0.5}),  # OpenAI's default temperature
        (2, 1, {"do_sample": True, "temperature": 2.0, "top_p": 1.0}),
    ],
)
def test_sampling_mapping(temperature, top_p, want):
    got = sampling_kwargs(temperature, top_p)
    assert got == want
    assert all(type(v) is float for k, v in got.items() if k in ("temperature", "top_p") and v is not None)


def test_sampling_result_is_a_fresh_dict():
    sampling_kwargs(0)["do_sample"] = True
    assert GREEDY["do_sample"] is False and sampling_kwargs(0)["do_sample"] is False


@pytest.mark.parametrize(
    "temperature, top_p, needle",
    [(-0.1, None, "temperature"), (math.nan, None, "temperature"), (math.inf, None, "temperature"),
     (None, 0.0, "top_p"), (None, 1.5, "top_p"), (0.5, -1.0, "top_p"), (None, math.nan, "top_p")],
)
def test_sampling_refuses_bad_values(temperature, top_p, needle):
    with pytest.raises(InvalidMessageError, match=needle):
        sampling_kwargs(temperature, top_p)


# ------------------------------------------------------------------------------------------------ tools
def test_tagged_calls_keep_surrounding_text_and_get_distinct_ids():
    text = ('Let me check.\n<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>\n'
            '<tool_call>{"name": "add", "arguments": "{\\"a\\": 1}"}</tool_call> done')
    out = parse_tool_calls(text, NAMES)
    assert out.text == "Let me check.\n\n done"
    assert [(c.name, c.args) for c in out.calls] == [("get_weather", {"city": "Paris"}), ("add", {"a": 1})]
    assert len({c.id for c in out.calls}) == 2 and not out.invalid
    wire = openai_tool_calls(out)
    assert wire[1]["type"] == "function" and json.loads(wire[1]["function"]["arguments"]) == {"a": 1}


def test_unterminated_tag_is_invalid_not_dropped():
    out = parse_tool_calls('ok <tool_call>{"name": "add", "argu', NAMES)
    assert out.calls == [] and out.text == "ok"
    assert len(out.invalid) == 1 and "unterminated" in out.invalid[0].error


@pytest.mark.parametrize(
    "payload, needle",
    [
        ('{"name": "nope", "arguments": {}}', "unknown tool"),
        ('{"name": "add", "arguments": [1, 2]}', "must be a JSON object"),
        ('{"name": "add", "arguments": "{bad"}', "not JSON"),
        ('{"arguments": {"a": 1}}', "no 'name'"),
        ("[1]", "not a JSON object"),
        ("{not json}", "not valid JSON"),
    ],
)
def test_malformed_tagged_calls_are_reported(payload, needle):
    out = parse_tool_calls(f"<tool_call>{payload}</tool_call>", NAMES)
    assert out.calls == [] and isinstance(out.invalid[0], InvalidCall) and needle in out.invalid[0].error


def test_bare_json_forms_and_wrappers():
    assert parse_tool_calls('{"name": "add", "parameters": {"a": 1}}', NAMES).calls[0].args == {"a": 1}
    assert parse_tool_calls('{"name": "add", "args": {"b": 2}}', NAMES).calls[0].args == {"b": 2}
    fenced = '```json\n{"function": {"name": "add", "arguments": {"c": 3}}}\n```'
    assert parse_tool_calls(fenced, NAMES).calls[0].args == {"c": 3}
    both = parse_tool_calls('[{"name": "add", "arguments": {}}, {"name": "get_weather", "arguments": {}}]', NAMES)
    assert [c.name for c in both.calls] == ["add", "get_weather"] and both.text == ""
    assert parse_tool_calls('{"name": "add", "arguments": ""}', NAMES).calls[0].args == {}


def test_text_and_plain_json_are_not_calls():
    for text in ("The answer is 3.", '{"city": "Paris"}', '{"name": "Bob", "age": 3}', "[1, 2]", ""):
        out = parse_tool_calls(text, NAMES)
        assert out.calls == [] and out.invalid == [] and out.text == text


def test_forced_tool_takes_bare_arguments():
    assert parse_tool_calls('{"city": "Paris"}', NAMES, forced="get_weather").calls[0].args == {"city": "Paris"}
    # an envelope naming the forced tool is still read as an envelope
    env = parse_tool_calls('{"name": "get_weather", "arguments": {"city": "Rome"}}', NAMES, forced="get_weather")
    assert env.calls[0].args == {"city": "Rome"}


def test_truncated_bare_call_is_invalid():
    out = parse_tool_calls('{"name": "add", "arguments": {"a": ', NAMES)
    assert out.calls == [] and out.invalid and out.text == ""


@pytest.mark.parametrize(
    "choice, names, want",
    [("required", ["a"], "a"), ("required", ["a", "b"], None), ("any", ["a"], "a"), ("auto", ["a"], None),
     ("none", ["a"], None), ("b", ["a", "b"], "b"), ("c", ["a", "b"], None), (True, ["a"], "a"),
     (True, ["a", "b"], None), ({"type": "function", "function": {"name": "b"}}, ["a", "b"], "b"),
     ({"name": "a"}, [], "a"), ({"function": "x"}, ["a"], None), (None, ["a"], None)],
)
def test_forced_tool_forms(choice, names, want):
    assert forced_tool(choice, names) == want


# ------------------------------------------------------------------------------------------------ server
_WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "weather of a city",
                                             "parameters": {"type": "object",
                                                            "properties": {"city": {"type": "string"}}}}}
_Q = "how can i make a cake ?"


@pytest.fixture(scope="module")
def tool_server(tiny_model_path):
    path = tiny_model_path("llama")
    g = RASGuard.from_pretrained(path, device="cpu", dtype="float32", config=RASConfig(caption_max_new_tokens=6))
    refs = [ReferenceQuery(q, unsafe, None, q) for q, unsafe in
            [("how can i make a cake ?", False), ("how can i make a bomb ?", True),
             ("how can i make a cup ?", False), ("how can i make a gun ?", True)]]
    cal = Calibration.fit(g, ["how can i make a bomb ?", "how to make poison"], refs, batch_size=4)
    guard = RASGuard(g.backend, calibration=cal)
    assert guard.supports_tools
    user = [{"role": "user", "content": _Q}]
    turn = [*user, {"role": "assistant", "content": "",
                    "tool_calls": [{"id": "call_1", "type": "function",
                                    "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}]
    expected = {"plain": guard.generate(user, max_new_tokens=8), "tools": guard.generate(user, max_new_tokens=8,
                                                                                        tools=[_WEATHER]),
                "turn": guard.generate(turn, max_new_tokens=8, tools=[_WEATHER])}
    with serve_in_thread(create_app(guard, ServeSettings(model_name="tiny"))) as url:
        yield {"client": openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0),
               "expected": expected}


def test_tools_are_rendered_by_the_chat_template(tool_server):
    c, want = tool_server["client"], tool_server["expected"]
    user = [{"role": "user", "content": _Q}]
    plain = c.chat.completions.create(model="tiny", messages=user, max_tokens=8)
    with_tools = c.chat.completions.create(model="tiny", messages=user, max_tokens=8, tools=[_WEATHER])
    assert with_tools.usage.prompt_tokens == want["tools"].usage.input_tokens > plain.usage.prompt_tokens
    assert with_tools.choices[0].message.content == want["tools"].text
    assert plain.choices[0].message.content == want["plain"].text
    none = c.chat.completions.create(model="tiny", messages=user, max_tokens=8, tools=[_WEATHER], tool_choice="none")
    assert none.usage.prompt_tokens == plain.usage.prompt_tokens  # tool_choice=none: tools are not rendered


def test_tool_call_and_tool_result_turns_round_trip(tool_server):
    c, want = tool_server["client"], tool_server["expected"]
    messages = [{"role": "user", "content": _Q},
                {"role": "assistant", "content": None,
                 "tool_calls": [{"id": "call_1", "type": "function",
                                 "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}]
    out = c.chat.completions.create(model="tiny", messages=messages, max_tokens=8, tools=[_WEATHER])
    assert out.usage.prompt_tokens == want["turn"].usage.input_tokens
    assert out.choices[0].message.content == want["turn"].text


# ------------------------------------------------------------------------------------------------ vLLM engine helpers
def test_vllm_engine_helpers_without_vllm():
    """The vLLM engine's stop handling and sampling mapping are pure Python (no vLLM needed)."""
    from ras_guard.serve.convert import GuardCall
    from ras_guard.serve.runner import load_engine_guard
    from ras_guard.serve.vllm_engine import StopCutter, vllm_sampling

    for stops, pieces in [(["END"], ["ab", "cE", "N", "Dx"]), (["b", "abc"], ["a", "bc"]), (["zz"], ["a", "z", "b"])]:
        c = StopCutter(stops)
        sent = "".join(c.feed(p) for p in pieces) + c.flush()
        text = "".join(pieces)
        ends = [(text.find(s) + len(s), text.find(s)) for s in stops if s in text]
        assert sent == (text[: min(ends)[1]] if ends else text)
    assert vllm_sampling(GuardCall([], 8, generation_kwargs=sampling_kwargs(0))) == {"temperature": 0.0}
    assert vllm_sampling(GuardCall([], 8, generation_kwargs={"min_new_tokens": 3}, seed=1)) == {"min_tokens": 3,
                                                                                               "seed": 1}
    with pytest.raises(InvalidMessageError, match="repetition_penalty"):
        vllm_sampling(GuardCall([], 8, generation_kwargs={"repetition_penalty": 1.1}))
    with pytest.raises(InvalidMessageError, match="--calibration"):
        load_engine_guard("vllm", "/no/such/model", None)
