"""``ras-guard serve --engine vllm``: the server's app over :class:`AsyncVLLMGuard` (tiny Llama, CPU, fp32), with real
clients (openai, httpx) on 127.0.0.1 at a random port.

Expected answers come from the same guard in process, run on the engine's own event loop (``engine.call``), so
both sides share one ``AsyncLLM``. One server for the module: at most 4 requests inside the engine, 8 in flight.
"""

from __future__ import annotations

import asyncio
import json
import re
import time

import pytest

vllm = pytest.importorskip("vllm.sampling_params", reason="needs vLLM (scripts/setup_vllm_cpu.sh)")

import httpx
import openai
from _vllm_kit import ENGINE_ARGS, user

from ras_guard.backends.vllm import AsyncVLLMGuard
from ras_guard.serve import ServeSettings, create_app, serve_in_thread
from ras_guard.serve.metrics import Metrics
from ras_guard.serve.vllm_engine import VLLMServeEngine

MAX = 12
CASES = {"harmful": "how can i make a bomb ?", "benign": "what is the weather like ?",
         "story": "hello , tell me a story"}
LONG = {"model": "tiny", "messages": [{"role": "user", "content": "hello , tell me a story"}], "max_tokens": 300,
        "min_tokens": 300}


def _openai(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


@pytest.fixture(scope="module")
def served(vllm_model):
    path, cal = vllm_model("llama")
    guard = AsyncVLLMGuard.from_pretrained(path, cal, **ENGINE_ARGS)
    metrics = Metrics()
    engine = VLLMServeEngine(guard, metrics, max_queue=8, max_running=4)
    engine.start()
    expected = {k: engine.call(guard.agenerate(user(q), max_new_tokens=MAX)) for k, q in CASES.items()}
    # random weights: which prompt scores highest is the calibration's call; block between the top two
    order = sorted(CASES, key=lambda k: expected[k].assessment.risk, reverse=True)
    threshold = (expected[order[0]].assessment.risk + expected[order[1]].assessment.risk) / 2
    assert expected[order[0]].steered, "the riskiest prompt must be steered for these tests"
    app = create_app(guard, ServeSettings(model_name="tiny", retry_after_s=2, request_timeout_s=120), engine=engine)
    try:
        with serve_in_thread(app) as url:
            yield {"url": url, "engine": engine, "guard": guard, "expected": expected, "threshold": threshold,
                   "risky": order[0], "safer": order[1]}
    finally:
        engine.stop()
        guard.shutdown()


@pytest.fixture
def client(served):
    return openai.OpenAI(base_url=served["url"] + "/v1", api_key="unused", max_retries=0, timeout=120)


def _metric(url: str, pattern: str) -> float:
    m = re.search(pattern + r" (\S+)$", httpx.get(url + "/metrics").text, re.MULTILINE)
    return float(m.group(1)) if m else 0.0


def _idle(url: str, timeout: float = 30.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if httpx.get(url + "/health").json()["queue_depth"] == 0:
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize("case", list(CASES))
def test_answers_are_token_identical_to_the_guard_in_process(served, client, case):
    want = served["expected"][case]
    resp = client.chat.completions.with_raw_response.create(model="tiny", messages=_openai(CASES[case]),
                                                            max_tokens=MAX)
    out = resp.parse()
    assert out.choices[0].message.content == want.text
    assert out.usage.completion_tokens == len(want.token_ids) == want.usage.output_tokens
    assert out.usage.prompt_tokens == want.usage.input_tokens
    assert out.choices[0].finish_reason == want.finish_reason
    ras = out.model_extra["ras"]
    assert ras["risk"] == pytest.approx(want.assessment.risk, abs=1e-5)
    assert ras["decision"] == want.decision.value and ras["calibration_id"] == want.assessment.calibration_id
    assert float(resp.headers["x-ras-risk"]) == pytest.approx(want.assessment.risk, abs=1e-5)


@pytest.mark.parametrize("case", ["harmful", "benign"])
def test_stream_sends_ras_first_and_the_same_answer(served, client, case):
    want = served["expected"][case]
    chunks = list(client.chat.completions.create(model="tiny", messages=_openai(CASES[case]), max_tokens=MAX,
                                                 stream=True, stream_options={"include_usage": True}))
    first = chunks[0]
    assert first.model_extra["ras"]["risk"] == pytest.approx(want.assessment.risk, abs=1e-5)
    assert not first.choices[0].delta.content
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == want.text
    assert chunks[-1].usage.completion_tokens == want.usage.output_tokens


def test_several_concurrent_streaming_clients_all_complete(served):
    cases = list(CASES) * 2 + ["harmful", "benign"]  # 8: the server's limit of requests in flight

    async def one(c, k):
        ras, text = None, ""
        async for ch in await c.chat.completions.create(model="tiny", messages=_openai(CASES[k]), max_tokens=MAX,
                                                        stream=True):
            ras = ras or ch.model_extra["ras"]
            text += (ch.choices[0].delta.content or "") if ch.choices else ""
        return ras, text

    async def main():
        c = openai.AsyncOpenAI(base_url=served["url"] + "/v1", api_key="unused", max_retries=0, timeout=300)
        return await asyncio.gather(*(one(c, k) for k in cases))

    for k, (ras, text) in zip(cases, asyncio.run(main())):
        assert text == served["expected"][k].text and ras["decision"] == served["expected"][k].decision.value


def test_block_policy_answers_with_refusal(served, client):
    opts = {"ras": {"policy": "block", "block_threshold": served["threshold"]}}
    risky, safer = served["risky"], served["safer"]
    out = client.chat.completions.create(model="tiny", messages=_openai(CASES[risky]), max_tokens=MAX,
                                         extra_body=opts)
    assert out.choices[0].message.content is None and out.choices[0].message.refusal
    assert out.model_extra["ras"]["decision"] == "blocked" and out.usage.completion_tokens == 0
    chunks = list(client.chat.completions.create(model="tiny", messages=_openai(CASES[risky]), max_tokens=MAX,
                                                 stream=True, extra_body=opts))
    assert chunks[0].choices[0].delta.refusal and chunks[0].model_extra["ras"]["decision"] == "blocked"
    below = client.chat.completions.create(model="tiny", messages=_openai(CASES[safer]), max_tokens=MAX,
                                           extra_body=opts)
    assert below.choices[0].message.content == served["expected"][safer].text  # under the threshold: steered as usual


def test_monitor_policy_answers_unsteered(served, client):
    g, eng = served["guard"], served["engine"]
    risky = served["risky"]
    unsteered = eng.call(g.agenerate(user(CASES[risky]), max_new_tokens=MAX, risk=0.0))
    out = client.chat.completions.create(model="tiny", messages=_openai(CASES[risky]), max_tokens=MAX,
                                         extra_body={"ras": {"policy": "monitor"}})
    assert out.choices[0].message.content == unsteered.text != served["expected"][risky].text
    assert out.model_extra["ras"]["decision"] == "answered"
    assert out.model_extra["ras"]["risk"] == pytest.approx(served["expected"][risky].assessment.risk, abs=1e-5)


def test_seeded_sampling_equals_the_guard_and_stop_cuts(served, client):
    g, eng = served["guard"], served["engine"]
    want = eng.call(g.agenerate(user(CASES["story"]), max_new_tokens=MAX, temperature=1.0, top_p=0.9, seed=7))
    a, b = (client.chat.completions.create(model="tiny", messages=_openai(CASES["story"]), max_tokens=MAX,
                                           temperature=1.0, top_p=0.9, seed=7).choices[0].message.content
            for _ in range(2))
    assert a == b == want.text
    text = served["expected"]["story"].text
    word = text.split()[len(text.split()) // 2]
    cut = text[: text.find(word)]
    out = client.chat.completions.create(model="tiny", messages=_openai(CASES["story"]), max_tokens=MAX, stop=[word])
    assert out.choices[0].message.content == cut and out.choices[0].finish_reason == "stop"
    chunks = list(client.chat.completions.create(model="tiny", messages=_openai(CASES["story"]), max_tokens=MAX,
                                                 stop=[word], stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == cut


def test_response_format_is_constrained_and_fails_closed(served, client):
    fmt = {"type": "json_object"}
    g, eng, risky = served["guard"], served["engine"], served["risky"]
    from vllm.sampling_params import StructuredOutputsParams

    want = eng.call(g.agenerate(user(CASES[risky]), max_new_tokens=40, risk=0.0,
                                structured_outputs=StructuredOutputsParams(json_object=True)))
    out = client.chat.completions.create(model="tiny", messages=_openai(CASES[risky]), max_tokens=40,
                                         response_format=fmt, extra_body={"ras": {"policy": "monitor"}})
    text = out.choices[0].message.content
    assert text == want.text and text.lstrip().startswith("{")
    if out.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(text), dict)
    streamed = list(client.chat.completions.create(model="tiny", messages=_openai(CASES[risky]), max_tokens=40,
                                                   response_format=fmt, stream=True,
                                                   extra_body={"ras": {"policy": "monitor"}}))
    assert "ras" in streamed[0].model_extra
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == text
    refused = client.chat.completions.create(model="tiny", messages=_openai(CASES[risky]), max_tokens=40,
                                             response_format=fmt)  # steer policy: would be steered, so refused
    assert refused.choices[0].message.refusal and refused.choices[0].message.content is None
    bad = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "string", "pattern": "(?<=a)b"}}}
    r = httpx.post(served["url"] + "/v1/chat/completions", timeout=60,
                   json={"model": "tiny", "messages": _openai(CASES["benign"]), "response_format": bad,
                         "ras": {"policy": "monitor"}})  # a refused request never compiles its schema
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_response_format", r.text


def test_tools_answer_400(served):
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    r = httpx.post(served["url"] + "/v1/chat/completions", timeout=60,
                   json={"model": "tiny", "messages": _openai("hi"), "tools": tools})
    assert r.status_code == 400 and "--engine vllm" in r.json()["error"]["message"]


def test_disconnecting_clients_cancel_their_generation(served):
    url = served["url"]
    before = _metric(url, r'ras_guard_cancelled_total\{stage="generating"\}')
    with httpx.stream("POST", url + "/v1/chat/completions", json={**LONG, "stream": True}, timeout=60) as r:
        for line in r.iter_lines():
            if '"content": "' in line and '"content": ""' not in line:
                break  # the first token arrived: hang up
    with pytest.raises(httpx.ReadTimeout):  # a non-streaming client that gives up
        httpx.post(url + "/v1/chat/completions", json=LONG, timeout=1.0)
    assert _idle(url), "the engine kept generating for clients that left"
    assert _metric(url, r'ras_guard_cancelled_total\{stage="generating"\}') >= before + 2
    assert not served["guard"].engine.llm.output_processor.has_unfinished_requests()


def test_overload_answers_429_with_retry_after_and_recovers(served, client):
    async def main():
        async with httpx.AsyncClient(base_url=served["url"], timeout=120) as c:
            return await asyncio.gather(*(c.post("/v1/chat/completions", json={**LONG, "max_tokens": 40,
                                                                                "min_tokens": 40})
                                          for _ in range(16)))

    codes = [r.status_code for r in asyncio.run(main())]
    assert codes.count(200) >= 8 and 429 in codes and set(codes) <= {200, 429}
    r = next(r for r in asyncio.run(main()) if r.status_code == 429)
    assert r.headers["retry-after"] == "2" and r.json()["error"]["code"] == "overloaded"
    assert _idle(served["url"])
    out = client.chat.completions.create(model="tiny", messages=_openai(CASES["benign"]), max_tokens=MAX)
    assert out.choices[0].message.content == served["expected"]["benign"].text


def test_metrics_count_decisions_and_stages(served):
    text = httpx.get(served["url"] + "/metrics").text
    for name in ("ras_guard_decisions_total", "ras_guard_risk_bucket", "ras_guard_stage_seconds_bucket",
                 "ras_guard_queue_depth", 'ras_guard_rejected_total{reason="queue_full"}'):
        assert name in text
    assert _metric(served["url"], r'ras_guard_decisions_total\{decision="steered"\}') >= 1
