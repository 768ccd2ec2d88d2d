"""The serve load benchmark runs end to end (tiny settings) and writes its JSON and Markdown."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import serve_load


def test_serve_load_smoke_writes_one_record_per_concurrency(tmp_path: Path) -> None:
    out, table = tmp_path / "load.json", tmp_path / "load.md"
    assert serve_load.main(["--concurrency", "1,2", "--waves", "1", "--tokens", "3", "--json", str(out),
                            "--markdown", str(table)]) == 0
    records = json.loads(out.read_text())["records"]
    assert [r["concurrency"] for r in records] == [1, 2]
    for r in records:
        for side in ("in_process", "server"):
            assert r[side]["p50_s"] > 0 and r[side]["p99_s"] >= r[side]["p50_s"] and r[side]["tokens_per_s"] > 0
        assert r["requests"] == r["concurrency"]
        assert r["throughput_ratio"] > 0 and r["p50_ratio"] > 0
    assert "| 2 |" in table.read_text()
