"""Evaluation building blocks without a model: suites, judges, metrics, the FDR formula, plots."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest

from ras_guard.errors import EvaluationError
from ras_guard.evaluation import SUITES, get_suite, load_judge, resolve_suites
from ras_guard.evaluation.fdr import FDRResult, fisher_ratio
from ras_guard.evaluation.report import EvalRun, ItemResult, render_markdown, summarize
from ras_guard.evaluation.runner import answer_contains
from ras_guard.evaluation.suites import FIGSTEP_PROMPT


def _rec(suite: str, mode: str, harmful: bool, refused: bool, **kw: Any) -> ItemResult:
    base: dict[str, Any] = {"question": "q", "prompt": "q", "answer": "a", "risk": 0.0, "output_tokens": 4}
    fields = {**base, "latency_s": 0.2, "batch_rows": 2, **kw}
    return ItemResult(suite, f"{suite}-{len(kw)}", mode, harmful, refused=refused, **fields)


def test_suites_are_registered_and_resolved() -> None:
    own = ["typographic", "typographic_word", "harmful_object", "xstest_mini", "benign_image"]
    assert list(SUITES) == [*own, "xstest", "safebench", "safebench-tiny"]
    assert [s.name for s in resolve_suites("all")] == [*own, "xstest", "safebench"]  # tiny is a subset
    assert [s.name for s in resolve_suites(["xstest", "xstest", "typographic"])] == ["xstest", "typographic"]
    assert get_suite("typographic").harmful and get_suite("xstest_mini").harmful is False
    assert get_suite("xstest").harmful is None and get_suite("safebench").harmful
    with pytest.raises(EvaluationError, match="unknown suite 'nope'"):
        resolve_suites("nope")
    with pytest.raises(EvaluationError, match="limit"):
        get_suite("xstest").items(limit=0)


def test_text_suites_are_well_formed() -> None:
    typo = get_suite("typographic").items()
    assert len(typo) >= 20 and all(i.harmful and i.question == FIGSTEP_PROMPT for i in typo)
    assert typo[0].image is not None and typo[0].image.size == (336, 336)
    assert typo[0].text_question.startswith("Steps to") and "numbered 1, 2, and 3" in typo[0].text_question
    xs = get_suite("xstest_mini").items()
    assert len(xs) >= 30 and not any(i.harmful or i.image is not None for i in xs)
    assert len({i.item_id for i in typo + xs}) == len(typo) + len(xs)
    msg = typo[0].messages(prefix="Be safe.")[0]["content"]
    assert msg[0]["type"] == "image" and msg[1]["text"] == f"Be safe. {FIGSTEP_PROMPT}"
    assert typo[0].messages(multimodal=False)[0]["content"] == [
        {"type": "text", "text": typo[0].text_question}
    ]


def test_typographic_suite_writes_each_key_phrase_as_a_heading(monkeypatch, tmp_path) -> None:
    from ras_guard.demo import synthetic
    from ras_guard.evaluation import suites
    from ras_guard.typography import render_figstep

    items = get_suite("typographic").items()
    rows = [json.loads(line) for line in suites._data_file("eval_typographic.jsonl").read_text().splitlines()]
    assert len(items) == len(rows) == 24
    kinds = synthetic.OBJECT_KINDS
    assert all(kinds[r["keyword"]].dangerous and kinds[r["keyword"]].category == r["category"] for r in rows)
    assert len({r["keyword"] for r in rows[:6]}) == 6  # the first items of a --limit run mix the key phrases
    expected = render_figstep(rows[5]["instruction"], heading=rows[5]["keyword"], size=336,
                              seed=synthetic.TEST_SEEDS[5])
    assert items[5].image.tobytes() == expected.tobytes()  # held-out seeds, as the other image suites
    bad = tmp_path / "eval_typographic.jsonl"
    bad.write_text(json.dumps({"instruction": "Steps to x."}) + "\n")
    monkeypatch.setattr(suites, "_data_file", lambda name: bad)
    with pytest.raises(EvaluationError, match="eval_typographic.jsonl:1: needs a non-empty string field 'keyword'"):
        get_suite("typographic").items()


def test_object_suites_use_held_out_drawings_and_expected_names() -> None:
    synthetic = pytest.importorskip("ras_guard.demo.synthetic")
    harm = get_suite("harmful_object").items(limit=4) + get_suite("typographic_word").items(limit=2)
    assert all(
        i.harmful and i.image is not None and synthetic.OBJECT_KINDS[i.category].dangerous for i in harm
    )
    benign = get_suite("benign_image").items(limit=4)
    assert not any(i.harmful for i in benign)
    assert [i.expected for i in benign[:2]] == [benign[0].category, None]  # "what is" then "how can I make"
    assert all(int(i.item_id.split("-")[2]) in synthetic.TEST_SEEDS for i in harm + benign)


def test_answer_contains_matches_words_case_insensitively() -> None:
    assert answer_contains("It is a Cake .", "cake") and answer_contains("two cakes", "cake")
    assert answer_contains("the boxes", "box")
    assert not answer_contains("cupcake", "cake") and not answer_contains("", "cake")


def test_load_judge_accepts_functions_classes_and_reports_errors() -> None:
    assert load_judge("builtins:bool")("x") is True
    assert load_judge("os.path:isdir")("/") is True
    for bad, match in [
        ("nocolon", "must look like"),
        ("no_such_mod_x:f", "cannot import"),
        ("os:no_such_attr", "no attribute"),
        ("math:pi", "not callable"),
    ]:
        with pytest.raises(EvaluationError, match=match):
            load_judge(bad)


def test_keyword_judge_is_the_default() -> None:
    judge_mod = pytest.importorskip("ras_guard.judge")
    from ras_guard.evaluation import default_judge

    judge = default_judge()
    assert judge("I am sorry, but I cannot help with that.") is True
    assert judge is judge_mod.is_refusal
    assert load_judge("ras_guard.judge:KeywordJudge")("I am sorry, but I cannot help with that.")


def test_summarize_metrics() -> None:
    recs = [
        _rec("s", "ras", True, True, latency_s=0.4, output_tokens=2),
        _rec("s", "ras", True, False, latency_s=0.4, output_tokens=6),
    ]
    m = summarize(recs, harmful=True)
    assert m["n"] == 2 and m["refusal_rate"] == 0.5 and m["asr"] == 0.5
    assert math.isclose(m["tokens_per_s"], 8 / 0.4) and math.isclose(m["mean_latency_s"], 0.4)
    assert "utility" not in m and "asr" not in summarize(recs, harmful=False)
    scored = [
        _rec("b", "ras", False, False, expected="cake", correct=True),
        _rec("b", "ras", False, False),
        _rec("b", "ras", False, True, expected="cup", correct=False),
    ]
    m = summarize(scored, harmful=False)
    assert m["utility"] == 0.5 and m["n_utility"] == 2 and math.isclose(m["refusal_rate"], 1 / 3)


def test_results_dict_and_markdown() -> None:
    run = EvalRun(
        {"model": "m", "settings": {"modes": ["unguarded", "ras"], "max_new_tokens": 8}},
        resolve_suites("typographic,xstest"),
        [
            _rec("typographic", "unguarded", True, False),
            _rec("typographic", "ras", True, True, risk=0.9),
            _rec("xstest", "unguarded", False, False),
            _rec("xstest", "ras", False, True, risk=0.6),
        ],
    )
    d = json.loads(json.dumps(run.to_dict(), allow_nan=False))
    assert d["complete"] is False and set(d["suites"]) == {"typographic", "xstest"}
    assert d["suites"]["typographic"]["modes"]["ras"]["asr"] == 0.0
    assert d["suites"]["xstest"]["modes"]["ras"]["refusal_rate"] == 1.0
    assert d["overall"]["unguarded"]["asr"] == 1.0 and d["overall"]["ras"]["over_refusal"] == 1.0
    md = render_markdown(run, ["asr_by_mode.png"])
    assert "Incomplete run" in md and "| ras | 1 | 0.0% |" in md and "![asr_by_mode](asr_by_mode.png)" in md


def test_fisher_ratio_formula() -> None:
    rng = np.random.default_rng(0)
    h, b = rng.normal(1.0, 1.0, (5, 3)), rng.normal(0.0, 2.0, (7, 3))
    expected = np.sum((h.mean(0) - b.mean(0)) ** 2) / (
        np.trace(np.cov(h.T, bias=True)) + np.trace(np.cov(b.T, bias=True))
    )
    assert math.isclose(fisher_ratio(h, b), expected, rel_tol=1e-12)
    assert math.isnan(fisher_ratio(np.zeros((2, 3)), np.zeros((2, 3))))
    with pytest.raises(EvaluationError):
        fisher_ratio(np.zeros((0, 3)), np.zeros((2, 3)))
    res = FDRResult({"query": [float("nan"), 0.5, 2.0]}, 2, 2)
    assert res.best_layer("query") == 2 and res.to_dict()["curves"]["query"][0] is None


def test_plots_write_pngs(tmp_path) -> None:
    pytest.importorskip("matplotlib")
    from PIL import Image

    from ras_guard.evaluation.plots import plot_asr_bars, plot_attention, plot_fdr, plot_risk_histogram

    paths = [
        plot_risk_histogram([0.1, 0.2], [0.9], tmp_path / "h.png"),
        plot_asr_bars({"typographic": {"unguarded": 1.0, "ras": None}}, tmp_path / "a.png"),
        plot_fdr({"query": [0.0, 1.0]}, tmp_path / "f.png"),
        plot_attention(
            Image.new("RGB", (20, 30)), {"2d": np.eye(3), "1d": np.arange(5.0)}, tmp_path / "m.png"
        ),
    ]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in paths)
