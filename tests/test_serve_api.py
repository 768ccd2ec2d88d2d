"""``ras-guard serve`` with real clients (openai, langchain-openai, httpx) against a real server on 127.0.0.1.

One server (demo model, API key) for the whole module; expected answers come from the in-process guard, computed
before the server starts (the guard is not shared by two threads at once).
"""

from __future__ import annotations

import asyncio
import re

import httpx
import openai
import pytest
from _serve_kit import BENIGN, HARMFUL, data_uri, demo_guard, drawing, image_message

from ras_guard.serve import ServeSettings, create_app, serve_in_thread

KEY = "test-key-123"
MAX = 32
_TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
                                            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]


@pytest.fixture(scope="module")
def server():
    g = demo_guard()
    om_bomb, gm_bomb = image_message("bomb")
    om_cake, gm_cake = image_message("cake")
    history = [{"role": "system", "content": "You are helpful."}, {"role": "user", "content": "hello"},
               {"role": "assistant", "content": "hi !"}, {"role": "user", "content": HARMFUL}]
    cases = {
        "benign": ([{"role": "user", "content": BENIGN}], [{"role": "user", "content": BENIGN}]),
        "harmful": ([{"role": "user", "content": HARMFUL}], [{"role": "user", "content": HARMFUL}]),
        "bomb": ([om_bomb], [gm_bomb]),
        "cake": ([om_cake], [gm_cake]),
        "history": (history, history),
    }
    expected = {k: g.generate(gm, max_new_tokens=MAX) for k, (_, gm) in cases.items()}
    expected_tools = g.generate(cases["benign"][1], max_new_tokens=MAX, tools=_TOOLS)
    app = create_app(g, ServeSettings(model_name="demo", api_key=KEY, max_body_bytes=2_000_000,
                                      max_tokens_limit=512))
    with serve_in_thread(app) as url:
        yield {"url": url, "cases": cases, "expected": expected, "tools": expected_tools}


@pytest.fixture
def client(server):
    return openai.OpenAI(base_url=server["url"] + "/v1", api_key=KEY, max_retries=0)


def _post(server, body, key=KEY, **kw):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(server["url"] + "/v1/chat/completions", headers=headers, timeout=60, **kw,
                      **({"json": body} if not isinstance(body, bytes) else {"content": body}))


@pytest.mark.parametrize("case", ["benign", "harmful", "bomb", "cake", "history"])
def test_openai_client_answers_like_the_in_process_guard(server, client, case):
    om, _ = server["cases"][case]
    want = server["expected"][case]
    resp = client.chat.completions.with_raw_response.create(model="demo", messages=om, max_tokens=MAX)
    out = resp.parse()
    assert out.choices[0].message.content == want.text
    assert out.choices[0].finish_reason == want.finish_reason
    ras = out.model_extra["ras"]
    assert ras["risk"] == pytest.approx(want.assessment.risk, abs=1e-6)
    assert ras["decision"] == want.decision.value
    assert float(resp.headers["x-ras-risk"]) == pytest.approx(want.assessment.risk, abs=1e-5)
    assert "visual_context" not in ras  # only with --expose-visual-context
    assert out.usage.completion_tokens == want.usage.output_tokens
    assert out.usage.prompt_tokens == want.usage.input_tokens


@pytest.mark.parametrize("case", ["benign", "bomb"])
def test_stream_sends_ras_before_any_token_and_the_same_answer(server, client, case):
    om, _ = server["cases"][case]
    want = server["expected"][case]
    chunks = list(client.chat.completions.create(model="demo", messages=om, max_tokens=MAX, stream=True,
                                                 stream_options={"include_usage": True}))
    first = chunks[0]
    assert first.model_extra["ras"]["risk"] == pytest.approx(want.assessment.risk, abs=1e-6)
    assert not first.choices[0].delta.content
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == want.text
    assert chunks[-1].usage.completion_tokens == want.usage.output_tokens
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [
        want.finish_reason]


def test_per_request_block_policy_answers_with_refusal(server, client):
    om, _ = server["cases"]["harmful"]
    out = client.chat.completions.create(model="demo", messages=om, max_tokens=MAX,
                                         extra_body={"ras": {"policy": "block", "block_threshold": 0.5}})
    msg = out.choices[0].message
    assert msg.content is None and msg.refusal
    assert out.model_extra["ras"]["decision"] == "blocked"
    chunks = list(client.chat.completions.create(model="demo", messages=om, max_tokens=MAX, stream=True,
                                                 extra_body={"ras": {"policy": "block"}}))
    assert chunks[0].choices[0].delta.refusal and chunks[0].model_extra["ras"]["decision"] == "blocked"
    benign, _ = server["cases"]["benign"]
    out = client.chat.completions.create(model="demo", messages=benign, max_tokens=MAX,
                                         extra_body={"ras": {"policy": "block"}})
    assert out.choices[0].message.content == server["expected"]["benign"].text


def test_monitor_policy_reports_risk_but_does_not_steer(server, client):
    om, gm = server["cases"]["bomb"]
    out = client.chat.completions.create(model="demo", messages=om, max_tokens=MAX,
                                         extra_body={"ras": {"policy": "monitor"}})
    ras = out.model_extra["ras"]
    assert ras["risk"] > 0.5 and ras["decision"] == "answered" and ras["policy"] == "monitor"
    g = demo_guard()  # the server is idle between requests
    unsteered = g.generate(gm, max_new_tokens=MAX, risk=0.0).text
    assert out.choices[0].message.content == unsteered != server["expected"]["bomb"].text


def test_seeded_sampling_is_reproducible_and_stop_cuts(server, client):
    om, _ = server["cases"]["benign"]
    a, b = (client.chat.completions.create(model="demo", messages=om, max_tokens=MAX, temperature=1.3, top_p=0.9,
                                           seed=7).choices[0].message.content for _ in range(2))
    assert a == b
    stop = client.chat.completions.create(model="demo", messages=om, max_tokens=MAX, stop=["help"])
    assert stop.choices[0].message.content == server["expected"]["benign"].text.split("help")[0]


def test_tools_go_through_the_chat_template(server, client):
    om, _ = server["cases"]["benign"]
    out = client.chat.completions.create(model="demo", messages=om, max_tokens=MAX, tools=_TOOLS)
    assert out.choices[0].message.content == server["tools"].text


def test_concurrent_requests_are_batched_and_correct(server):
    cases = ["benign", "harmful", "bomb", "cake"] * 2

    async def main():
        c = openai.AsyncOpenAI(base_url=server["url"] + "/v1", api_key=KEY, max_retries=0)
        return await asyncio.gather(*(c.chat.completions.create(
            model="demo", messages=server["cases"][k][0], max_tokens=MAX) for k in cases))

    outs = asyncio.run(main())
    assert [o.choices[0].message.content for o in outs] == [server["expected"][k].text for k in cases]
    metrics = httpx.get(server["url"] + "/metrics", headers={"Authorization": f"Bearer {KEY}"}).text
    count = float(re.search(r"^ras_guard_batch_size_count (\S+)", metrics, re.MULTILINE).group(1))
    total = float(re.search(r"^ras_guard_batch_size_sum (\S+)", metrics, re.MULTILINE).group(1))
    assert total > count  # at least one generate_batch call held several requests


def test_32_concurrent_streaming_clients_all_complete(server):
    cases = ["benign", "harmful", "bomb", "cake"] * 8

    async def one(c, k):
        first_ras, text = None, ""
        async for ch in await c.chat.completions.create(model="demo", messages=server["cases"][k][0],
                                                        max_tokens=MAX, stream=True):
            if first_ras is None:
                first_ras = ch.model_extra["ras"]
            text += ch.choices[0].delta.content or "" if ch.choices else ""
        return first_ras, text

    async def main():
        c = openai.AsyncOpenAI(base_url=server["url"] + "/v1", api_key=KEY, max_retries=0, timeout=300)
        return await asyncio.gather(*(one(c, k) for k in cases))

    for k, (ras, text) in zip(cases, asyncio.run(main())):
        assert text == server["expected"][k].text
        assert ras["decision"] == server["expected"][k].decision.value


def test_models_health_and_metrics(server, client):
    assert [m.id for m in client.models.list()] == ["demo"]
    assert httpx.get(server["url"] + "/health").json()["status"] == "ok"
    text = httpx.get(server["url"] + "/metrics", headers={"Authorization": f"Bearer {KEY}"}).text
    for name in ("ras_guard_requests_total", "ras_guard_decisions_total", "ras_guard_risk_bucket",
                 "ras_guard_stage_seconds_bucket", "ras_guard_queue_depth"):
        assert name in text
    assert 'ras_guard_decisions_total{decision="steered"}' in text


def test_langchain_chat_openai_works_unchanged(server):
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(base_url=server["url"] + "/v1", api_key=KEY, model="demo", max_tokens=MAX,
                     include_response_headers=True, max_retries=0)
    msg = llm.invoke(HARMFUL)
    assert msg.content == server["expected"]["harmful"].text
    assert float(msg.response_metadata["headers"]["x-ras-risk"]) > 0.5
    streamed = "".join(ch.content for ch in llm.stream(BENIGN))
    assert streamed == server["expected"]["benign"].text


def test_auth_failures_answer_401(server):
    body = {"model": "demo", "messages": [{"role": "user", "content": "hi"}]}
    for key in (None, "wrong", KEY + "x"):
        r = _post(server, body, key=key)
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
        assert r.headers["www-authenticate"] == "Bearer"
    assert httpx.get(server["url"] + "/v1/models").status_code == 401


@pytest.mark.parametrize(
    "body, status, needle",
    [
        (b"{not json", 400, "not valid JSON"),
        ({"model": "demo", "messages": [{"role": "user", "content": "hi"}], "frobnicate": 1}, 400, "frobnicate"),
        ({"model": "demo", "messages": [{"role": "user", "content": "hi", "colour": 1}]}, 400, "colour"),
        ({"model": "demo", "messages": [{"role": "user", "content": "hi"}], "n": 2}, 400, "n=2"),
        ({"model": "demo", "messages": [{"role": "user", "content": "hi"}], "n": 3}, 400, "leave 'n' out"),
        ({"model": "demo", "messages": [{"role": "user", "content": "hi"}],
          "response_format": {"type": "xml"}}, 400, "'xml' is not supported"),
        ({"model": "demo", "messages": [{"role": "user", "content": "hi"}],
          "response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}, 400, "needs a schema"),
        ({"model": "demo", "messages": [{"role": "user", "content": "hi"}], "stop": ["}"],
          "response_format": {"type": "json_object"}}, 400, "drop 'stop'"),
        ({"model": "demo", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 100000}, 400, "limit"),
        ({"model": "demo", "messages": [{"role": "user", "content": "hi"}], "logprobs": True}, 400, "logprobs"),
        ({"model": "other", "messages": [{"role": "user", "content": "hi"}]}, 404, "not served"),
        ({"model": "demo", "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": data_uri(b"\x89PNG\r\n\x1a\n" + b"0" * 20)}}]}]}, 400, "decode"),
        ({"model": "demo", "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,@@@"}}]}]}, 400, "base64"),
        ({"model": "demo", "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "http://169.254.169.254/x.png"}}]}]}, 400, "--allow-image-urls"),
        ({"model": "demo", "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": data_uri(drawing("cake"))}}]}],
          "pad": "x" * 2_100_000}, 413, "exceeds"),
        ({"model": "demo", "messages": [{"role": "assistant", "content": "hi"}]}, 400, "no user message"),
        ({"model": "demo", "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": data_uri(drawing("cake"))}}] * 9}]}, 400, "at most 8"),
        ({"model": "demo", "messages": [{"role": "user", "content": [{"type": "input_audio"}]}]}, 400, "content"),
    ],
)
def test_malformed_requests_get_openai_error_bodies(server, body, status, needle):
    r = _post(server, body)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert needle in err["message"] and err["type"]
    assert "Traceback" not in r.text


def test_unknown_route_is_a_json_404(server):
    r = httpx.get(server["url"] + "/v1/nothing")
    assert r.status_code == 404 and "error" in r.json()
