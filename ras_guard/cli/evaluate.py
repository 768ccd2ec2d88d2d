"""``ras-guard eval``: ASR, over-refusal, utility and speed of the unguarded model, a safety prompt and RAS."""

from __future__ import annotations

import argparse
import sys


def add_parser(sub: argparse._SubParsersAction) -> None:
    from ..evaluation.suites import SUITES
    from ._common import add_model_args

    p = sub.add_parser(
        "eval",
        help="evaluate RAS against the unguarded model and a safety prompt on the bundled suites",
        description="Answer every item of the chosen suites three ways (unguarded, safety prompt, RAS), judge "
        "refusals, and write results.json, report.md and PNG plots. Finished items are saved as they come "
        '(items.jsonl, results.json with "complete": false), so Ctrl-C keeps them; a new run overwrites the '
        "folder unless --resume is given.",
    )
    add_model_args(p)
    p.add_argument(
        "--suite",
        default="all",
        help=f"suite name(s) or suite file path(s), comma-separated, or 'all' (default; every bundled suite but "
        f"safebench-tiny): {', '.join(SUITES)}; a path: .jsonl (ras-guard's schema, see README), XSTest or "
        "SafeBench .csv, MM-SafetyBench .json or a folder of them",
    )
    p.add_argument("--limit", type=int, default=None, metavar="K", help="at most K items per suite")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument(
        "--judge",
        default=None,
        metavar="MODULE:CALLABLE|model:PATH",
        help="refusal judge: a function text -> bool, or model:PATH for a local checkpoint asked XSTest's "
        "classifier question (default: ras_guard.judge:is_refusal, the documented rules)",
    )
    p.add_argument("--max-new-tokens", type=int, default=64, help="answer length (default 64)")
    p.add_argument(
        "--batch-size",
        type=int,
        default=8,
        help="items per generate call (default 8; 1 gives per-request latency)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="keep the finished items in --out (same model, calibration, judge, settings) and run the rest",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..evaluation import load_judge, run_evaluation
    from ..evaluation.report import format_summary
    from ._common import load_guard

    guard = load_guard(args)
    judge = load_judge(args.judge) if args.judge else None
    try:
        res = run_evaluation(
            guard,
            args.suite,
            limit=args.limit,
            out_dir=args.out,
            judge=judge,
            max_new_tokens=args.max_new_tokens,
            batch_size=args.batch_size,
            resume=args.resume,
            progress=True,
        )
    except KeyboardInterrupt:
        print(
            f'interrupted: finished items are in {args.out} (results.json has "complete": false); '
            "rerun with --resume to continue.",
            file=sys.stderr,
        )
        return 130
    print(format_summary(res))
    print(f"results: {args.out}/results.json, report: {args.out}/report.md")
    return 0
