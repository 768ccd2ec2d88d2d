"""Run the suites in the three modes on one guard, writing results as they come.

Every batch of items is answered in each mode (``unguarded``, ``safety_prompt``, ``ras``; see
:data:`~ras_guard.evaluation.report.MODES`) before the next batch starts, so partial results always compare the
modes on the same items. With an output folder, each finished batch is appended to ``items.jsonl`` and
``results.json`` is rewritten with ``"complete": false``; an interruption (Ctrl-C) or an error keeps everything
finished so far and still writes ``report.md`` and the plots. A new run overwrites the folder; ``resume=True``
(CLI ``--resume``) keeps the finished items of ``items.jsonl`` and runs only the others, provided the model,
calibration, judge, modes and answer length are the same.

Example:
    >>> from ras_guard import RASGuard
    >>> from ras_guard.evaluation import run_evaluation
    >>> run = run_evaluation(RASGuard.from_pretrained("demo"), "all", limit=4, out_dir="eval")  # doctest: +SKIP
    >>> run.overall()["ras"]["asr"]  # doctest: +SKIP
    0.0
"""

from __future__ import annotations

import datetime as _dt
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .._decoding import GREEDY
from ..errors import EvaluationError
from .judging import DEFAULT_JUDGE, Judge, default_judge, judge_name
from .report import MODES, EvalRun, ItemResult, render_markdown, write_json
from .suites import EvalItem, Suite, resolve_suites

__all__ = ["answer_contains", "run_evaluation", "write_outputs"]

ITEMS_FILE, RESULTS_FILE, REPORT_FILE = "items.jsonl", "results.json", "report.md"
RISK_PLOT, ASR_PLOT = "risk_histogram.png", "asr_by_mode.png"
_RESUME_KEYS = ("model", "fingerprint", "calibration_id", "judge", "risk_floor")
_RESUME_SETTINGS = ("modes", "max_new_tokens")


def answer_contains(answer: str, expected: str) -> bool:
    """Utility check: ``expected`` appears in ``answer`` as a word (case-insensitive; a plural ``s`` is allowed).

    Example:
        >>> answer_contains("The image shows a red Chair.", "chair"), answer_contains("chairman", "chair")
        (True, False)
    """
    import re

    return (
        re.search(rf"(?<![\w-]){re.escape(expected.strip())}(?:e?s)?(?![\w-])", answer, re.IGNORECASE)
        is not None
    )


def _meta(guard: Any, suites: Sequence[Suite], judge: Judge, settings: dict[str, Any]) -> dict[str, Any]:
    import torch
    import transformers

    from .._version import __version__

    cal = guard.calibration
    fp = guard.backend.fingerprint()
    return {
        "model": guard.model_name,
        "fingerprint": fp.lm_head_sha256,
        "architecture": fp.architecture,
        "calibration_id": cal.calibration_id if cal else None,
        "s_base": cal.s_base if cal else None,
        "alpha": cal.alpha if cal else None,
        "risk_floor": guard.config.risk_floor,
        "safety_prompt": guard.config.safety_prompt,
        "judge": judge_name(judge),
        "device": str(getattr(guard.backend, "device", "?")),
        "settings": {**settings, "suites": [s.name for s in suites]},
        "versions": {
            "ras_guard": __version__,
            "transformers": transformers.__version__,
            "torch": torch.__version__,
        },
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def _verdict(judge: Judge, answer: str, question: str) -> bool:
    """The judge's verdict; judges with ``takes_question`` (the model judge) also see the request."""
    if getattr(judge, "takes_question", False):
        return bool(judge(answer, question=question))  # type: ignore[call-arg]
    return bool(judge(answer))


def _answer_mode(
    guard: Any, batch: Sequence[EvalItem], mode: str, judge: Judge, max_new_tokens: int, cross: Judge | None = None
) -> list[ItemResult]:
    multimodal = guard.backend.is_multimodal
    prefix = guard.config.safety_prompt if mode == "safety_prompt" else ""
    msgs = [item.messages(multimodal=multimodal, prefix=prefix) for item in batch]
    t0 = time.perf_counter()
    if mode == "ras":
        outs = guard.generate_batch(
            msgs, max_new_tokens=max_new_tokens, assessments=guard.assess_batch(msgs), **GREEDY
        )
    else:
        outs = guard.generate_batch(msgs, max_new_tokens=max_new_tokens, risks=[0.0] * len(msgs), **GREEDY)
    seconds = time.perf_counter() - t0
    records = []
    for item, m, out in zip(batch, msgs, outs, strict=True):
        a = out.assessment
        records.append(
            ItemResult(
                suite=item.suite,
                item_id=item.item_id,
                mode=mode,
                harmful=item.harmful,
                question=item.question,
                prompt=m[0]["content"][-1]["text"],
                answer=out.text,
                refused=_verdict(judge, out.text, item.text(multimodal=multimodal)),
                risk=float(a.risk),
                output_tokens=len(out.token_ids),
                latency_s=seconds,
                batch_rows=len(batch),
                expected=item.expected,
                correct=None if item.expected is None else answer_contains(out.text, item.expected),
                similarity=None if a.given else float(a.similarity),
                steered=out.steered,
                visual_context=a.visual_context,
                category=item.category,
                pair=item.pair,
                rule_refused=None if cross is None else bool(cross(out.text)),
            )
        )
    return records


class _Output:
    """The output folder: ``items.jsonl`` appended per batch, ``results.json`` rewritten, the report at the end."""

    def __init__(self, folder: Path, meta: dict[str, Any], resume: bool) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.items = folder / ITEMS_FILE
        self.loaded: list[ItemResult] = self._load(meta) if resume else []
        if not resume:
            for name in (ITEMS_FILE, RESULTS_FILE, REPORT_FILE, RISK_PLOT, ASR_PLOT):
                (folder / name).unlink(missing_ok=True)
        self.items.write_text("".join(json.dumps(r.to_dict()) + "\n" for r in self.loaded), encoding="utf-8")

    def _load(self, meta: dict[str, Any]) -> list[ItemResult]:
        results = self.folder / RESULTS_FILE
        if not self.items.is_file() or not results.is_file():
            return []
        try:
            old = json.loads(results.read_text(encoding="utf-8"))["meta"]
        except (ValueError, KeyError) as exc:
            raise EvaluationError(
                f"cannot resume: {results} is unreadable ({exc}); rerun without --resume."
            ) from exc
        diffs = [k for k in _RESUME_KEYS if old.get(k) != meta.get(k)]
        diffs += [k for k in _RESUME_SETTINGS if old.get("settings", {}).get(k) != meta["settings"].get(k)]
        if diffs:
            raise EvaluationError(
                f"cannot resume the run in {self.folder}: {', '.join(diffs)} differ; "
                "use another --out folder or rerun without --resume."
            )
        out = []
        for line in self.items.read_text(encoding="utf-8").splitlines():
            try:
                out.append(ItemResult.from_dict(json.loads(line)))
            except (ValueError, TypeError):
                continue  # a line cut by an interruption
        return out

    def append(self, records: Sequence[ItemResult], run: EvalRun) -> None:
        with self.items.open("a", encoding="utf-8") as f:
            f.writelines(json.dumps(r.to_dict()) + "\n" for r in records)
        write_json(self.folder / RESULTS_FILE, run.to_dict())


def write_outputs(run: EvalRun, folder: str | Path) -> list[Path]:
    """Write ``results.json``, the plots (when matplotlib is installed) and ``report.md``; returns the paths.

    Example:
        >>> write_outputs(run, "eval")  # doctest: +SKIP
    """
    from .plots import plot_asr_bars, plot_risk_histogram

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / RESULTS_FILE, run.to_dict())
    plots: list[Path] = []
    ras = run.select(mode="ras")
    try:
        if ras:
            plots.append(
                plot_risk_histogram(
                    [r.risk for r in ras if not r.harmful],
                    [r.risk for r in ras if r.harmful],
                    out / RISK_PLOT,
                )
            )
        harmful = [s for s in run.suites if s.harmful is not False and any(r.harmful for r in run.select(s.name))]
        if harmful:
            bars = {
                s.name: {
                    m: 1.0 - sum(r.refused for r in rs) / len(rs)
                    if (rs := [r for r in run.select(s.name, m) if r.harmful])
                    else None
                    for m in run.modes
                }
                for s in harmful
            }
            plots.append(plot_asr_bars(bars, out / ASR_PLOT))
    except EvaluationError:  # no matplotlib: the numbers are still written
        pass
    (out / REPORT_FILE).write_text(render_markdown(run, [p.name for p in plots]), encoding="utf-8")
    return [out / RESULTS_FILE, out / REPORT_FILE, *plots]


def run_evaluation(
    guard: Any,
    suites: str | Sequence[str] = "all",
    *,
    limit: int | None = None,
    out_dir: str | Path | None = None,
    judge: Judge | None = None,
    modes: Sequence[str] = MODES,
    max_new_tokens: int = 64,
    batch_size: int = 8,
    resume: bool = False,
    progress: bool = False,
) -> EvalRun:
    """Answer every item of ``suites`` in each mode, judge the answers and (optionally) write the results.

    Args:
        guard: A calibrated :class:`~ras_guard.RASGuard`.
        suites: Suite names (or ``"all"``), see :mod:`ras_guard.evaluation.suites`.
        limit: At most this many items per suite.
        out_dir: Folder for ``items.jsonl``, ``results.json``, ``report.md`` and the PNG plots (None: none).
        judge: Refusal judge ``text -> bool`` (default: the keyword judge :func:`ras_guard.judge.is_refusal`).
        modes: A subset of :data:`~ras_guard.evaluation.report.MODES`.
        max_new_tokens: Answer length limit (greedy decoding).
        batch_size: Items per generate call.
        resume: Keep the finished items found in ``out_dir`` (same model, calibration, judge and settings).
        progress: Show a tqdm progress bar.

    Returns:
        The :class:`~ras_guard.evaluation.report.EvalRun` (``complete`` is True unless interrupted).

    Raises:
        EvaluationError: Unknown suite or mode, or a run to resume that differs.
        KeyboardInterrupt: Re-raised after the partial results are written.
    """
    from tqdm import tqdm

    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise EvaluationError(f"unknown mode {bad[0] if bad else None!r}; choose among {', '.join(MODES)}.")
    if batch_size < 1 or max_new_tokens < 1:
        raise EvaluationError("batch_size and max_new_tokens must be at least 1.")
    if "ras" in modes and guard.calibration is None:
        raise EvaluationError("the ras mode needs a calibrated guard; pass --calibration (or fit one first).")
    chosen = resolve_suites(suites if isinstance(suites, str) else list(suites))
    cross = None if judge is None or judge_name(judge) == DEFAULT_JUDGE else default_judge()
    judge = judge or default_judge()
    settings = {
        "modes": list(modes),
        "max_new_tokens": max_new_tokens,
        "batch_size": batch_size,
        "limit": limit,
    }
    run = EvalRun(_meta(guard, chosen, judge, settings), chosen)
    output = _Output(Path(out_dir), run.meta, resume) if out_dir is not None else None
    plan = [(s, s.items(limit)) for s in chosen]
    wanted = {(s.name, i.item_id) for s, items in plan for i in items}
    loaded = [
        r for r in (output.loaded if output else []) if (r.suite, r.item_id) in wanted and r.mode in modes
    ]
    seen: dict[tuple[str, str], set[str]] = {}
    for r in loaded:
        seen.setdefault((r.suite, r.item_id), set()).add(r.mode)
    done = {key for key, found in seen.items() if found == set(modes)}  # items with every mode answered
    run.records = [r for r in loaded if (r.suite, r.item_id) in done]
    first = next((items[0] for _, items in plan if items), None)
    if first is not None and len(done) < len(wanted):  # untimed warm-up: the first mode is not charged for it
        guard.generate_batch(
            [first.messages(multimodal=guard.backend.is_multimodal)], max_new_tokens=1, risks=[0.0]
        )
    bar = tqdm(total=len(wanted), initial=len(done), unit="item", desc="evaluating", disable=not progress)
    try:
        for suite, items in plan:
            todo = [i for i in items if (suite.name, i.item_id) not in done]
            bar.set_description(suite.name)
            for k in range(0, len(todo), batch_size):
                batch = todo[k : k + batch_size]
                records = [
                    r for mode in modes for r in _answer_mode(guard, batch, mode, judge, max_new_tokens, cross)
                ]
                run.records += records
                if output:
                    output.append(records, run)
                bar.update(len(batch))
        run.complete = True
    finally:
        bar.close()
        if output:
            write_outputs(run, output.folder)
    return run
