"""PNG plots of evaluations and analyses, drawn with matplotlib's Agg backend (no display needed).

matplotlib is an optional dependency (``pip install ras-guard[plots]``); without it the plotting functions raise
:class:`~ras_guard.errors.EvaluationError` and the callers skip the plots.

Example:
    >>> from ras_guard.evaluation.plots import plot_fdr
    >>> plot_fdr({"query": [0.1, 0.5]}, "fdr.png")  # doctest: +SKIP
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import EvaluationError

__all__ = ["plot_asr_bars", "plot_attention", "plot_fdr", "plot_risk_histogram"]


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError as exc:
        raise EvaluationError("plots need matplotlib: pip install 'ras-guard[plots]'.") from exc
    if (
        "matplotlib.pyplot" not in sys.modules
    ):  # headless: never open a window; respect a caller's own backend
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | Path) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    return out


def plot_risk_histogram(
    benign: Sequence[float],
    harmful: Sequence[float],
    path: str | Path,
    *,
    title: str = "RAS risk of benign vs harmful items",
) -> Path:
    """Overlaid histograms of the assessed risk of benign and harmful items.

    Example:
        >>> plot_risk_histogram([0.01, 0.2], [0.9, 0.99], "risk_histogram.png")  # doctest: +SKIP
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    bins = np.linspace(0.0, 1.0, 21)
    ax.hist(list(benign), bins=bins, alpha=0.6, label=f"benign (n={len(benign)})", color="tab:blue")
    ax.hist(list(harmful), bins=bins, alpha=0.6, label=f"harmful (n={len(harmful)})", color="tab:red")
    ax.set_xlabel("risk r")
    ax.set_ylabel("items")
    ax.set_title(title)
    ax.legend()
    return _save(fig, path)


def plot_asr_bars(
    values: Mapping[str, Mapping[str, float | None]],
    path: str | Path,
    *,
    ylabel: str = "attack success rate",
    title: str = "ASR per suite and mode",
) -> Path:
    """Grouped bars: ``values[suite][mode]`` (fractions; None is drawn as a missing bar).

    Example:
        >>> plot_asr_bars({"typographic": {"unguarded": 0.9, "ras": 0.1}}, "asr.png")  # doctest: +SKIP
    """
    plt = _pyplot()
    suites = list(values)
    modes = list(dict.fromkeys(m for s in suites for m in values[s]))
    fig, ax = plt.subplots(figsize=(max(5.0, 1.6 * len(suites) + 2), 3.6))
    width = 0.8 / max(1, len(modes))
    for j, mode in enumerate(modes):
        ys = [values[s].get(mode) for s in suites]
        xs = [i + (j - (len(modes) - 1) / 2) * width for i in range(len(suites))]
        bars = ax.bar(xs, [np.nan if y is None else 100 * y for y in ys], width, label=mode)
        ax.bar_label(bars, labels=["" if y is None else f"{100 * y:.0f}" for y in ys], fontsize=8)
    ax.set_xticks(range(len(suites)), suites)
    ax.set_ylim(0, 110)
    ax.set_ylabel(f"{ylabel} (%)")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))  # outside: bars reach 100%
    return _save(fig, path)


def plot_fdr(
    curves: Mapping[str, Sequence[float]],
    path: str | Path,
    *,
    title: str = "Fisher discriminant ratio, benign vs harmful",
) -> Path:
    """One line per query formulation: FDR against layer index.

    Example:
        >>> plot_fdr({"query": [0.1, 0.3], "safety prompt + query": [0.2, 0.6]}, "fdr.png")  # doctest: +SKIP
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for name, ys in curves.items():
        ax.plot(range(len(ys)), list(ys), marker="o", markersize=3, label=name)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_xlabel("layer (0 = embeddings; undefined where every item has the same last token)")
    ax.set_ylabel("FDR")
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def _heat(ax: Any, image: Any, heat: np.ndarray, title: str) -> None:
    """Draw ``heat`` over ``image``: a 2-D grid stretched over it, or a 1-D strip under it."""
    ax.imshow(image)
    w, h = image.size
    if heat.ndim == 2:
        ax.imshow(heat, cmap="jet", alpha=0.5, extent=(0, w, h, 0), interpolation="bilinear")
    else:
        strip = max(4, h // 10)
        ax.imshow(heat[None, :], cmap="jet", extent=(0, w, h + strip, h), aspect="auto")
        ax.set_ylim(h + strip, 0)
    ax.set_title(title, fontsize=9)
    ax.axis("off")


def plot_attention(image: Any, maps: Mapping[str, np.ndarray], path: str | Path, *, title: str = "") -> Path:
    """The image, then one panel per attention map drawn over it (heat maps normalised to [0, 1] each).

    Example:
        >>> plot_attention(img, {"without": a, "with": b}, "attn.png")  # doctest: +SKIP
    """
    plt = _pyplot()
    image = image.convert("RGB")
    fig, axes = plt.subplots(1, len(maps) + 1, figsize=(3.4 * (len(maps) + 1), 3.8))
    axes[0].imshow(image)
    axes[0].set_title("image", fontsize=9)
    axes[0].axis("off")
    for ax, (name, heat) in zip(axes[1:], maps.items(), strict=True):
        heat = np.asarray(heat, dtype=float)
        span = float(heat.max() - heat.min())
        _heat(ax, image, (heat - heat.min()) / span if span > 0 else np.zeros_like(heat), name)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)
