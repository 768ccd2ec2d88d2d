"""A stored calibration is what its id says: edits, non-finite values, binary metadata and old formats are refused."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from ras_guard import Calibration, RASConfig
from ras_guard.backends.base import ModelFingerprint
from ras_guard.calibration import _build
from ras_guard.cli.main import main
from ras_guard.errors import CalibrationError, CalibrationIntegrityError

FP = ModelFingerprint("LlavaForConditionalGeneration", 11, 4, "a" * 64)


def _saved(folder: Path) -> Calibration:
    torch.manual_seed(0)
    cfg = RASConfig()
    cal = _build(torch.randn(cfg.num_steer_tokens, 4), torch.randn(cfg.num_steer_tokens, 11), config=cfg,
                 fingerprint=FP, s_base=0.6, model_name="m", num_unsafe=3, num_reference=4,
                 reference_stats={"auroc": 1.0})
    cal.save(folder)
    return cal


def _edit_json(folder: Path, **changes: object) -> None:
    path = folder / "calibration.json"
    meta = json.loads(path.read_text())
    meta.update(changes)
    path.write_text(json.dumps(meta))


def _edit_tensor(folder: Path, name: str, fn) -> None:  # type: ignore[no-untyped-def]
    path = folder / "prototypes.safetensors"
    tensors = load_file(str(path))
    tensors[name] = fn(tensors[name].clone())
    meta_id = json.loads((folder / "calibration.json").read_text())["calibration_id"]
    save_file(tensors, str(path), metadata={"calibration_id": meta_id})  # keep the stored id: a forgery


def test_id_is_a_full_content_hash(tmp_path: Path) -> None:
    cal = _saved(tmp_path)
    assert len(cal.calibration_id) == 32 and cal.calibration_id == cal.content_id()
    back = Calibration.load(tmp_path)
    assert back.calibration_id == cal.calibration_id and back.meta == cal.meta


def test_raised_s_base_is_refused_naming_both_ids_and_the_fix(tmp_path: Path) -> None:
    cal = _saved(tmp_path)
    _edit_json(tmp_path, s_base=0.99)  # turns the guard off while the log shows the trusted id
    with pytest.raises(CalibrationIntegrityError) as info:
        Calibration.load(tmp_path)
    msg = str(info.value)
    assert cal.calibration_id in msg and "--rehash" in msg and "ras-guard calibrate" in msg
    actual = Calibration.load(tmp_path, rehash=True).calibration_id
    assert actual in msg and actual != cal.calibration_id


@pytest.mark.parametrize(
    "edit",
    [
        {"alpha": 1.0},
        {"gamma": 0.31},
        {"safety_prompt": "Answer everything."},
        {"reference_stats": {"auroc": 0.5}},
        {"model_name": "other"},
    ],
)
def test_any_metadata_edit_is_refused(tmp_path: Path, edit: dict) -> None:
    _saved(tmp_path)
    _edit_json(tmp_path, **edit)
    with pytest.raises(CalibrationIntegrityError, match="does not match its content"):
        Calibration.load(tmp_path)


@pytest.mark.parametrize("name", ["prototypes", "prototype_logits"])
def test_tensor_edits_are_refused(tmp_path: Path, name: str) -> None:
    _saved(tmp_path)
    _edit_tensor(tmp_path, name, lambda t: t + 1e-3)
    with pytest.raises(CalibrationIntegrityError, match="does not match its content"):
        Calibration.load(tmp_path)


def test_tensors_of_another_calibration_are_refused(tmp_path: Path) -> None:
    _saved(tmp_path / "a")
    _saved(tmp_path / "b")
    _edit_json(tmp_path / "b", s_base=0.5)
    Calibration.load(tmp_path / "b", rehash=True).save(tmp_path / "b")
    (tmp_path / "a" / "prototypes.safetensors").write_bytes((tmp_path / "b" / "prototypes.safetensors").read_bytes())
    with pytest.raises(CalibrationIntegrityError, match="different calibrations"):
        Calibration.load(tmp_path / "a")


@pytest.mark.parametrize(("field", "value"), [("s_base", float("-inf")), ("alpha", float("inf")),
                                              ("s_base", float("nan")), ("gamma", float("inf"))])
def test_infinite_constants_are_refused(tmp_path: Path, field: str, value: float) -> None:
    _saved(tmp_path)
    _edit_json(tmp_path, **{field: value})  # json writes -Infinity / Infinity / NaN
    for rehash in (False, True):
        with pytest.raises(CalibrationError, match=field):
            Calibration.load(tmp_path, rehash=rehash)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("name", ["prototypes", "prototype_logits"])
def test_non_finite_tensors_are_refused(tmp_path: Path, name: str, bad: float) -> None:
    _saved(tmp_path)

    def poison(t: torch.Tensor) -> torch.Tensor:
        t[0, 0] = bad
        return t

    _edit_tensor(tmp_path, name, poison)
    for rehash in (False, True):
        with pytest.raises(CalibrationError, match=f"{name}.*NaN or infinite"):
            Calibration.load(tmp_path, rehash=rehash)


@pytest.mark.parametrize(
    "payload",
    [
        pickle.dumps({"format_version": 2, "s_base": 0.99}),  # protocol 4+: binary
        pickle.dumps({"s_base": 0.99}, protocol=0),  # protocol 0: ASCII, not JSON
        "{\"s_base\": 0.5, \"model_name\": \"caf\u00e9\"}".encode("latin-1"),  # not UTF-8
        b"\xff\xfe{\x00}\x00",  # UTF-16
    ],
)
def test_binary_or_non_utf8_metadata_is_a_calibration_error(tmp_path: Path, payload: bytes) -> None:
    _saved(tmp_path)
    (tmp_path / "calibration.json").write_bytes(payload)
    with pytest.raises(CalibrationError):
        Calibration.load(tmp_path)


def test_save_refuses_content_changed_in_memory(tmp_path: Path) -> None:
    cal = _saved(tmp_path / "a")
    forged = Calibration(meta=cal.meta, prototypes=cal.prototypes * 2, prototype_logits=cal.prototype_logits)
    with pytest.raises(CalibrationIntegrityError):
        forged.save(tmp_path / "b")
    assert not (tmp_path / "b" / "calibration.json").exists()
    forged.rehash().save(tmp_path / "b")
    assert Calibration.load(tmp_path / "b").calibration_id != cal.calibration_id


def test_format_1_is_refused_and_the_cli_rehashes_it_keeping_every_number(tmp_path: Path, capsys) -> None:
    cal = _saved(tmp_path / "old")
    _edit_json(tmp_path / "old", format_version=1, calibration_id="e712345d4347")
    with pytest.raises(CalibrationError, match="format_version 1.*--rehash"):
        Calibration.load(tmp_path / "old")
    assert main(["calibrate", "--rehash", str(tmp_path / "old"), "--out", str(tmp_path / "new")]) == 0
    assert "e712345d4347" in capsys.readouterr().out
    new = Calibration.load(tmp_path / "new")
    assert new.meta.format_version == 2 and new.calibration_id == new.content_id()
    assert (new.s_base, new.alpha, new.meta.reference_stats) == (cal.s_base, cal.alpha, cal.meta.reference_stats)
    assert torch.equal(new.prototypes, cal.prototypes) and torch.equal(new.prototype_logits, cal.prototype_logits)


def test_bundled_demo_calibration_verifies_and_reaches_assessments() -> None:
    from ras_guard import RASGuard, demo

    cal = Calibration.load(demo.calibration_path())
    assert cal.calibration_id == cal.content_id() and cal.meta.format_version == 2
    guard = RASGuard.from_pretrained("demo", device="cpu")
    assert guard.calibration is not None and guard.calibration.calibration_id == cal.calibration_id
    assessment = guard.assess([{"role": "user", "content": "How do I bake bread?"}])
    assert assessment.calibration_id == cal.calibration_id
