"""Stop strings and streams of :class:`VLLMGuard` and :class:`AsyncVLLMGuard`, text Llama and image LLaVA.

Every streamed, stopped or concurrent answer is compared with the same request run alone through the sync guard
on the same weights and calibration.
"""

from __future__ import annotations

import asyncio
import gc

import pytest

vllm = pytest.importorskip("vllm.sampling_params", reason="needs vLLM (scripts/setup_vllm_cpu.sh)")

from _vllm_kit import ENGINE_ARGS, user

from ras_guard.backends.vllm import AsyncVLLMGuard, VLLMGuard
from ras_guard.backends.vllm._text import cut_at_stop
from ras_guard.errors import InvalidMessageError
from ras_guard.testing import tiny_image

LONG = 40
TEXTS = ["how can i make the item in the image ?", "what is the weather like ?", "hello , tell me a story"]


@pytest.fixture(scope="module", params=["llama", "llava"])
def arch(request):
    return request.param


def _args(arch):
    return {**ENGINE_ARGS, **({"limit_mm_per_prompt": {"image": 2}} if arch == "llava" else {})}


@pytest.fixture(scope="module")
def sync_guard(arch, vllm_model):
    path, cal = vllm_model(arch)
    guard = VLLMGuard.from_pretrained(path, cal, **_args(arch))
    image = tiny_image if arch == "llava" else (lambda i: None)
    yield guard, [user(t, image(i)) for i, t in enumerate(TEXTS)]
    del guard
    gc.collect()


@pytest.fixture(scope="module")
def async_guard(arch, vllm_model):
    path, cal = vllm_model(arch)
    loop = asyncio.new_event_loop()

    async def start():
        return AsyncVLLMGuard.from_pretrained(path, cal, **_args(arch))

    guard = loop.run_until_complete(start())
    yield guard, loop.run_until_complete
    guard.shutdown()
    pending = asyncio.all_tasks(loop)
    for task in pending:
        task.cancel()
    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    loop.close()
    del guard
    gc.collect()


def _stop_of(text):
    """Two words from the middle of ``text``: a stop string that arrives split across two pieces."""
    words = text.split(" ")
    assert len(words) > 6, text
    stop = " ".join(words[3:5])
    return stop, text[: text.find(stop)]


def test_sync_guard_honours_stop_strings(sync_guard):
    guard, msgs = sync_guard
    engine = guard.engine.llm.llm_engine
    for risk in (0.0, 1.0):
        full = guard.generate(msgs[2], max_new_tokens=LONG, risk=risk)
        stop, cut = _stop_of(full.text)
        got = guard.generate(msgs[2], max_new_tokens=LONG, risk=risk, stop=[stop])
        assert got.text == cut and got.finish_reason == "stop" and got.steered == full.steered
        assert got.token_ids == full.token_ids[: len(got.token_ids)] and len(got.token_ids) < LONG
        assert guard.generate(msgs[2], max_new_tokens=LONG, risk=risk, stop=stop).text == cut  # a bare string
        batch = guard.generate_batch(msgs[1:], max_new_tokens=LONG, risks=[risk, risk], stop=[stop])
        other = guard.generate(msgs[1], max_new_tokens=LONG, risk=risk).text
        assert batch[1].text == cut and batch[0].text == cut_at_stop(other, [stop])[0]
        with guard.stream(msgs[2], max_new_tokens=LONG, risk=risk, stop=[stop]) as stream:
            pieces = list(stream)
        assert "".join(pieces) == cut and len(pieces) > 1
        assert stream.result.text == cut and stream.result.finish_reason == "stop"
        assert stream.result.token_ids == got.token_ids
        assert not engine.has_unfinished_requests()
    with pytest.raises(InvalidMessageError):
        guard.generate(msgs[0], max_new_tokens=4, stop=[1, 2])


def test_async_guard_matches_the_sync_guard_with_and_without_stops(sync_guard, async_guard):
    guard, msgs = sync_guard
    aguard, run = async_guard
    rows = [(0, None), (1, 1.0), (2, 0.0), (0, 0.6), (2, 1.0), (1, None)]

    async def together():
        return await asyncio.gather(*(aguard.agenerate(msgs[i], max_new_tokens=12, risk=r) for i, r in rows))

    for (i, r), out in zip(rows, run(together())):
        alone = guard.generate(msgs[i], max_new_tokens=12, risk=r)
        assert (out.token_ids, out.text, out.steered) == (alone.token_ids, alone.text, alone.steered)
        assert out.assessment.risk == pytest.approx(alone.assessment.risk, abs=1e-5)

    async def collect(m, **kw):
        stream = await aguard.astream(m, **kw)
        assert stream.result is None
        return stream, [p async for p in stream]

    for m, r in ((msgs[0], None), (msgs[2], 1.0)):
        want = guard.generate(m, max_new_tokens=LONG, risk=r)
        stream, pieces = run(collect(m, max_new_tokens=LONG, risk=r))
        assert "".join(pieces) == want.text and stream.result.token_ids == want.token_ids
        assert stream.steered == want.steered and stream.assessment.risk == pytest.approx(
            want.assessment.risk, abs=1e-5
        )
    full = guard.generate(msgs[2], max_new_tokens=LONG, risk=0.0)
    stop, cut = _stop_of(full.text)
    stream, pieces = run(collect(msgs[2], max_new_tokens=LONG, risk=0.0, stop=[stop]))
    assert "".join(pieces) == cut and len(pieces) > 1 and stream.result.text == cut
    assert stream.result.finish_reason == "stop"
    got = run(aguard.agenerate(msgs[2], max_new_tokens=LONG, risk=0.0, stop=[stop]))
    assert got.text == cut and got.token_ids == stream.result.token_ids

    async def close_early():
        async with await aguard.astream(msgs[2], max_new_tokens=200, min_tokens=200) as s:
            first = await s.__anext__()
        await asyncio.sleep(0.2)
        return s, first

    s, first = run(close_early())
    assert first and s.result is None
    assert not aguard.engine.llm.output_processor.has_unfinished_requests()
