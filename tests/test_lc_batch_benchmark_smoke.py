"""The LangChain batch benchmark runs end to end on the demo model and writes its documented schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("langchain_ras_guard")

from benchmarks import lc_batch


def test_lc_batch_smoke_writes_one_record_per_mode(tmp_path: Path) -> None:
    from ras_guard import demo

    if not (demo.model_path() / "config.json").is_file():
        pytest.skip("the demo model's assets are not installed")
    out, table = tmp_path / "lc.json", tmp_path / "lc.md"
    code = lc_batch.main(
        ["--rows", "4", "--max-tokens", "3", "--repeats", "1", "--json", str(out), "--markdown", str(table)]
    )
    assert code == 0  # every mode gave the core's answers
    doc = json.loads(out.read_text())
    assert [r["mode"] for r in doc["records"]] == list(lc_batch.MODES)
    by = {r["mode"]: r for r in doc["records"]}
    assert by["core"]["ratio_to_core"] == 1.0
    for r in doc["records"]:
        assert r["median_s"] > 0 and r["rows"] == 4 and r["answers_equal_core"] is True
        assert r["ratio_to_core"] == pytest.approx(r["median_s"] / by["core"]["median_s"])
    text = table.read_text()
    assert "| lc_batch |" in text and "| lc_abatch |" in text and f"<= {lc_batch.TARGET}x core" in text


def test_requests_are_mixed_and_equal_in_both_forms() -> None:
    core, lc = lc_batch.requests(8)
    assert len(core) == len(lc) == 8
    with_image = [any(p["type"] == "image" for p in m[0]["content"]) for m in core]
    assert with_image == [True, True, False, False, True, True, False, False]
    assert [isinstance(m[0].content, list) for m in lc] == with_image
