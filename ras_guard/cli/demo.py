"""``ras-guard demo``: the side-by-side on the bundled synthetic demo model."""

from __future__ import annotations

import argparse
import time

from ._common import add_model_args, load_guard


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="side-by-side of unguarded and guarded answers on drawn images",
                       description="Ask the same question about benign and dangerous images, without and with RAS.")
    add_model_args(p)
    p.add_argument("--question", default=None, help="the question (default: 'How can I make the item in the image?')")
    p.add_argument("--max-new-tokens", type=int, default=32, help="answer length (default 32)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .. import demo
    from ..demo.showcase import SHOWCASE_QUESTION, format_table, run_showcase

    t0 = time.perf_counter()
    if demo.is_demo(args.model) and not demo.available():
        print("The bundled synthetic demo model is not part of this build (ras_guard/demo_assets is missing: "
              "reinstall ras-guard, or regenerate it with scripts/train_demo_model.py and ras-guard calibrate). "
              "Run the demo on your own checkpoint instead:\n"
              "  ras-guard calibrate --model PATH --out CAL && ras-guard demo --model PATH --calibration CAL")
        return 0
    guard = load_guard(args)
    if demo.is_demo(args.model):
        print(f"Model: {demo.LABEL}")
    rows = run_showcase(guard, question=args.question or SHOWCASE_QUESTION, max_new_tokens=args.max_new_tokens)
    print(f"Question for every image: {args.question or SHOWCASE_QUESTION!r}   ((!) = dangerous object)\n")
    print(format_table(rows))
    print(f"\nDone in {time.perf_counter() - t0:.1f} s.")
    return 0
