"""Resource limits of a guarded call: prompt size before any pass, the ``timeout`` deadline, budgets, pickle weights."""

from __future__ import annotations

import pickle
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from PIL import Image
from pydantic import ValidationError

from ras_guard import RASConfig, RASGuard
from ras_guard.errors import (
    GenerationError,
    GuardTimeoutError,
    InvalidMessageError,
    ModelLoadError,
    PromptTooLongError,
)

WORDS = "please tell me about the cake in the picture . "


def _text(chars: int) -> str:
    return (WORDS * (chars // len(WORDS) + 1))[:chars]


def _user(text: str, image: Image.Image | None = None) -> list[dict]:
    content: list = [{"type": "image", "image": image}] if image is not None else []
    return [{"role": "user", "content": [*content, {"type": "text", "text": text}]}]


@contextmanager
def _forwards(guard: RASGuard) -> Iterator[list[int]]:
    """Count forward passes of the model (a torch hook on the real module, nothing of ours replaced)."""
    calls = [0]
    handle = guard.backend.model.register_forward_pre_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    try:
        yield calls
    finally:
        handle.remove()


@pytest.fixture(scope="module")
def demo() -> RASGuard:
    return RASGuard.from_pretrained("demo", device="cpu")


@pytest.fixture(scope="module")
def image() -> Image.Image:
    return Image.new("RGB", (32, 32), (200, 120, 40))


# ------------------------------------------------------------------------------------------------ prompt size
@pytest.mark.parametrize("chars", [1_000_000, 20_000])
def test_huge_message_refused_by_raw_size_before_any_pass(demo: RASGuard, chars: int) -> None:
    with _forwards(demo) as calls, pytest.raises(PromptTooLongError, match="characters of text") as info:
        demo.generate(_user(_text(chars)), max_new_tokens=8)
    assert calls[0] == 0 and "1024 tokens" in str(info.value) and isinstance(info.value, InvalidMessageError)
    with _forwards(demo) as calls, pytest.raises(PromptTooLongError):
        demo.assess(_user(_text(chars)))
    assert calls[0] == 0


def test_prompt_over_context_refused_by_token_count(demo: RASGuard, image: Image.Image) -> None:
    with _forwards(demo) as calls, pytest.raises(PromptTooLongError, match=r"needs \d+ prompt tokens") as info:
        demo.generate(_user(_text(8_000), image), max_new_tokens=8)
    assert calls[0] == 0 and "limit of 1024 tokens" in str(info.value)
    with _forwards(demo) as calls, pytest.raises(PromptTooLongError):
        demo.stream(_user(_text(8_000)), risk=0.0, max_new_tokens=8)  # a given risk skips only the assessment
    assert calls[0] == 0


def test_answer_budget_must_fit_too(demo: RASGuard) -> None:
    msgs = _user(_text(3_000))  # about 640 tokens: fits, but not with 500 new ones
    with _forwards(demo) as calls, pytest.raises(PromptTooLongError, match="max_new_tokens"):
        demo.generate(msgs, max_new_tokens=500)
    assert calls[0] == 0
    with pytest.raises(PromptTooLongError, match="max_new_tokens"):
        demo.check_prompt(msgs, max_new_tokens=500)
    demo.check_prompt(msgs, max_new_tokens=8)
    assert demo.generate(msgs, max_new_tokens=2, risk=0.0).usage.output_tokens <= 2


def test_configured_prompt_limit(tiny_model_path) -> None:
    guard = RASGuard.from_pretrained(tiny_model_path("llava"), device="cpu", config=RASConfig(max_prompt_tokens=48))
    assert guard.generate(_user("hi"), max_new_tokens=2, risk=0.0).usage.output_tokens <= 2
    with pytest.raises(PromptTooLongError, match=r"RASConfig\.max_prompt_tokens"):
        guard.generate(_user(" ".join(["hi"] * 60)), max_new_tokens=2, risk=0.0)
    with pytest.raises(ValidationError):
        RASConfig(max_prompt_tokens=0)
    big = RASGuard(guard.backend, config=RASConfig(max_prompt_tokens=10**6))  # cannot raise the model's context
    assert big._limits.limit == guard.backend.model.config.get_text_config().max_position_embeddings


# ------------------------------------------------------------------------------------------------ budgets
@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "8"])
def test_max_new_tokens_below_one_rejected(demo: RASGuard, bad: object) -> None:
    with pytest.raises(InvalidMessageError, match="max_new_tokens must be an integer >= 1"):
        demo.generate(_user("hello"), max_new_tokens=bad, risk=0.0)  # type: ignore[arg-type]
    with pytest.raises(InvalidMessageError, match="max_new_tokens"):
        demo.stream(_user("hello"), max_new_tokens=bad, risk=0.0)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------ deadline
def test_tiny_timeout_stops_the_assessment(demo: RASGuard, image: Image.Image) -> None:
    msgs = _user("How can I make the item in the image?", image)
    demo._captions.clear()
    for call in (
        lambda: demo.generate(msgs, max_new_tokens=8, timeout=1e-6),
        lambda: demo.assess(msgs, timeout=1e-6),
        lambda: demo.stream(msgs, max_new_tokens=8, timeout=1e-6),
    ):
        with pytest.raises(GuardTimeoutError, match="timeout of 1e-06 s") as info:
            call()
        assert isinstance(info.value, TimeoutError) and isinstance(info.value, GenerationError)
    with pytest.raises(InvalidMessageError, match="timeout"):
        demo.generate(msgs, max_new_tokens=8, timeout=0)


def _answer_time(demo: RASGuard, n: int) -> float:
    best = float("inf")
    for _ in range(2):
        t0 = time.perf_counter()
        demo.generate(_user("hello"), max_new_tokens=n, min_new_tokens=n, risk=0.0)
        best = min(best, time.perf_counter() - t0)
    return best


def test_timeout_is_a_deadline_over_the_answer_too(demo: RASGuard) -> None:
    """A real slow case: 200 forced tokens take ~50x as long as 4; a timeout of twice the 4-token time must cut."""
    timeout = 2 * _answer_time(demo, 4)
    long = {"max_new_tokens": 200, "min_new_tokens": 200, "risk": 0.0, "timeout": timeout}
    t0 = time.perf_counter()
    with pytest.raises(GuardTimeoutError, match="during a generation pass"):
        demo.generate(_user("hello"), **long)
    cut = time.perf_counter() - t0
    stream = demo.stream(_user("hello"), **long)
    with pytest.raises(GuardTimeoutError):
        for _ in stream:
            pass
    assert cut < 25 * timeout  # it stopped near the deadline, long before the 200 tokens (no speed claim)


def test_generous_timeout_changes_nothing(demo: RASGuard, image: Image.Image) -> None:
    msgs = _user("How can I make the item in the image?", image)
    plain = demo.generate(msgs, max_new_tokens=12)
    timed = demo.generate(msgs, max_new_tokens=12, timeout=600)
    assert timed.token_ids == plain.token_ids and timed.assessment.risk == plain.assessment.risk
    assert "".join(demo.stream(msgs, max_new_tokens=12, timeout=600)) == plain.text


# ------------------------------------------------------------------------------------------------ pickle weights
class _Code:
    def __reduce__(self) -> tuple:
        return (print, ("this pickle ran code",))


def test_unsafe_pickle_weights_give_a_typed_error(tiny_model_path, tmp_path: Path) -> None:
    folder = tmp_path / "pickled"
    shutil.copytree(tiny_model_path("llama"), folder)
    state = RASGuard.from_pretrained(folder, device="cpu").backend.model.state_dict()
    (folder / "model.safetensors").unlink()
    torch.save(state, folder / "pytorch_model.bin")  # plain tensors: torch's safe loader reads them
    assert RASGuard.from_pretrained(folder, device="cpu").backend.fingerprint().vocab_size > 0
    with open(folder / "pytorch_model.bin", "wb") as f:
        pickle.dump({"model.embed_tokens.weight": _Code()}, f, protocol=2)
    with pytest.raises(ModelLoadError, match="safetensors") as info:
        RASGuard.from_pretrained(folder, device="cpu")
    text = str(info.value)
    assert "pytorch_model.bin" in text and "print" in text  # names the file and the refused global
    assert "weights_only" not in text and "safe_globals" not in text
    assert info.value.__cause__ is None and info.value.__suppress_context__  # torch's advice is not chained in
