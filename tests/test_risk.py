from __future__ import annotations

import math

import pytest
import torch

from ras_guard.risk import alpha_for, apply_softcap, risk_from_similarity, similarity, weighted_distribution


def test_weighted_distribution_uses_gamma_powers() -> None:
    logits = torch.tensor([[0.0, 10.0], [10.0, 0.0], [0.0, 0.0]])
    w = weighted_distribution(logits, 0.5)
    p = torch.softmax(logits, -1)
    assert torch.allclose(w, 0.5 * p[0] + 0.25 * p[1] + 0.125 * p[2])


def test_similarity_is_cosine_of_weighted_sums() -> None:
    torch.manual_seed(0)
    q, p = torch.randn(2, 3, 11), torch.randn(3, 11)
    s = similarity(q, p, 0.3)
    for b in range(2):
        a = sum(0.3 ** (n + 1) * torch.softmax(q[b, n], -1) for n in range(3))
        c = sum(0.3 ** (n + 1) * torch.softmax(p[n], -1) for n in range(3))
        assert float(s[b]) == pytest.approx(float(a @ c / (a.norm() * c.norm())), abs=1e-6)


def test_similarity_shape_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="do not match"):
        similarity(torch.zeros(1, 2, 5), torch.zeros(3, 5), 0.3)


def test_alpha_maps_full_similarity_to_099_and_base_to_half() -> None:
    a = alpha_for(0.712)
    assert a == pytest.approx(15.955, abs=1e-3)  # published LLaVA-1.5-7B value
    assert risk_from_similarity(1.0, s_base=0.712, alpha=a) == pytest.approx(0.99)
    assert risk_from_similarity(0.712, s_base=0.712, alpha=a) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        alpha_for(1.0)


def test_softcap() -> None:
    x = torch.tensor([100.0, -3.0])
    assert torch.allclose(apply_softcap(x, 30.0), 30 * torch.tanh(x / 30))
    assert apply_softcap(x, None) is x
    assert math.isclose(float(apply_softcap(torch.tensor(0.0), 5.0)), 0.0)


def test_risk_is_stable_for_huge_alpha() -> None:
    assert risk_from_similarity(0.0, s_base=0.9999999, alpha=1.1e7) == 0.0
    assert risk_from_similarity(1.0, s_base=0.9, alpha=1e9) == 1.0
