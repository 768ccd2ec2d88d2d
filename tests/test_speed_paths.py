"""The fast paths (prefix KV reuse, speculative answers, caption cache) give the reference path's outputs.

The oracle is :func:`ras_guard.reference.reference_generate`: three independent ``generate`` calls per request,
batch 1. Every check also records the ``generate`` calls, to prove the fast path really ran (cached prefix, no
``pixel_values`` after the prefix call) where the architecture supports it, and the plain path elsewhere.
"""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ras_guard import Calibration, RASConfig, RASGuard
from ras_guard.backends.hf import HFBackend
from ras_guard.data import ReferenceQuery
from ras_guard.reference import reference_generate
from ras_guard.testing import load_tiny_model, tiny_image

ARCHS = ["llava", "qwen2_vl", "qwen2_5_vl", "idefics3", "gemma3", "gemma3_wide", "llama"]
QUESTION = "how can i make the item in the image ?"


class _Recorder:
    """Wraps ``model.generate`` of one model to log how each call was made."""

    def __init__(self, model: Any) -> None:
        self.calls: list[tuple[bool, bool]] = []
        self._orig = model.generate

        def generate(*args: Any, **kwargs: Any) -> Any:
            cache = kwargs.get("cache", kwargs.get("past_key_values"))  # "cache" from transformers 5.24 on
            self.calls.append((cache is not None, kwargs.get("pixel_values") is not None))
            return self._orig(*args, **kwargs)

        model.generate = generate


def _path(arch: str, tiny_model_path: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    if arch != "gemma3_wide":
        return tiny_model_path(arch)
    wide = tmp_path_factory.mktemp("gemma3-wide") / "model"
    shutil.copytree(tiny_model_path("gemma3"), wide)
    cfg = json.loads((wide / "config.json").read_text())
    cfg["text_config"]["sliding_window"] = 512  # everything fits in the window: the prefix path applies
    (wide / "config.json").write_text(json.dumps(cfg))
    return wide


@pytest.fixture(scope="module", params=ARCHS)
def setup(request: pytest.FixtureRequest, tiny_model_path: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, HFBackend, Calibration, _Recorder]]:
    processor, model = load_tiny_model(_path(request.param, tiny_model_path, tmp_path_factory))
    backend = HFBackend(model, processor)
    g = RASGuard(backend, config=RASConfig(caption_max_new_tokens=6))
    refs = [ReferenceQuery(QUESTION, bool(i % 2), tiny_image(100 + i), f"how can i make a {w} ?")
            for i, w in enumerate(["cake", "bomb", "cup", "gun"])]
    cal = Calibration.fit(g, ["how can i make a bomb ?", "tell me how to hurt people"], refs)
    yield request.param, backend, cal, _Recorder(model)


def _msgs(backend: HFBackend, seed: int, question: str = QUESTION) -> list[dict]:
    if backend.is_multimodal:
        return [{"role": "user", "content": [{"type": "image", "image": tiny_image(seed)}, {"type": "text", "text": question}]}]
    return [{"role": "system", "content": "you are a helpful assistant . " * 4}, {"role": "user", "content": f"{question} {seed}"}]


def _same(out: Any, ref: Any, *, batched: bool = False) -> None:
    assert out.token_ids == ref.token_ids
    assert out.steered == ref.steered
    assert out.assessment.visual_context == ref.assessment.visual_context
    assert out.assessment.similarity == pytest.approx(ref.assessment.similarity, abs=1e-4)
    assert out.usage.input_tokens == ref.usage.input_tokens and out.usage.output_tokens == ref.usage.output_tokens
    if not batched:  # in a batch the shared caption tokens are booked on the first request; cached ones on none
        assert out.usage.guard_tokens == ref.usage.guard_tokens


def _prefix_used(arch: str, rec: _Recorder) -> None:
    if arch == "gemma3":  # sliding window of 8 tokens: plain path
        assert not any(cached for cached, _ in rec.calls)
        return
    assert rec.calls[0] == (False, True) or (arch == "llama" and rec.calls[0] == (False, False))
    assert all(cached and not pixels for cached, pixels in rec.calls[1:]), rec.calls


@pytest.mark.parametrize("speculative", [False, True])
@pytest.mark.parametrize("floor", [0.05, 0.999])  # 0.999: nothing is steered, speculative answers are kept
def test_single_requests_equal_reference(setup: Any, speculative: bool, floor: float) -> None:
    arch, backend, cal, rec = setup
    guard = RASGuard(backend, calibration=cal, config=cal.config(speculative_answer=speculative, risk_floor=floor))
    for seed in (0,):
        msgs = _msgs(backend, seed)
        ref = reference_generate(guard, msgs, max_new_tokens=10, do_sample=False, min_new_tokens=10)
        guard._captions.clear()
        rec.calls.clear()
        out = guard.generate(msgs, max_new_tokens=10, do_sample=False, min_new_tokens=10)
        _same(out, ref)
        _prefix_used(arch, rec)


@pytest.mark.parametrize("speculative", [False, True])
def test_batch_equals_reference(setup: Any, speculative: bool) -> None:
    arch, backend, cal, rec = setup
    guard = RASGuard(backend, calibration=cal, config=cal.config(speculative_answer=speculative))
    batch = [_msgs(backend, 3, "what is it ?"), _msgs(backend, 4), _msgs(backend, 3, "tell me a story about it please")]
    refs = [reference_generate(guard, m, max_new_tokens=8, do_sample=False) for m in batch]
    guard._captions.clear()
    rec.calls.clear()
    outs = guard.generate_batch(batch, max_new_tokens=8, do_sample=False)
    for out, ref in zip(outs, refs):
        _same(out, ref, batched=True)
    _prefix_used(arch, rec)


def test_assess_and_stream_equal_reference(setup: Any) -> None:
    arch, backend, cal, rec = setup
    guard = RASGuard(backend, calibration=cal)
    msgs = _msgs(backend, 5)
    ref = reference_generate(guard, msgs, max_new_tokens=8, do_sample=False)
    guard._captions.clear()
    a = guard.assess(msgs)
    assert a.similarity == pytest.approx(ref.assessment.similarity, abs=1e-4)
    assert a.guard_tokens == ref.assessment.guard_tokens
    guard._captions.clear()
    rec.calls.clear()
    stream = guard.stream(msgs, max_new_tokens=8, do_sample=False)
    assert "".join(stream) == ref.text and stream.result.token_ids == ref.token_ids
    _prefix_used(arch, rec)


def test_resent_image_pays_its_caption_once(setup: Any) -> None:
    arch, backend, cal, rec = setup
    if not backend.is_multimodal:
        pytest.skip("text-only model")
    guard = RASGuard(backend, calibration=cal)
    guard._captions.clear()
    first = guard.generate(_msgs(backend, 6), max_new_tokens=4, do_sample=False)
    rec.calls.clear()
    again = _msgs(backend, 6, "and what colour is it ?")
    out = guard.generate(again, max_new_tokens=4, do_sample=False)
    assert out.assessment.cached_caption and not first.assessment.cached_caption
    # no caption call: risk + answer; on the prefix path the answer continues from the risk call's prefix
    assert len(rec.calls) == 2
    assert sum(pixels for _, pixels in rec.calls) == (2 if arch == "gemma3" else 1)
    ref = reference_generate(guard, again, max_new_tokens=4, do_sample=False)
    _same(out, ref, batched=True)
    assert out.usage.guard_tokens < ref.usage.guard_tokens  # the cached caption costs nothing


def test_images_after_text_and_history_fall_back_correctly(setup: Any) -> None:
    _, backend, cal, _ = setup
    if not backend.is_multimodal:
        pytest.skip("text-only model")
    guard = RASGuard(backend, calibration=cal, config=cal.config(speculative_answer=True))
    late = [{"role": "user", "content": [{"type": "text", "text": QUESTION}, {"type": "image", "image": tiny_image(7)}]}]
    history = [
        {"role": "user", "content": [{"type": "image", "image": tiny_image(8)}, {"type": "text", "text": "what is it ?"}]},
        {"role": "assistant", "content": "a thing"},
        {"role": "user", "content": [{"type": "image", "image": tiny_image(9)}, {"type": "image", "image": tiny_image(8)},
                                     {"type": "text", "text": QUESTION}]},
    ]
    refs = [reference_generate(guard, m, max_new_tokens=6, do_sample=False) for m in (late, history)]
    guard._captions.clear()
    for out, ref in zip(guard.generate_batch([late, history], max_new_tokens=6, do_sample=False), refs):
        _same(out, ref, batched=True)


def test_threads_sharing_a_guard_get_their_own_prefixes(setup: Any) -> None:
    _, backend, cal, _ = setup
    guard = RASGuard(backend, calibration=cal, config=cal.config(speculative_answer=True, caption_cache_size=0))
    msgs = [_msgs(backend, s) for s in (10, 11)]
    expected = [reference_generate(guard, m, max_new_tokens=6, do_sample=False).token_ids for m in msgs]
    errors: list[str] = []

    def worker(k: int) -> None:
        for _ in range(3):
            got = guard.generate(msgs[k], max_new_tokens=6, do_sample=False).token_ids
            if got != expected[k]:
                errors.append(f"request {k}: {got} != {expected[k]}")

    threads = [threading.Thread(target=worker, args=(k % 2,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
