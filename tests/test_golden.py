"""The guard's outputs equal the recorded golden file (tokens exactly; risk and similarity within 1e-5).

Recorded with ``python scripts/record_golden.py``; the invariant of every engine refactoring (issue 14).
"""

from __future__ import annotations

import json

import pytest

from _golden import GOLDEN, demo_outputs, tiny_outputs
from ras_guard.testing import ARCHITECTURES


def _check(got: list[dict], want: list[dict]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g["tokens"] == w["tokens"]
        assert g["steered"] == w["steered"]
        assert g["visual_context"] == w["visual_context"]
        assert g["risk"] == pytest.approx(w["risk"], abs=1e-5)
        assert g["similarity"] == pytest.approx(w["similarity"], abs=1e-5)


@pytest.fixture(scope="module")
def golden() -> dict:
    return json.loads(GOLDEN.read_text())


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_tiny_architecture_outputs_match_golden(arch: str, golden: dict) -> None:
    _check(tiny_outputs(arch), golden[arch])


def test_demo_outputs_match_golden(golden: dict) -> None:
    _check(demo_outputs(), golden["demo"])
