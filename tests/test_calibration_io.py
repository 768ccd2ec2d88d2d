from __future__ import annotations

import json

import pytest
import torch

from ras_guard import Calibration, RASConfig
from ras_guard.backends.base import ModelFingerprint
from ras_guard.calibration import _build, auroc
from ras_guard.errors import CalibrationError, CalibrationMismatchError

FP = ModelFingerprint("LlavaForConditionalGeneration", 11, 4, "a" * 64)


def _cal(config: RASConfig | None = None) -> Calibration:
    torch.manual_seed(0)
    cfg = config or RASConfig()
    protos = torch.randn(cfg.num_steer_tokens, 4)
    return _build(protos, torch.randn(cfg.num_steer_tokens, 11), config=cfg, fingerprint=FP, s_base=0.6,
                  model_name="m", num_unsafe=3, num_reference=4, reference_stats={"auroc": 1.0})


def test_roundtrip_is_exact_and_pickle_free(tmp_path) -> None:
    cal = _cal()
    cal.save(tmp_path / "c")
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["calibration.json", "prototypes.safetensors"]
    meta = json.loads((tmp_path / "c" / "calibration.json").read_text())
    assert meta["s_base"] == 0.6 and meta["num_steer_tokens"] == 3 and meta["fingerprint"]["vocab_size"] == 11
    assert meta["transformers_version"] and meta["safety_prompt"] == RASConfig().safety_prompt
    back = Calibration.load(tmp_path / "c")
    assert back.meta == cal.meta
    assert torch.equal(back.prototypes, cal.prototypes) and torch.equal(back.prototype_logits, cal.prototype_logits)
    assert back.alpha == pytest.approx(4.595 / 0.4, abs=1e-3)


def test_id_depends_on_content() -> None:
    assert _cal().calibration_id == _cal().calibration_id
    assert _cal().calibration_id != _cal(RASConfig(gamma=0.5)).calibration_id


def test_missing_or_corrupt_files(tmp_path) -> None:
    with pytest.raises(CalibrationError, match="not a calibration folder"):
        Calibration.load(tmp_path)
    _cal().save(tmp_path)
    meta = json.loads((tmp_path / "calibration.json").read_text())
    (tmp_path / "calibration.json").write_text(json.dumps({**meta, "s_base": "high"}))
    with pytest.raises(CalibrationError, match="invalid calibration metadata"):
        Calibration.load(tmp_path)
    (tmp_path / "calibration.json").write_text(json.dumps({**meta, "num_steer_tokens": 4}))
    with pytest.raises(CalibrationError, match="shapes"):
        Calibration.load(tmp_path)
    (tmp_path / "calibration.json").write_text(json.dumps(meta))
    (tmp_path / "prototypes.safetensors").write_bytes(b"junk")
    with pytest.raises(CalibrationError, match="cannot read prototypes"):
        Calibration.load(tmp_path)


def test_mismatch_names_every_difference() -> None:
    cal = _cal()
    other = ModelFingerprint("Qwen2VLForConditionalGeneration", 12, 4, "b" * 64)
    with pytest.raises(CalibrationMismatchError) as info:
        cal.check_compatible(other, RASConfig(num_steer_tokens=4))
    msg = str(info.value)
    for word in ("architecture", "vocab_size", "lm_head_sha256", "num_steer_tokens", "ras-guard calibrate"):
        assert word in msg
    cal.check_compatible(FP, cal.config())  # same model and constants: fine


def test_config_takes_method_constants_from_calibration() -> None:
    cal = _cal(RASConfig(gamma=0.5, safety_prompt="Be careful."))
    cfg = cal.config(risk_floor=0.1)
    assert (cfg.gamma, cfg.safety_prompt, cfg.risk_floor) == (0.5, "Be careful.", 0.1)


def test_auroc() -> None:
    assert auroc([0.1, 0.9], [False, True]) == 1.0
    assert auroc([0.5, 0.5], [False, True]) == 0.5
    assert auroc([0.9, 0.1], [False, True]) == 0.0
