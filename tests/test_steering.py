from __future__ import annotations

import torch

from ras_guard.backends.hf import SteeringLogitsProcessor
from ras_guard.risk import apply_softcap


def _ids(length: int, rows: int = 2) -> torch.Tensor:
    return torch.zeros(rows, length, dtype=torch.long)


def test_interpolates_only_first_n_steps_per_row_risk() -> None:
    torch.manual_seed(0)
    proto = torch.randn(3, 7)
    scores = torch.randn(2, 7)
    proc = SteeringLogitsProcessor(proto, [0.25, 0.0], prompt_length=5, floor=0.05)
    for step in range(3):
        out = proc(_ids(5 + step), scores.clone())
        assert torch.allclose(out[0], 0.75 * scores[0] + 0.25 * proto[step])
        assert torch.equal(out[1], scores[1])  # risk under the floor: bit-identical
    assert torch.equal(proc(_ids(8), scores.clone()), scores)  # step N: untouched


def test_risk_one_gives_prototype_logits_exactly() -> None:
    proto = torch.randn(3, 9)
    out = SteeringLogitsProcessor(proto, [1.0], prompt_length=2)(_ids(2, 1), torch.randn(1, 9))
    assert torch.equal(out[0].argmax(), proto[0].argmax())
    assert torch.allclose(out[0], proto[0])


def test_softcap_interpolates_uncapped_logits() -> None:
    torch.manual_seed(1)
    raw, proto = torch.randn(1, 6) * 5, torch.randn(3, 6) * 5
    capped = apply_softcap(raw, 30.0)
    out = SteeringLogitsProcessor(proto, [0.5], prompt_length=1, softcap=30.0)(_ids(1, 1), capped)
    assert torch.allclose(out, apply_softcap(0.5 * raw + 0.5 * proto[0], 30.0), atol=1e-4)


def test_beams_repeat_row_risks() -> None:
    proto = torch.zeros(3, 4)
    scores = torch.ones(4, 4)
    out = SteeringLogitsProcessor(proto, [1.0, 0.0], prompt_length=1)(_ids(1, 4), scores)
    assert out[:2].abs().sum() == 0 and torch.equal(out[2:], scores[2:])
