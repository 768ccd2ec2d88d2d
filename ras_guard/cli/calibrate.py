"""``ras-guard calibrate``: fit prototypes and S_base for a model and save them."""

from __future__ import annotations

import argparse

POOR_AUROC = 0.75
"""Below this AUROC of S on the reference set, ``ras-guard calibrate`` warns."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    from ._common import add_model_args

    p = sub.add_parser("calibrate", help="fit a calibration (prototypes, S_base, alpha) for a model",
                       description="Fit RAS's unsafe prototypes and S_base on the bundled data or your own files.")
    add_model_args(p, calibration=False)
    p.add_argument("--out", required=True, help="folder to write the calibration into")
    p.add_argument("--unsafe-text", default=None, metavar="FILE",
                   help='JSONL of harmful text queries, {"text": ...} per line (default: bundled 70)')
    p.add_argument("--reference", default=None, metavar="FILE",
                   help='JSONL reference set, {"question", "label", "image"|"image_text"} per line (default: the '
                   "bundled set for real models; the demo world's drawings for the demo model)")
    p.add_argument("--batch-size", type=int, default=8, help="queries per batch (default 8)")
    p.add_argument("--rehash", default=None, metavar="DIR",
                   help="do not fit: re-save the calibration in DIR (format 1, or deliberately edited) under the id "
                        "of its content, into --out; the numbers are kept as they are")
    p.set_defaults(func=run)


def _rehash(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from ..calibration import Calibration

    try:
        old = json.loads((Path(args.rehash) / "calibration.json").read_text(encoding="utf-8")).get("calibration_id")
    except (OSError, ValueError, AttributeError):
        old = None
    cal = Calibration.load(args.rehash, rehash=True)
    out = cal.save(args.out)
    print(f"calibration {old!r} -> {cal.calibration_id} (content unchanged: S_base = {cal.s_base!r}, "
          f"alpha = {cal.alpha!r}) -> {out}")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.rehash is not None:
        return _rehash(args)
    import sys

    from tqdm import tqdm

    from .. import data
    from ..calibrate import default_reference
    from ..calibration import Calibration
    from ._common import load_guard

    guard = load_guard(args, calibrated=False)
    unsafe = data.unsafe_text_queries(args.unsafe_text)
    if args.reference:
        ref_name, refs = args.reference, data.reference_queries(args.reference)
    else:
        ref_name, refs = default_reference(guard)
    print(f"reference set: {ref_name} ({len(refs)} queries)")
    if not args.reference and not ref_name.startswith("demo world"):
        print("warning: calibrating on the bundled default reference set; S_base is only as good as the reference "
              "set: fit on harmful and benign queries like your own traffic with --reference FILE.", file=sys.stderr)
    with tqdm(total=len(unsafe) + len(refs), desc="calibrating", unit="query") as bar:
        cal = Calibration.fit(guard, unsafe, refs, batch_size=args.batch_size,
                              progress=lambda done, total: bar.update(done - bar.n))
    out = cal.save(args.out)
    st = cal.meta.reference_stats
    print(f"calibration {cal.calibration_id} -> {out}")
    print(f"S_base = {cal.s_base:.4f}   alpha = {cal.alpha:.3f}")
    print(f"mean S: harmful {st['harmful_mean_similarity']:.4f}, benign {st['benign_mean_similarity']:.4f}; "
          f"AUROC of S (harmful vs benign) = {st['auroc']:.3f}")
    if st["auroc"] < POOR_AUROC:
        print(f"warning: the reference set separates harmful from benign poorly on this model (AUROC {st['auroc']:.3f} "
              f"< {POOR_AUROC}): S_base and the risk scores may not be meaningful; check the model, or pass a "
              "reference set closer to your traffic with --reference.", file=sys.stderr)
    return 0
