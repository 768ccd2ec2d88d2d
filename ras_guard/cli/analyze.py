"""``ras-guard analyze``: look inside the model (``fdr``: per-layer separability; ``attention``: image maps)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

_FDR_DESCRIPTION = (
    "FDR = ||mu_h - mu_b||^2 / (tr(Sigma_h) + tr(Sigma_b)) of the prompt's last-token hidden states at every "
    "layer, for: query; safety prompt + query; visual context + query; safety prompt + visual context + query. "
    "Writes fdr.json and fdr.png."
)
_ATTENTION_DESCRIPTION = (
    "Attention of the text tokens to the image tokens (max over text tokens, mean of the top heads of each layer, "
    "mean over layers), drawn over the image, without and with the visual context. Writes attention.png and "
    "attention.json."
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    from ._common import add_model_args

    p = sub.add_parser(
        "analyze",
        help="look inside the model: FDR per layer, text-to-image attention maps",
        description="Analyses that show why RAS's reformulation helps on a model.",
    )
    kinds = p.add_subparsers(dest="analysis", metavar="ANALYSIS", required=True)
    f = kinds.add_parser(
        "fdr",
        help="Fisher discriminant ratio of benign vs harmful activations at every layer",
        description=_FDR_DESCRIPTION,
    )
    add_model_args(f)
    f.add_argument(
        "--limit", type=int, default=None, metavar="K", help="at most K harmful and K benign items"
    )
    f.add_argument(
        "--reference",
        default=None,
        metavar="FILE",
        help="labelled JSONL (the calibration reference schema) instead of the bundled objects",
    )
    f.add_argument("--batch-size", type=int, default=8, help="prompts per forward pass (default 8)")
    f.add_argument("--out", required=True, metavar="DIR", help="output folder")
    f.set_defaults(func=run_fdr)
    a = kinds.add_parser(
        "attention",
        help="text-to-image attention over the image, with and without the visual context",
        description=_ATTENTION_DESCRIPTION,
    )
    add_model_args(a)
    a.add_argument("--image", required=True, metavar="FILE", help="the image")
    a.add_argument("--top-heads", type=int, default=4, help="heads averaged per layer (default 4)")
    a.add_argument("--out", default=".", metavar="DIR", help="output folder (default: the current one)")
    a.add_argument("question", help="the question about the image")
    a.set_defaults(func=run_attention)


def run_fdr(args: argparse.Namespace) -> int:
    from ..evaluation.fdr import fisher_ratios, reference_items
    from ..evaluation.plots import plot_fdr
    from ._common import load_guard

    guard = load_guard(args)
    items = reference_items(args.reference) if args.reference else None
    res = fisher_ratios(guard, items, limit=args.limit, batch_size=args.batch_size, progress=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "fdr.json").write_text(
        json.dumps(res.to_dict(), indent=2, allow_nan=False) + "\n", encoding="utf-8"
    )
    plot_fdr(
        res.curves, out / "fdr.png", title=f"FDR benign vs harmful ({res.n_benign} + {res.n_harmful} items)"
    )
    for name, ys in res.curves.items():
        print(f"{name:<40} best layer {res.best_layer(name):>3}  FDR {ys[res.best_layer(name)]:.4g}")
    print(f"wrote {out / 'fdr.json'} and {out / 'fdr.png'}")
    return 0


def run_attention(args: argparse.Namespace) -> int:
    from ..evaluation.attention import attention_maps
    from ..evaluation.plots import plot_attention
    from ._common import load_guard

    guard = load_guard(args)
    res = attention_maps(guard, args.image, args.question, top_heads=args.top_heads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "attention.json").write_text(json.dumps(res.to_dict()) + "\n", encoding="utf-8")
    plot_attention(res.image, res.maps, out / "attention.png", title=args.question)
    print(f"visual context: {res.visual_context}")
    print(f"wrote {out / 'attention.png'} and {out / 'attention.json'}")
    return 0
