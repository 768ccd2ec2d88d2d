"""Evaluation and analysis: does RAS work on this model?

- :func:`run_evaluation`: attack success rate, over-refusal, utility and speed of the unguarded model, the model
  with a safety prompt, and the full guard, on the bundled suites (:mod:`.suites`), the public benchmarks and
  suite files (:mod:`.public`: XSTest, SafeBench with FigStep images, MM-SafetyBench, JSONL); writes
  ``results.json``, ``report.md`` (with per-category and contrast-pair results, :mod:`.breakdown`) and plots.
- Judges: the rule judge :mod:`ras_guard.judge` (default), ETA's list (:mod:`.peer_judges`), a local model
  (:class:`.model_judge.ModelJudge`, ``--judge model:PATH``).
- :func:`fisher_ratios`: per-layer Fisher discriminant ratio of benign vs harmful activations for the four query
  formulations of RAS (:mod:`.fdr`).
- :func:`attention_maps`: where the model looks in the image, with and without the visual context
  (:mod:`.attention`).

Example:
    >>> from ras_guard import RASGuard
    >>> from ras_guard.evaluation import run_evaluation
    >>> run = run_evaluation(RASGuard.from_pretrained("demo"), "xstest", limit=4)  # doctest: +SKIP
"""

from __future__ import annotations

from .attention import AttentionResult, attention_maps
from .fdr import FORMULATIONS, FDRResult, fisher_ratio, fisher_ratios
from .judging import default_judge, load_judge
from .model_judge import ModelJudge
from .public import load_suite_file
from .report import MODES, EvalRun, ItemResult
from .runner import run_evaluation, write_outputs
from .suites import SUITES, EvalItem, Suite, get_suite, resolve_suites

__all__ = [
    "FORMULATIONS",
    "MODES",
    "SUITES",
    "AttentionResult",
    "EvalItem",
    "EvalRun",
    "FDRResult",
    "ItemResult",
    "ModelJudge",
    "Suite",
    "attention_maps",
    "default_judge",
    "fisher_ratio",
    "fisher_ratios",
    "get_suite",
    "load_judge",
    "load_suite_file",
    "resolve_suites",
    "run_evaluation",
    "write_outputs",
]
