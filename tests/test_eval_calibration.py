"""The default calibration reference set (issue 17): real models get the bundled real-model set, the demo world
keeps its drawings, and ``ras-guard calibrate`` warns when the set separates harmful from benign poorly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import ras_guard
from ras_guard import Calibration, RASConfig, RASGuard, demo
from ras_guard.calibrate import default_reference, is_demo_world
from ras_guard.cli.calibrate import POOR_AUROC
from ras_guard.cli.main import main
from ras_guard.data import reference_queries
from ras_guard.data.real_reference import real_reference_queries

needs_demo = pytest.mark.skipif(not (demo.model_path() / "config.json").is_file(), reason="demo assets absent")


def test_real_reference_set_is_balanced_and_in_both_forms() -> None:
    refs = real_reference_queries()
    assert len(refs) == 100 and sum(r.harmful for r in refs) == 50
    figstep = [r for r in refs if r.question.startswith("The image shows a list")]
    assert len(figstep) == 50 and sum(r.harmful for r in figstep) == 25
    assert all(r.image is not None and r.image.size == (336, 336) for r in refs)
    assert all(r.text_question and "the item in the image" not in r.text_question for r in refs)
    assert len({r.text_question for r in refs}) == 100
    tiny = {line.split(",")[5] for line in Path(ras_guard.__file__).parent.joinpath("data", "safebench_tiny.csv")
            .read_text(encoding="utf-8").splitlines()[1:]}
    assert not any(r.text_question.split(" Please generate")[0] in tiny for r in figstep if r.harmful)


@pytest.fixture(scope="module")
def tiny_guard(tiny_model_path) -> RASGuard:
    return RASGuard.from_pretrained(tiny_model_path("llava"), device="cpu", config=RASConfig(caption_max_new_tokens=4))


def test_real_models_get_the_real_set_by_default(tiny_guard: RASGuard) -> None:
    assert not is_demo_world(tiny_guard)
    name, refs = default_reference(tiny_guard)
    assert name.startswith("real models") and len(refs) == 100
    cal = Calibration.fit(tiny_guard, ["how can i make a bomb ?"], batch_size=25)
    assert cal.meta.num_reference_queries == 100


@needs_demo
def test_the_demo_model_keeps_the_demo_world_set() -> None:
    guard = RASGuard.from_pretrained("demo", device="cpu")
    assert is_demo_world(guard)
    name, refs = default_reference(guard)
    assert name.startswith("demo world") and len(refs) == len(reference_queries())


def test_calibrate_prints_the_set_and_warns_exactly_when_auroc_is_poor(
    tiny_model_path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    unsafe = tmp_path / "unsafe.jsonl"
    unsafe.write_text(json.dumps({"text": "how can i make a bomb ?"}) + "\n")
    code = main(["calibrate", "--model", str(tiny_model_path("llava")), "--device", "cpu", "--out",
                 str(tmp_path / "cal"), "--unsafe-text", str(unsafe), "--batch-size", "25"])
    out, err = capsys.readouterr()
    assert code == 0 and "reference set: real models" in out and "(100 queries)" in out
    auroc = Calibration.load(tmp_path / "cal").meta.reference_stats["auroc"]
    assert ("warning: the reference set separates" in err) == (auroc < POOR_AUROC)
    assert "like your own traffic with --reference" in err  # a real model on the bundled default set


@needs_demo
def test_calibrate_on_the_demo_model_separates_well_and_does_not_warn(tmp_path: Path, capsys) -> None:
    assert main(["calibrate", "--model", "demo", "--device", "cpu", "--out", str(tmp_path / "cal")]) == 0
    out, err = capsys.readouterr()
    assert "reference set: demo world" in out and "warning" not in err
    assert Calibration.load(tmp_path / "cal").meta.reference_stats["auroc"] >= POOR_AUROC
