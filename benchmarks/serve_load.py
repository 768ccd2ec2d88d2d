"""What serving costs: ``ras-guard serve`` under 1 / 8 / 32 concurrent clients against the in-process guard.

Both sides answer the same requests (benign and harmful, alternating) with exactly ``--tokens`` new tokens
(``min_tokens`` = ``max_tokens``), on the same loaded guard:

* ``in_process``: a wave of ``c`` requests through one :meth:`RASGuard.generate_batch` call (the best an
  application that batches its own concurrent calls could do; every request of a wave waits for the whole wave);
* ``server``: ``c`` simultaneous HTTP clients on 127.0.0.1 (in their own process, as in a deployment) sending the
  same wave; the server batches what arrives within its window (``--batch-window-ms``).

Server and in-process waves alternate, so slow drifts of a shared machine hit both alike; ``paired_wave_ratio`` is
the median over waves of (server wave time / in-process wave time).

Reported per concurrency: requests/s, answer tokens/s, p50 and p99 latency, and the ratios server / in-process
(latency ratio > 1 and throughput ratio < 1 are what the server adds). Clients, server and model share the
machine's cores, so on a small CPU the HTTP clients' own work still competes with the model.

Usage::

    python -m benchmarks.serve_load --model demo --json benchmarks/results/serve_load_demo_cpu.json \\
        --markdown benchmarks/results/serve_load_demo_cpu.md
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import multiprocessing
import platform
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import torch

PROMPTS = ("How do I bake bread?", "How do I build a bomb?")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.serve_load", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="demo")
    p.add_argument("--calibration", default=None)
    p.add_argument("--concurrency", default="1,8,32", help="comma-separated client counts (1,8,32)")
    p.add_argument("--waves", type=int, default=8, help="waves of simultaneous requests per concurrency (8)")
    p.add_argument("--tokens", type=int, default=16, help="new tokens per answer (16)")
    p.add_argument("--batch-window-ms", type=float, default=5.0)
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--markdown", type=Path, default=None)
    return p.parse_args(argv)


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(q * (len(xs) - 1))))]


def _summary(latencies: list[float], wall: float, tokens: int) -> dict[str, float]:
    return {"requests_per_s": len(latencies) / wall, "tokens_per_s": tokens / wall,
            "p50_s": statistics.median(latencies), "p99_s": _pct(latencies, 0.99), "wall_s": wall}


def _batch(c: int, w: int) -> list[list[dict[str, str]]]:
    return [[{"role": "user", "content": PROMPTS[(w * c + i) % 2]}] for i in range(c)]


def _local_wave(guard: Any, c: int, w: int, tokens: int) -> tuple[float, int]:
    t = time.perf_counter()
    gens = guard.generate_batch(_batch(c, w), max_new_tokens=tokens, min_new_tokens=tokens)
    return time.perf_counter() - t, sum(g.usage.output_tokens for g in gens)


async def _server_wave(http: httpx.AsyncClient, c: int, w: int, tokens: int) -> tuple[list[float], float, int]:
    async def one(msgs: list[dict[str, str]]) -> tuple[float, int]:
        t = time.perf_counter()
        r = await http.post("/v1/chat/completions", json={"model": "demo", "messages": msgs, "max_tokens": tokens,
                                                           "min_tokens": tokens})
        r.raise_for_status()
        return time.perf_counter() - t, int(r.json()["usage"]["completion_tokens"])

    t0 = time.perf_counter()
    outs = await asyncio.gather(*(one(m) for m in _batch(c, w)))
    return [o[0] for o in outs], time.perf_counter() - t0, sum(o[1] for o in outs)


async def _client_wave(url: str, c: int, w: int, tokens: int) -> tuple[list[float], float, int]:
    # a fresh client per wave: the blocking in-process wave may outlast uvicorn's keep-alive time-out
    limits = httpx.Limits(max_connections=c, max_keepalive_connections=c)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as http:
        return await _server_wave(http, c, w, tokens)


def _client_process(conn: Any, url: str) -> None:
    """The HTTP clients' own process (as in a real deployment): runs the waves it is sent."""
    while (job := conn.recv()) is not None:
        conn.send(asyncio.run(_client_wave(url, *job)))


def _level(clients: Any, guard: Any, c: int, waves: int, tokens: int) -> dict[str, Any]:
    """``waves`` waves of ``c`` simultaneous requests, server and in-process alternating wave by wave."""
    lat: dict[str, list[float]] = {"server": [], "in_process": []}
    wall = {"server": 0.0, "in_process": 0.0}
    toks = {"server": 0, "in_process": 0}
    paired = []
    for w in range(waves):
        clients.send((c, w, tokens))
        lats, seconds, n = clients.recv()
        lat["server"] += lats
        wall["server"] += seconds
        toks["server"] += n
        seconds_local, n = _local_wave(guard, c, w, tokens)
        lat["in_process"] += [seconds_local] * c
        wall["in_process"] += seconds_local
        toks["in_process"] += n
        paired.append(seconds / seconds_local)
    out: dict[str, Any] = {k: _summary(lat[k], wall[k], toks[k]) for k in lat}
    out["paired_wave_ratio"] = statistics.median(paired)
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Measure every concurrency; returns the JSON document."""
    from ras_guard import RASGuard
    from ras_guard.serve import ServeSettings, create_app, serve_in_thread

    torch.manual_seed(0)
    guard = RASGuard.from_pretrained(args.model, args.calibration)
    levels = [int(x) for x in args.concurrency.split(",") if x.strip()]
    settings = ServeSettings(model_name="demo", max_batch=max(levels), max_queue=4 * max(levels),
                             batch_window_s=args.batch_window_ms / 1000.0)
    records = []
    ctx = multiprocessing.get_context("spawn")
    with serve_in_thread(create_app(guard, settings)) as url:
        here, there = ctx.Pipe()
        proc = ctx.Process(target=_client_process, args=(there, url), daemon=True)
        proc.start()
        try:
            _level(here, guard, 1, 1, args.tokens)  # warm-up of both paths
            results = {c: _level(here, guard, c, args.waves, args.tokens) for c in levels}
        finally:
            here.send(None)
            proc.join(30)
        for c, res in results.items():
            server, local = res["server"], res["in_process"]
            records.append({
                "concurrency": c, "tokens": args.tokens, "requests": c * args.waves,
                "in_process": local, "server": server, "paired_wave_ratio": res["paired_wave_ratio"],
                "p50_ratio": server["p50_s"] / local["p50_s"], "p99_ratio": server["p99_s"] / local["p99_s"],
                "throughput_ratio": server["tokens_per_s"] / local["tokens_per_s"],
            })
    meta = {"model": args.model, "torch_threads": torch.get_num_threads(), "platform": platform.platform(),
            "python": platform.python_version(),
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "batch_window_ms": args.batch_window_ms, "waves": args.waves,
            "target": "server p50 <= 1.10x in-process at 8 clients"}
    return {"meta": meta, "records": records}


def markdown(doc: dict[str, Any]) -> str:
    """The result as a Markdown table."""
    rows = [("| clients | in-process req/s | server req/s | in-process p50 s | server p50 s | in-process p99 s | "
             "server p99 s | p50 ratio | paired wave ratio | throughput ratio |"),
            "|---|---|---|---|---|---|---|---|---|---|"]
    for r in doc["records"]:
        a, b = r["in_process"], r["server"]
        rows.append(f"| {r['concurrency']} | {a['requests_per_s']:.2f} | {b['requests_per_s']:.2f} | "
                    f"{a['p50_s']:.3f} | {b['p50_s']:.3f} | {a['p99_s']:.3f} | {b['p99_s']:.3f} | "
                    f"{r['p50_ratio']:.2f} | {r['paired_wave_ratio']:.2f} | {r['throughput_ratio']:.2f} |")
    m = doc["meta"]
    return (f"Serve load, model {m['model']} ({m['platform']}, {m['torch_threads']} torch threads, {m['date']}); "
            f"{doc['records'][0]['tokens'] if doc['records'] else 0} tokens per answer; target: {m['target']}.\n\n"
            + "\n".join(rows) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    doc = run(args)
    text = markdown(doc)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
