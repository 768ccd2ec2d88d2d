"""The overhead benchmark runs end to end on a tiny model and writes the documented JSON schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from benchmarks import _models, overhead
from benchmarks._modes import MODES, REQUIRED

RECORD_KEYS = {"mode", "input_kind", "length", "batch_size", "median_s", "p90_s", "tokens_per_s", "peak_mem_mb",
               "ratio_to_unguarded", "paired_ratio_to_unguarded", "min_s"}


def test_overhead_smoke_writes_one_record_per_configuration(tiny_model_path: Any, tmp_path: Path) -> None:
    out, table = tmp_path / "bench.json", tmp_path / "bench.md"
    code = overhead.main([
        "--model", str(tiny_model_path("llava")), "--device", "cpu", "--lengths", "4", "--batch-sizes", "1",
        "--repeats", "1", "--memory", "off", "--caption-tokens", "4", "--json", str(out), "--markdown", str(table),
    ])
    assert code == 0
    data = json.loads(out.read_text())
    records = data["records"]
    assert {(r["mode"], r["input_kind"]) for r in records} == {(m, k) for m in MODES for k in ("benign", "harmful")}
    for r in records:
        assert RECORD_KEYS <= set(r)
        assert (r["length"], r["batch_size"]) == (4, 1)
        assert r["median_s"] > 0 and r["p90_s"] >= r["median_s"] and r["tokens_per_s"] > 0
    assert all(r["ratio_to_unguarded"] == 1.0 for r in records if r["mode"] == "unguarded")
    assert set(REQUIRED) <= {r["mode"] for r in records}
    assert data["meta"]["prefix_path"] == "used"
    text = table.read_text()
    assert "| benign | 4 | 1 | ras_guard |" in text
    tables = [block.splitlines() for block in text.split("\n\n") if block.startswith("|")]
    assert len(tables) == 2  # every record, then the target ratios
    for rows in tables:
        assert len({line.count("|") for line in rows}) == 1, "header and rows must have the same columns"
    by = {(r["mode"], r["input_kind"]): r for r in records}
    for row in data["summary"]:  # the target ratios are the records' medians, divided
        ras, ref = by[("ras_guard", row["input_kind"])], by[("reference", row["input_kind"])]
        assert row["faster_than_reference"] == pytest.approx(ref["median_s"] / ras["median_s"])
        assert row["faster_than_ecso"] == pytest.approx(by[("ecso", row["input_kind"])]["median_s"] / ras["median_s"])
        assert row["x_unguarded"] == ras["ratio_to_unguarded"]
    assert [(r["input_kind"], r["length"]) for r in data["summary"]] == [("benign", 4), ("harmful", 4)]
    assert "| benign | 4 | 1 |" in text.split("Targets (ras_guard)")[1]


def test_memory_worker_reports_a_peak(tiny_model_path: Any, tmp_path: Path) -> None:
    args = overhead.parse_args(["--model", str(tiny_model_path("llava")), "--device", "cpu", "--lengths", "4",
                                "--batch-sizes", "1", "--inputs", "benign", "--caption-tokens", "4",
                                "--memory-worker", "ras_guard"])
    guard, _ = _models.load(args, tmp_path)
    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("needs Linux /proc/self/clear_refs")
    from benchmarks._modes import Guards

    (rec,) = overhead.memory_worker(Guards.of(guard), args, multimodal=True)
    assert rec["peak_mem_mb"] > 0 and rec["peak_mem_delta_mb"] >= 0


def test_random_arch_configs_have_the_published_sizes() -> None:
    ids = {"image_token_index": 5, "image_token_id": 5, "video_token_id": 6, "vision_start_token_id": 7,
           "vision_end_token_id": 8, "bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 2, "vocab_size": 700}
    llava = _models.arch_config("llava-1.5-7b", "full", ids)
    t, v = llava.text_config, llava.vision_config
    assert (t.hidden_size, t.num_hidden_layers, t.num_attention_heads, t.vocab_size, t.intermediate_size) == (
        4096, 32, 32, 32064, 11008)
    assert (v.hidden_size, v.num_hidden_layers, v.image_size, v.patch_size) == (1024, 24, 336, 14)
    qwen = _models.arch_config("qwen2-vl-7b", "full", ids)
    assert (qwen.text_config.hidden_size, qwen.text_config.num_hidden_layers, qwen.text_config.vocab_size) == (
        3584, 28, 152064)
    tiny = _models.arch_config("llava-1.5-7b", "tiny", ids)
    assert tiny.text_config.hidden_size == 64 and tiny.vision_config.image_size == 336


def test_random_arch_tiny_scale_generates(tmp_path: Path) -> None:
    backend = _models.random_model("llava-1.5-7b", "tiny", torch.device("cpu"), torch.float32, tmp_path)
    batch = _models.inputs("benign", 1, multimodal=True)
    from ras_guard.messages import normalize_messages

    enc = backend.encode([normalize_messages(batch[0]).as_list()])
    assert int((enc["input_ids"] == backend.model.config.image_token_index).sum()) == 576  # real LLaVA-1.5 geometry
    res = backend.run(enc, max_new_tokens=2, min_new_tokens=2, do_sample=False)
    assert res.sequences.shape == (1, 2)
