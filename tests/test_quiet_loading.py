"""Loading and answering through the library prints no progress bar and no deprecation warning (issue 13.5)."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest

from ras_guard import RASGuard
from ras_guard.errors import CalibrationMismatchError


def _user(text: str) -> list[dict]:
    return [{"role": "user", "content": [{"type": "text", "text": text}]}]


def test_load_and_generate_without_progress_bars_or_deprecations(
    tiny_model_path: Callable[..., Path], capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    path = tiny_model_path("llava")
    capfd.readouterr()
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.WARNING):
        warnings.simplefilter("always")
        guard = RASGuard.from_pretrained(path, device="cpu", dtype="float32")
        guard.generate(_user("hello there"), risk=0.0, max_new_tokens=3)
        guard.generate_batch([_user("hello"), _user("how are you")], risks=[0.0, 0.0], max_new_tokens=3)
    err = capfd.readouterr().err
    assert "Loading weights" not in err and "%|" not in err, err
    bad = [w for w in caught if issubclass(w.category, (FutureWarning, DeprecationWarning))]
    assert not bad, [str(w.message) for w in bad]
    assert not [r for r in caplog.records if "deprecated" in r.getMessage()], caplog.text


def test_prefix_cache_path_raises_no_deprecation(real_demo_or_skip: None) -> None:
    guard = RASGuard.from_pretrained("demo", device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        out = guard.generate(_user("How do I bake bread?"), max_new_tokens=4)  # assessment shares the prefix
    assert out.text


def test_float16_against_a_float32_calibration_names_the_dtype(real_demo_or_skip: None) -> None:
    with pytest.raises(CalibrationMismatchError, match="loaded in float16"):
        RASGuard.from_pretrained("demo", device="cpu", dtype="float16")


@pytest.fixture
def real_demo_or_skip() -> None:
    from ras_guard import demo

    if not (demo.model_path() / "config.json").is_file():
        pytest.skip("the demo model's assets are not installed")
