"""``response_format`` through ``ras-guard serve``: constrained answers parse and validate, refusals as
``message.refusal`` (also streaming), schemas the engine cannot compile answer 400 with a JSON error body.

One server (demo model) for the module; expected answers come from the in-process guard, computed before the
server starts.
"""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from _serve_kit import HARMFUL, demo_guard
from pydantic import BaseModel, Field

from ras_guard.serve import ServeSettings, create_app, serve_in_thread

MAX = 40
PERSON_Q = "What is your name and age?"
WEATHER_Q = "What is the weather like?"


class Person(BaseModel):
    name: str = Field(max_length=12)
    age: int = Field(ge=0, le=120)


SCHEMA = {"type": "json_schema", "json_schema": {"name": "person", "schema": Person.model_json_schema()}}
UNCOMPILABLE = [
    {"type": "object", "properties": {"a": {"$ref": "#/defs/missing"}}},
    {"type": "string", "pattern": "(?<=a)b"},
    {"type": "frob"},
]


def _user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


@pytest.fixture(scope="module")
def server():
    g = demo_guard()
    expected = {
        "schema": g.generate(_user(PERSON_Q), max_new_tokens=MAX, response_format=SCHEMA),
        "object": g.generate(_user(WEATHER_Q), max_new_tokens=60, response_format={"type": "json_object"}),
        "harmful": g.generate(_user(HARMFUL), max_new_tokens=MAX, response_format=SCHEMA),
    }
    with serve_in_thread(create_app(g, ServeSettings(model_name="demo"))) as url:
        yield {"url": url, "expected": expected}


@pytest.fixture
def client(server):
    return openai.OpenAI(base_url=server["url"] + "/v1", api_key="unused", max_retries=0)


def test_json_schema_answer_validates_and_equals_the_in_process_guard(server, client):
    want = server["expected"]["schema"]
    out = client.chat.completions.create(model="demo", messages=_user(PERSON_Q), max_tokens=MAX,
                                         response_format=SCHEMA)
    msg = out.choices[0].message
    assert msg.content == want.text and msg.refusal is None
    assert out.choices[0].finish_reason == "stop"
    Person.model_validate_json(msg.content)


def test_openai_parse_helper_returns_the_model_instance(server, client):
    parsed = client.chat.completions.parse(model="demo", messages=_user(PERSON_Q), max_tokens=MAX,
                                           response_format=Person)
    person = parsed.choices[0].message.parsed
    assert isinstance(person, Person) and parsed.choices[0].message.refusal is None


def test_json_object_answer_is_a_json_object(server, client):
    want = server["expected"]["object"]
    out = client.chat.completions.create(model="demo", messages=_user(WEATHER_Q), max_tokens=60,
                                         response_format={"type": "json_object"})
    text = out.choices[0].message.content
    assert text == want.text and isinstance(json.loads(text), dict)


def test_streamed_structured_answer_is_the_same_json(server, client):
    chunks = list(client.chat.completions.create(model="demo", messages=_user(PERSON_Q), max_tokens=MAX,
                                                 response_format=SCHEMA, stream=True))
    assert "ras" in chunks[0].model_extra
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == server["expected"]["schema"].text
    Person.model_validate_json(text)


def test_harmful_request_under_a_schema_is_refused_in_message_refusal(server, client):
    assert server["expected"]["harmful"].finish_reason == "refusal"
    out = client.chat.completions.create(model="demo", messages=_user(HARMFUL), max_tokens=MAX,
                                         response_format=SCHEMA)
    msg = out.choices[0].message
    assert msg.content is None and msg.refusal
    assert out.model_extra["ras"]["risk"] > 0.5
    parsed = client.chat.completions.parse(model="demo", messages=_user(HARMFUL), max_tokens=MAX,
                                           response_format=Person)
    assert parsed.choices[0].message.parsed is None and parsed.choices[0].message.refusal


def test_refusal_also_streams(server, client):
    chunks = list(client.chat.completions.create(model="demo", messages=_user(HARMFUL), max_tokens=MAX,
                                                 response_format=SCHEMA, stream=True))
    assert chunks[0].model_extra["ras"]["risk"] > 0.5
    assert not "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    refusals = [c.choices[0].delta.refusal for c in chunks if c.choices and c.choices[0].delta.refusal]
    assert refusals and chunks[-1].choices[0].finish_reason == "stop"


def test_block_policy_refuses_before_the_grammar(server, client):
    out = client.chat.completions.create(model="demo", messages=_user(HARMFUL), max_tokens=MAX,
                                         response_format={"type": "json_object"},
                                         extra_body={"ras": {"policy": "block"}})
    assert out.choices[0].message.refusal and out.model_extra["ras"]["decision"] == "blocked"


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("schema", UNCOMPILABLE, ids=["missing-ref", "lookbehind", "unknown-type"])
def test_schema_the_engine_cannot_compile_answers_400(server, schema, stream):
    body = {"model": "demo", "messages": _user(PERSON_Q), "max_tokens": 8, "stream": stream,
            "response_format": {"type": "json_schema", "json_schema": {"name": "bad", "schema": schema}}}
    r = httpx.post(server["url"] + "/v1/chat/completions", json=body, timeout=60)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["code"] == "invalid_response_format" and err["param"] == "response_format"
    assert "cannot compile" in err["message"] and "Traceback" not in r.text


def test_the_server_still_answers_after_a_bad_schema(server, client):
    out = client.chat.completions.create(model="demo", messages=_user(PERSON_Q), max_tokens=MAX,
                                         response_format=SCHEMA)
    assert out.choices[0].message.content == server["expected"]["schema"].text
