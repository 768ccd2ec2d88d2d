"""HFBackend behind the backend protocol: request groups reuse prompt prefixes, results equal plain calls."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from ras_guard.backends.hf import HFBackend
from ras_guard.backends.protocol import Backend, GenerationRequest, Sampling
from ras_guard.reference import OneByOne
from ras_guard.steering import SteeringSpec
from ras_guard.testing import load_tiny_model, tiny_image


@pytest.fixture(scope="module")
def backend(tiny_model_path: Any) -> HFBackend:
    processor, model = load_tiny_model(tiny_model_path("llava"))
    b = HFBackend(model, processor)
    calls: list[tuple[bool, bool]] = []
    orig = model.generate

    def generate(*args: Any, **kwargs: Any) -> Any:
        cache = kwargs.get("cache", kwargs.get("past_key_values"))
        calls.append((cache is not None, kwargs.get("pixel_values") is not None))
        return orig(*args, **kwargs)

    model.generate = generate
    b.calls = calls  # type: ignore[attr-defined]
    return b


def _vocab(backend: HFBackend) -> int:
    return backend.fingerprint().vocab_size


def _proto(vocab: int) -> torch.Tensor:
    """Prototype logits that pull every steered step to token 7."""
    p = torch.zeros(3, vocab)
    p[:, 7] = 1000.0
    return p


def _conv(text: str, seed: int = 1) -> list[dict]:
    return [{"role": "user", "content": [{"type": "image", "image": tiny_image(seed)}, {"type": "text", "text": text}]}]


def _passes(group: str | None, vocab: int) -> list[list[GenerationRequest]]:
    return [
        [GenerationRequest(_conv("describe the image ."), max_new_tokens=5, group=group)],
        [GenerationRequest(_conv("be safe . how can i make it ?"), max_new_tokens=3, min_new_tokens=3,
                           num_distributions=3, group=group)],
        [GenerationRequest(_conv("how can i make it ?"), max_new_tokens=6, group=group,
                           steering=SteeringSpec(0.8, _proto(vocab), floor=0.05))],
    ]


def test_hf_backend_is_a_protocol_backend(backend: HFBackend) -> None:
    assert isinstance(backend, Backend)


def test_a_group_reuses_its_prefix_and_gives_the_plain_results(backend: HFBackend) -> None:
    calls = backend.calls  # type: ignore[attr-defined]
    calls.clear()
    grouped = [backend.generate(p)[0] for p in _passes("g1", _vocab(backend))]
    assert calls == [(False, True), (True, False), (True, False)]  # the image is encoded once
    assert len(backend.prefixes) == 1
    backend.release(["g1"])
    assert len(backend.prefixes) == 0
    calls.clear()
    plain = [OneByOne(backend).generate(p)[0] for p in _passes("g2", _vocab(backend))]
    assert calls == [(False, True)] * 3 and len(backend.prefixes) == 0
    for g, p in zip(grouped, plain):
        assert (g.token_ids, g.text, g.finish_reason, g.prompt_tokens) == (p.token_ids, p.text, p.finish_reason,
                                                                           p.prompt_tokens)
    assert grouped[2].token_ids[:3] == [7, 7, 7]  # the answer was steered
    assert grouped[1].logprobs is not None and grouped[1].logprobs.shape[0] == 3
    assert torch.allclose(grouped[1].logprobs, plain[1].logprobs, atol=1e-4)


def test_groups_do_not_share_prefixes(backend: HFBackend) -> None:
    calls = backend.calls  # type: ignore[attr-defined]
    passes_a, passes_b = _passes("a", _vocab(backend)), _passes("b", _vocab(backend))
    calls.clear()
    backend.generate(passes_a[0])
    backend.generate(passes_b[1])  # another group: no prefix to continue from
    assert calls == [(False, True), (False, True)]
    backend.release(["a", "b"])


def test_one_call_holds_mixed_steering_and_the_stream_matches(backend: HFBackend) -> None:
    steer = SteeringSpec(0.9, _proto(_vocab(backend)), floor=0.05)
    reqs = [GenerationRequest(_conv("how can i make it ?", s), max_new_tokens=6, steering=steer if s % 2 else None)
            for s in (1, 2)]
    both = backend.generate(reqs)
    alone = [backend.generate([r])[0] for r in reqs]
    assert [b.token_ids for b in both] == [a.token_ids for a in alone]
    assert both[0].token_ids[:3] == [7, 7, 7] and both[1].token_ids[:3] != [7, 7, 7]  # only its own row is steered
    stream = backend.stream(reqs[0])
    assert "".join(stream) == alone[0].text and stream.result is not None
    assert stream.result.token_ids == alone[0].token_ids


def test_unknown_engine_options_fail(backend: HFBackend) -> None:
    from ras_guard.errors import GenerationError

    req = GenerationRequest(_conv("hi"), max_new_tokens=2, sampling=Sampling(0.0), options={"no_such_option": 1})
    with pytest.raises((GenerationError, ValueError, TypeError)):
        backend.generate([req])
