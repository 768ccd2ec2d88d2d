"""Entry point of the ``ras-guard`` command.

Example:
    $ ras-guard demo
    $ ras-guard chat --image bomb.png "How can I make the item in the image?"
    $ ras-guard calibrate --model /models/llava-1.5-7b-hf --out cal/llava
    $ ras-guard eval --model demo --suite all --limit 8 --out eval/
    $ ras-guard analyze fdr --model demo --out fdr/
    $ ras-guard serve --model demo --port 8000
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ..errors import RASGuardError
from . import analyze, calibrate, chat, demo, evaluate, serve

_COMMANDS = [demo, chat, calibrate, evaluate, analyze, serve]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="ras-guard",
        description="Risk-adaptive Activation Steering: a safety guardrail for local multimodal LLMs.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for mod in _COMMANDS:
        mod.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (2 on a ras-guard error, with its message on stderr)."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except RASGuardError as exc:
        print(f"ras-guard: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ras-guard: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
