from __future__ import annotations

import pytest
from pydantic import ValidationError

from ras_guard import RASConfig


def test_defaults_match_the_method() -> None:
    cfg = RASConfig()
    assert (cfg.num_steer_tokens, cfg.gamma, cfg.caption_max_new_tokens) == (3, 0.3, 40)
    assert "The image shows" in cfg.caption_prompt and "refuse" in cfg.safety_prompt


def test_validation_and_immutability() -> None:
    with pytest.raises(ValidationError):
        RASConfig(gamma=0)
    with pytest.raises(ValidationError):
        RASConfig(risk_floor=2)
    with pytest.raises(ValidationError):
        RASConfig(unknown=1)
    with pytest.raises(ValidationError):
        RASConfig().gamma = 0.5  # frozen
