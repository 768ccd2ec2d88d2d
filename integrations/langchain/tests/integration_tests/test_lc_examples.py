"""The examples in ``examples/`` run end to end as subprocesses (demo model, else a tiny checkpoint)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from lc_ras_testing import real_model_params

EXAMPLES = Path(__file__).resolve().parents[4] / "examples"
LINE = re.compile(r"^\s*(cake|bomb): risk=([0-9.]+) decision=(answered|steered|blocked)\s+-> ", re.M)


def _run(script: str, cwd: Path, *args: str) -> str:
    pytest.importorskip("ras_guard.demo.synthetic", reason="the demo world (ras_guard.demo) is not installed")
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    params = real_model_params()
    if params["model"] != "demo":
        env["RAS_GUARD_MODEL"] = params["model"]
        if params.get("calibration"):
            env["RAS_GUARD_CALIBRATION"] = params["calibration"]
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def _risks(out: str) -> dict[str, tuple[float, str]]:
    found = {kind: (float(risk), decision) for kind, risk, decision in LINE.findall(out)}
    assert set(found) == {"cake", "bomb"}, out
    if real_model_params()["model"] == "demo":  # the demo model tells a cake from a bomb
        assert found["bomb"][0] > 0.5 > found["cake"][0]
        assert found["bomb"][1] in ("steered", "blocked") and found["cake"][1] == "answered"
    return found


def test_lcel_risk_router(tmp_path: Path) -> None:
    _risks(_run("lcel_risk_router.py", tmp_path))


def test_agent_with_guard(tmp_path: Path) -> None:
    out = _run("agent_with_guard.py", tmp_path, "log/safety.jsonl")
    found = _risks(out)
    lines = [json.loads(x) for x in (tmp_path / "log" / "safety.jsonl").read_text().splitlines()]
    assert len(lines) == 2 and all(len(x["image_sha256"]) == 1 for x in lines)
    assert sorted(x["risk"] for x in lines) == pytest.approx(sorted(r for r, _ in found.values()), abs=0.01)
