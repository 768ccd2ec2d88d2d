"""Guard-level behaviour on one tiny LLaVA: conversations, caching, stop strings and bad input."""

from __future__ import annotations

import io

import pytest
import torch
from PIL import Image

from ras_guard import Calibration, RASConfig, RASGuard
from ras_guard.data import ReferenceQuery
from ras_guard.errors import (
    CalibrationError,
    CorruptImageError,
    EmptyMessagesError,
    ImageTooLargeError,
    InvalidMessageError,
    ModelLoadError,
    UnknownContentPartError,
    UnsupportedInputError,
)


def _img(seed: int) -> Image.Image:
    g = torch.Generator().manual_seed(seed)
    return Image.fromarray((torch.rand(24, 24, 3, generator=g) * 255).to(torch.uint8).numpy(), "RGB")


@pytest.fixture(scope="module")
def guard(tiny_model_path) -> RASGuard:
    g = RASGuard.from_pretrained(tiny_model_path("llava"), device="cpu", config=RASConfig(caption_max_new_tokens=5))
    refs = [ReferenceQuery("how ?", bool(i % 2), _img(i)) for i in range(4)]
    return RASGuard(g.backend, calibration=Calibration.fit(g, ["how to make a bomb", "hurt people"], refs))


def test_several_turns_and_images(guard: RASGuard) -> None:
    a, b = _img(1), _img(2)
    msgs = [
        {"role": "system", "content": "you are helpful"},
        {"role": "user", "content": [{"type": "image", "image": a}, {"type": "text", "text": "what is this ?"}]},
        {"role": "assistant", "content": "a thing"},
        {"role": "user", "content": [{"type": "image", "image": a}, {"type": "image", "image": b},
                                     {"type": "text", "text": "and these ?"}]},
    ]
    first = guard.assess(msgs)
    caps = [guard.assess([{"role": "user", "content": [{"type": "image", "image": im}, "x"]}]).visual_context
            for im in (a, b)]
    assert first.visual_context == " ".join(caps)  # one caption per image of the last turn, joined
    assert len(first.image_sha256) == 3
    assert first.reformulated_prompt.endswith("and these ?")
    out = guard.generate(msgs, max_new_tokens=4)
    assert out.usage.input_tokens > 0 and out.usage.output_tokens <= 4 and out.usage.guard_tokens > 0


def test_caption_cache_by_image_hash(guard: RASGuard) -> None:
    guard._captions.clear()
    img = _img(42)
    m1 = [{"role": "user", "content": [{"type": "image", "image": img}, "first question"]}]
    buf = io.BytesIO()
    img.save(buf, "PNG")
    m2 = [{"role": "user", "content": [{"type": "image", "image": buf.getvalue()}, "second question"]}]
    a1, a2 = guard.assess(m1), guard.assess(m2)
    assert not a1.cached_caption and a2.cached_caption
    assert a1.visual_context == a2.visual_context
    uncached = RASGuard(guard.backend, calibration=guard.calibration,
                        config=guard.calibration.config(caption_cache_size=0))
    assert uncached.assess(m2).visual_context == a2.visual_context and not uncached.assess(m2).cached_caption


def test_stop_strings_cut_the_answer(guard: RASGuard) -> None:
    msgs = [{"role": "user", "content": [{"type": "image", "image": _img(3)}, "tell me"]}]
    full = guard.generate(msgs, max_new_tokens=8, risk=0.0)
    words = full.text.split()
    assert len(words) >= 2
    stop = " " + words[1]
    cut = guard.generate(msgs, max_new_tokens=8, risk=0.0, stop=[stop])
    assert cut.text == full.text[: full.text.find(stop)] and cut.finish_reason == "stop"
    stream = guard.stream(msgs, max_new_tokens=8, risk=0.0, stop=[stop])
    assert "".join(stream) == cut.text


@pytest.mark.parametrize(
    ("content", "error"),
    [
        ([{"type": "image", "image": b"\x89PNG\r\n\x1a\n garbage"}, "q"], CorruptImageError),
        ([{"type": "image", "image": Image.new("1", (20000, 20000))}, "q"], ImageTooLargeError),
        ([{"type": "video", "video": "x.mp4"}, "q"], UnknownContentPartError),
        ([{"type": "image", "image": "https://example.com/x.png"}, "q"], InvalidMessageError),
    ],
)
def test_bad_input_raises_typed_errors(guard: RASGuard, content, error) -> None:
    msgs = [{"role": "user", "content": content}]
    for call in (guard.assess, lambda m: guard.generate(m, max_new_tokens=2), lambda m: guard.stream(m)):
        with pytest.raises(error):
            call(msgs)


def test_empty_messages_and_bad_risks(guard: RASGuard) -> None:
    with pytest.raises(EmptyMessagesError):
        guard.generate([], max_new_tokens=2)
    with pytest.raises(InvalidMessageError, match=r"\[0, 1\]"):
        guard.generate([{"role": "user", "content": "x"}], max_new_tokens=2, risk=1.5)
    with pytest.raises(InvalidMessageError, match="one per request"):
        guard.generate_batch([[{"role": "user", "content": "x"}]], risks=[0.1, 0.2])


def test_uncalibrated_guard_explains_itself(guard: RASGuard) -> None:
    bare = RASGuard(guard.backend)
    with pytest.raises(CalibrationError, match="no calibration"):
        bare.assess([{"role": "user", "content": "x"}])
    assert bare.generate([{"role": "user", "content": "x"}], max_new_tokens=2, risk=0.0).token_ids is not None


def test_text_only_model_refuses_images_and_missing_checkpoint(tiny_model_path, tmp_path) -> None:
    text = RASGuard.from_pretrained(tiny_model_path("llama"), device="cpu")
    with pytest.raises(UnsupportedInputError):
        text.generate([{"role": "user", "content": [{"type": "image", "image": _img(1)}, "q"]}], risk=0.0)
    with pytest.raises(ModelLoadError, match="no config.json"):
        RASGuard.from_pretrained(tmp_path / "nothing")


def test_missing_optional_package_is_a_clear_load_error(tiny_model_path) -> None:
    import importlib.util

    if importlib.util.find_spec("torchvision") is not None:
        pytest.skip("torchvision is installed: Qwen-VL processors load normally")
    with pytest.raises(ModelLoadError, match="pip install torchvision"):
        RASGuard.from_pretrained(tiny_model_path("qwen2_vl"), device="cpu")


def test_stream_close_is_prompt_in_every_state(guard: RASGuard) -> None:
    import time

    msgs = [{"role": "user", "content": [{"type": "image", "image": _img(8)}, "tell me more"]}]
    for consumed in (0, 1, 100):  # closed before, during and after the last piece
        stream = guard.stream(msgs, max_new_tokens=6, risk=0.0)
        for _, _piece in zip(range(consumed), stream):
            pass
        t0 = time.perf_counter()
        stream.close()
        stream.close()
        assert time.perf_counter() - t0 < 30
