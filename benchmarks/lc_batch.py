"""What LangChain's ``batch`` / ``abatch`` cost over the core's ``generate_batch`` on the same requests.

16 mixed requests (4 harmful and 4 benign drawn objects with a how-to question, 4 harmful and 4 benign text
questions) are answered by

* ``core``: ``RASGuard.generate_batch`` on the chat dicts (images as PNG bytes), the reference;
* ``lc_batch`` / ``lc_abatch``: ``RASGuardedChatModel.batch`` / ``abatch`` on LangChain messages (images as v1
  base64 blocks), sharing the core's loaded guard;
* ``lc_unpooled``: LangChain's default ``Runnable.batch`` (one ``invoke`` per row in threads), what ``batch`` was.

The modes are interleaved within each repetition (their order rotates), after a warm-up of each; the caption
cache is off so every repetition does the full work. Reported: median seconds per mode and its ratio to
``core``; the answers of every mode are checked to equal the core's (greedy decoding).

Usage::

    python -m benchmarks.lc_batch --json benchmarks/results/lc_batch_cpu.json \\
        --markdown benchmarks/results/lc_batch_cpu.md
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import io
import json
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from benchmarks import _models

TARGET = 1.25
"""Largest accepted ratio of ``lc_batch`` / ``lc_abatch`` to ``core``."""
MODES = ("core", "lc_batch", "lc_abatch", "lc_unpooled")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options (``-h`` lists them)."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks.lc_batch", description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="demo", help="checkpoint folder, or 'demo' (default)")
    ap.add_argument("--calibration", help="calibration folder (default: the demo's)")
    ap.add_argument("--rows", type=int, default=16, help="requests per batch, a multiple of 4 (default 16)")
    ap.add_argument("--max-tokens", type=int, default=32, help="answer length limit (default 32)")
    ap.add_argument("--repeats", type=int, default=5, help="timed repetitions (default 5)")
    ap.add_argument("--device", default="cpu", help="cpu (default), cuda...")
    ap.add_argument("--json", type=Path, help="write the records here")
    ap.add_argument("--markdown", type=Path, help="write the table here")
    args = ap.parse_args(argv)
    if args.rows < 4 or args.rows % 4:
        ap.error("--rows must be a positive multiple of 4")
    return args


def _png(image: Any) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def requests(rows: int) -> tuple[list[list[dict[str, Any]]], list[list[Any]]]:
    """The same mixed requests as core chat dicts and as LangChain messages."""
    from langchain_core.messages import HumanMessage

    core: list[list[dict[str, Any]]] = []
    lc: list[list[Any]] = []
    for kind in ("harmful", "benign"):
        for multimodal in (True, False):
            for msgs in _models.inputs(kind, rows // 4, multimodal):
                content = msgs[0]["content"]
                if isinstance(content, str):
                    core.append([{"role": "user", "content": [{"type": "text", "text": content}]}])
                    lc.append([HumanMessage(content)])
                    continue
                png = _png(content[0]["image"])
                text = content[1]["text"]
                core.append([{"role": "user", "content": [{"type": "image", "image": png}, {"type": "text", "text": text}]}])
                block = {"type": "image", "base64": base64.b64encode(png).decode(), "mime_type": "image/png"}
                lc.append([HumanMessage(content=[block, {"type": "text", "text": text}])])
    return core, lc


def build(args: argparse.Namespace) -> tuple[Any, Any]:
    """A guard without caption cache, and a chat model sharing it."""
    from langchain_ras_guard import RASGuardedChatModel

    from ras_guard import Calibration, RASGuard, demo

    cal_path = args.calibration or (demo.calibration_path() if demo.is_demo(args.model) else None)
    cal = Calibration.load(cal_path) if cal_path else None
    config = cal.config().model_copy(update={"caption_cache_size": 0}) if cal else None
    guard = RASGuard.from_pretrained(args.model, cal, device=args.device, config=config)
    llm = RASGuardedChatModel(guard=guard, max_tokens=args.max_tokens, temperature=0, batch_size=args.rows)
    return guard, llm


def runners(guard: Any, llm: Any, args: argparse.Namespace) -> dict[str, Callable[[Any, Any], list[str]]]:
    """Each mode answers the batch and returns the texts."""
    from langchain_core.runnables import Runnable

    n = args.max_tokens
    greedy = {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}  # as temperature=0

    def core(c: Any, _: Any) -> list[str]:
        return [g.text for g in guard.generate_batch(c, max_new_tokens=n, **greedy)]

    def lc_batch(_: Any, m: Any) -> list[str]:
        return [x.text for x in llm.batch(m)]

    def lc_abatch(_: Any, m: Any) -> list[str]:
        return [x.text for x in asyncio.run(llm.abatch(m))]

    def lc_unpooled(_: Any, m: Any) -> list[str]:
        return [x.text for x in Runnable.batch(llm, m)]

    return {"core": core, "lc_batch": lc_batch, "lc_abatch": lc_abatch, "lc_unpooled": lc_unpooled}


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Time every mode; return the result document."""
    guard, llm = build(args)
    core_msgs, lc_msgs = requests(args.rows)
    run_mode = runners(guard, llm, args)
    answers = {m: run_mode[m](core_msgs, lc_msgs) for m in MODES}  # warm-up, and the answers compared
    times: dict[str, list[float]] = {m: [] for m in MODES}
    for rep in range(args.repeats):
        k = rep % len(MODES)
        for mode in MODES[k:] + MODES[:k]:
            t0 = time.perf_counter()
            run_mode[mode](core_msgs, lc_msgs)
            times[mode].append(time.perf_counter() - t0)
    base = statistics.median(times["core"])
    records = [
        {
            "mode": m,
            "rows": args.rows,
            "max_tokens": args.max_tokens,
            "median_s": statistics.median(times[m]),
            "min_s": min(times[m]),
            "ratio_to_core": statistics.median(times[m]) / base,
            "paired_ratio_to_core": statistics.median(t / c for t, c in zip(times[m], times["core"], strict=True)),
            "answers_equal_core": answers[m] == answers["core"],
            "times_s": times[m],
        }
        for m in MODES
    ]
    meta = {
        "model": str(args.model),
        "device": args.device,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "repeats": args.repeats,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "target_ratio": TARGET,
    }
    return {"meta": meta, "records": records}


def markdown(doc: dict[str, Any]) -> str:
    """The result table."""
    m = doc["meta"]
    lines = [
        (
            f"Model: {m['model']} on {m['device']} (torch {m['torch']}, {m['threads']} threads); {m['repeats']} "
            f"interleaved repetitions after a warm-up; {doc['records'][0]['rows']} mixed requests, "
            f"max {doc['records'][0]['max_tokens']} new tokens, caption cache off. Target: batch and abatch "
            f"<= {m['target_ratio']}x core."
        ),
        "",
        "| mode | median s | min s | x core | x core (paired) | answers = core |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for r in doc["records"]:
        lines.append(
            f"| {r['mode']} | {r['median_s']:.3f} | {r['min_s']:.3f} | {r['ratio_to_core']:.2f} | "
            f"{r['paired_ratio_to_core']:.2f} | {'yes' if r['answers_equal_core'] else 'NO'} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Run, print and write the results; 0 when batch and abatch meet the target with the core's answers."""
    args = parse_args(argv)
    doc = run(args)
    text = markdown(doc)
    print(text)
    if args.json:
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
    if args.markdown:
        args.markdown.write_text(text)
    by = {r["mode"]: r for r in doc["records"]}
    ok = all(by[m]["answers_equal_core"] for m in MODES)
    met = all(by[m]["ratio_to_core"] <= TARGET for m in ("lc_batch", "lc_abatch"))
    if not met:
        print(f"target missed: batch/abatch above {TARGET}x core")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
