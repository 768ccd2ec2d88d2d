"""How well each layer separates benign from harmful requests, for the four query formulations of RAS.

For every request, the prompt is encoded with the model's chat template (the image kept) and one forward pass
with ``output_hidden_states=True`` gives the hidden state of the prompt's last token (the position that predicts
the first answer token) at every layer: ``hidden_states[0]`` is the embedding output, ``hidden_states[L]`` the
final-norm output, as transformers returns them. The four formulations of the text are:

- ``query``: the question alone;
- ``safety prompt + query``: the safety prompt, then the question;
- ``visual context + query``: the model's own visual context (caption) of the image, then the question;
- ``safety prompt + visual context + query``: the risk pass of RAS.

At each layer, with ``x_i`` the last-token state of item ``i``, the class means ``mu_h``, ``mu_b`` and the biased
(1/n) covariances ``Sigma_h``, ``Sigma_b`` of the harmful and benign items::

    FDR = ||mu_h - mu_b||^2 / (tr(Sigma_h) + tr(Sigma_b)),   tr(Sigma_c) = mean_i ||x_i - mu_c||^2 over class c

the multivariate form of Fisher's ratio (between-class over within-class scatter, in float64). Higher means the
two classes lie further apart relative to their spread.

Example:
    >>> import numpy as np
    >>> fisher_ratio(np.array([[2.0, 0.0], [4.0, 0.0]]), np.array([[-2.0, 0.0], [-4.0, 0.0]]))
    9.0
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from ..backends.hf import require_hf
from ..errors import EvaluationError
from ..reformulate import reformulated_text
from .suites import EvalItem

__all__ = [
    "FORMULATIONS",
    "FDRResult",
    "fdr_items",
    "fisher_ratio",
    "fisher_ratios",
    "last_token_states",
    "reference_items",
]

FORMULATIONS = (
    "query",
    "safety prompt + query",
    "visual context + query",
    "safety prompt + visual context + query",
)


@dataclass(frozen=True)
class FDRResult:
    """FDR per layer for each formulation.

    Attributes:
        curves: ``formulation -> [FDR at layer 0 (embeddings), ..., layer L (final norm)]``.
        n_harmful: Harmful items used.
        n_benign: Benign items used.
        model: Model name.
        formula: The formula, spelled out.
    """

    curves: dict[str, list[float]]
    n_harmful: int
    n_benign: int
    model: str = ""
    formula: str = (
        "||mu_h - mu_b||^2 / (tr(Sigma_h) + tr(Sigma_b)), biased (1/n) covariances, last prompt token"
    )

    def best_layer(self, formulation: str) -> int:
        """Layer with the highest FDR for one formulation."""
        ys = np.asarray(self.curves[formulation], dtype=float)
        return int(np.nanargmax(ys)) if np.isfinite(ys).any() else 0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy (NaN as None), with the best layer of each formulation."""
        curves = {k: [float(v) if np.isfinite(v) else None for v in ys] for k, ys in self.curves.items()}
        return {**asdict(self), "curves": curves, "best_layer": {k: self.best_layer(k) for k in self.curves}}


def fisher_ratio(harmful: np.ndarray, benign: np.ndarray) -> float:
    """``||mu_h - mu_b||^2 / (tr(Sigma_h) + tr(Sigma_b))`` of two ``[n, d]`` samples (NaN when both spreads are 0).

    Example:
        >>> fisher_ratio(np.ones((2, 3)), np.zeros((2, 3)))
        nan
    """
    h, b = np.asarray(harmful, dtype=np.float64), np.asarray(benign, dtype=np.float64)
    if h.ndim != 2 or b.ndim != 2 or len(h) == 0 or len(b) == 0:
        raise EvaluationError(f"fisher_ratio needs two non-empty [n, d] arrays, got {h.shape} and {b.shape}.")
    mu_h, mu_b = h.mean(axis=0), b.mean(axis=0)
    within = ((h - mu_h) ** 2).sum(axis=1).mean() + ((b - mu_b) ** 2).sum(axis=1).mean()
    between = float(((mu_h - mu_b) ** 2).sum())
    return between / within if within > 0 else float("nan")


def fdr_items(limit: int | None = None) -> list[EvalItem]:
    """Default items: dangerous and benign objects (held-out drawings), same make/use questions, ``limit`` each
    (48 harmful and 56 benign without a limit).

    Example:
        >>> items = fdr_items(2)  # doctest: +SKIP
        >>> [i.harmful for i in items]  # doctest: +SKIP
        [True, True, False, False]
    """
    from .suites import OBJECT_QUESTIONS, _objects

    return _objects("fdr", True, OBJECT_QUESTIONS, limit, 4) + _objects(
        "fdr", False, OBJECT_QUESTIONS, limit, 2
    )


def last_token_states(
    guard: Any, conversations: Sequence[list[dict[str, Any]]], *, batch_size: int = 8
) -> np.ndarray:
    """Hidden states of each prompt's last token at every layer: ``[n, L + 1, H]`` float32.

    Example:
        >>> last_token_states(guard, [msgs]).shape  # doctest: +SKIP
        (1, 33, 4096)
    """
    backend, parts = require_hf(guard.backend, "the FDR analysis"), []
    for k in range(0, len(conversations), batch_size):
        inputs = backend.encode([list(c) for c in conversations[k : k + batch_size]])  # left-padded
        with torch.inference_mode():
            try:
                out = backend.model(**inputs, output_hidden_states=True, logits_to_keep=1)
            except TypeError:  # models without logits_to_keep
                out = backend.model(**inputs, output_hidden_states=True)
        if not getattr(out, "hidden_states", None):
            raise EvaluationError(
                f"{backend.name} returned no hidden states; FDR needs output_hidden_states."
            )
        parts.append(torch.stack([h[:, -1, :].float() for h in out.hidden_states], dim=1).cpu().numpy())
    return np.concatenate(parts, axis=0)


def _formulations(
    guard: Any, items: Sequence[EvalItem], batch_size: int
) -> dict[str, list[list[dict[str, Any]]]]:
    multimodal, cfg = guard.backend.is_multimodal, guard.config
    base = [i.messages(multimodal=multimodal) for i in items]
    contexts: list[str] = []
    for k in range(0, len(base), batch_size):
        contexts += guard.visual_contexts([guard.normalize(m) for m in base[k : k + batch_size]])[0]
    texts = {
        FORMULATIONS[0]: [i.text(multimodal=multimodal) for i in items],
        FORMULATIONS[1]: [reformulated_text(i.text(multimodal=multimodal), "", cfg) for i in items],
        FORMULATIONS[2]: [
            " ".join(p for p in (vc.strip(), i.text(multimodal=multimodal)) if p)
            for i, vc in zip(items, contexts, strict=True)
        ],
        FORMULATIONS[3]: [
            reformulated_text(i.text(multimodal=multimodal), vc, cfg) for i, vc in zip(items, contexts, strict=True)
        ],
    }
    return {
        name: [guard.normalize(m).with_last_user_text(t) for m, t in zip(base, ts, strict=True)]
        for name, ts in texts.items()
    }


def fisher_ratios(
    guard: Any,
    items: Sequence[EvalItem] | None = None,
    *,
    limit: int | None = None,
    batch_size: int = 8,
    progress: bool = False,
) -> FDRResult:
    """FDR between the harmful and benign ``items`` at every layer, for each of :data:`FORMULATIONS`.

    Args:
        guard: A :class:`~ras_guard.RASGuard` (no calibration needed).
        items: Labelled items (default: :func:`fdr_items`); both classes are needed.
        limit: With the default items, how many of each class.
        batch_size: Prompts per forward pass.
        progress: Show a tqdm progress bar.

    Example:
        >>> res = fisher_ratios(RASGuard.from_pretrained("demo"), limit=8)  # doctest: +SKIP
        >>> res.best_layer("safety prompt + visual context + query")  # doctest: +SKIP
    """
    from tqdm import tqdm

    items = list(items) if items is not None else fdr_items(limit)
    labels = np.array([i.harmful for i in items])
    if labels.all() or not labels.any():
        raise EvaluationError("FDR needs both harmful and benign items.")
    curves: dict[str, list[float]] = {}
    forms = _formulations(guard, items, batch_size)
    for name in tqdm(FORMULATIONS, desc="FDR", unit="formulation", disable=not progress):
        states = last_token_states(guard, forms[name], batch_size=batch_size)
        curves[name] = [fisher_ratio(states[labels, k], states[~labels, k]) for k in range(states.shape[1])]
    return FDRResult(curves, int(labels.sum()), int((~labels).sum()), guard.model_name)


def reference_items(path: str) -> list[EvalItem]:
    """Items from a labelled JSONL file in the calibration reference schema (see :mod:`ras_guard.data`).

    Example:
        >>> items = reference_items("my_reference.jsonl")  # doctest: +SKIP
    """
    from ..data import reference_queries

    return [
        EvalItem("reference", f"reference-{i:03d}", r.question, r.harmful, r.image, r.text_question)
        for i, r in enumerate(reference_queries(path))
    ]
