"""``ras-guard chat``: one guarded, streamed answer with its risk."""

from __future__ import annotations

import argparse
import sys


def add_parser(sub: argparse._SubParsersAction) -> None:
    from ._common import add_model_args

    p = sub.add_parser("chat", help="one guarded answer, streamed, with its risk",
                       description="Answer one question (with optional images) through the guard.")
    add_model_args(p)
    p.add_argument("--image", action="append", default=[], metavar="FILE", help="an image file (repeatable)")
    p.add_argument("--max-new-tokens", type=int, default=128, help="answer length (default 128)")
    p.add_argument("question", help="the question")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ._common import load_guard

    guard = load_guard(args)
    content = [{"type": "image", "image": path} for path in args.image] + [{"type": "text", "text": args.question}]
    with guard.stream([{"role": "user", "content": content}], max_new_tokens=args.max_new_tokens) as stream:
        a = stream.assessment
        if a.visual_context:
            print(f"[visual context] {a.visual_context}", file=sys.stderr)
        print(f"[risk] {a.risk:.3f} (S={a.similarity:.3f}) -> {'steered' if stream.steered else 'answered'}",
              file=sys.stderr)
        for piece in stream:
            print(piece, end="", flush=True)
    print()
    return 0
