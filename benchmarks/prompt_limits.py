"""What the prompt-size limit costs, and how fast an oversized message is refused.

Reports, on one model:

* time to refusal of 1 MB and 20 KB text messages (first call of the guard: the vocabulary scan included; then
  the median of warm calls), and which check refused them (raw size or token count);
* the cost of the check on an ordinary image request, as a ratio to the whole guarded call it precedes.

Usage::

    python -m benchmarks.prompt_limits --model demo
    python -m benchmarks.prompt_limits --model demo --json limits.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

from PIL import Image

from ras_guard import RASGuard
from ras_guard.errors import PromptTooLongError

WORDS = "please tell me about the cake in the picture . "


def _text(chars: int) -> str:
    return (WORDS * (chars // len(WORDS) + 1))[:chars]


def _seconds(fn: Callable[[], Any]) -> tuple[float, str]:
    t0 = time.perf_counter()
    try:
        fn()
        what = "answered"
    except PromptTooLongError as exc:
        what = "raw size" if "characters of text" in str(exc) else "token count"
    return time.perf_counter() - t0, what


def main(argv: Sequence[str] | None = None) -> int:
    """Run the measurements and print (and optionally write) them as JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="demo")
    ap.add_argument("--calibration", default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    guard = RASGuard.from_pretrained(args.model, args.calibration, device=args.device)
    out: dict[str, Any] = {"model": guard.model_name, "limit_tokens": guard._limits.limit, "refusal": {}}
    for chars in (1_000_000, 20_000, 8_000):
        msgs = [{"role": "user", "content": _text(chars)}]
        first, what = _seconds(lambda m=msgs: guard.generate(m, max_new_tokens=8))
        warm = [_seconds(lambda m=msgs: guard.generate(m, max_new_tokens=8))[0] for _ in range(args.repeats)]
        out["refusal"][str(chars)] = {"first_s": first, "median_s": statistics.median(warm), "refused_by": what}
    image = Image.new("RGB", (32, 32), (200, 120, 40))
    msgs = [{"role": "user", "content": [{"type": "image", "image": image}, "What is in the image?"]}]
    checks, calls = [], []
    for _ in range(args.repeats):
        guard._captions.clear()
        checks.append(_seconds(lambda: guard.check_prompt(msgs, max_new_tokens=16))[0])
        calls.append(_seconds(lambda: guard.generate(msgs, max_new_tokens=16))[0])
    out["check_s"], out["guarded_call_s"] = statistics.median(checks), statistics.median(calls)
    out["check_ratio_to_call"] = out["check_s"] / out["guarded_call_s"]
    text = json.dumps(out, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
