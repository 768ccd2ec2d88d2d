"""What guarding costs: ras-guard against unguarded generation and the baselines, in one process.

Every mode of :mod:`benchmarks._modes` answers the same batch of requests on the same model with exactly
``length`` new tokens. Modes are interleaved within each repetition (their order rotates), after a warm-up of
every mode, so slow drifts of a shared machine hit all of them alike. Reported per (mode, input kind, length,
batch size): median and p90 latency, answer tokens per second, peak memory and ratios to ``unguarded``.

Peak memory: on a GPU, ``torch.cuda.max_memory_allocated`` during the run (``peak_mem_mb``) and its increase
over the allocation before the run (``peak_mem_delta_mb``). On a CPU, one subprocess per mode (so that
allocator caches of other modes do not mix in) resets the kernel's resident-set high-water mark
(``/proc/self/clear_refs``) before each run and reads ``VmHWM`` after it: ``peak_mem_mb`` is the process's peak
resident set during the run, ``peak_mem_delta_mb`` its increase over the resident set before the run.
``--memory off`` skips this.

Usage::

    python -m benchmarks.overhead --model demo --json overhead.json --markdown overhead.md
    python -m benchmarks.overhead --model /models/llava-1.5-7b-hf --calibration cal/llava
    python -m benchmarks.overhead --random-arch llava-1.5-7b                 # a GPU: real sizes, random weights
    python -m benchmarks.overhead --random-arch llava-1.5-7b --scale tiny    # a CPU: same code path, shrunk
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from benchmarks import _models
from benchmarks._modes import MODES, REQUIRED, RUNNERS, SETUP, Guards

_MEM_TAG = "RAS_BENCH_MEMORY "


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options (``-h`` lists them)."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks.overhead", description=__doc__.split("\n\n")[0])
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--model", default="demo", help="checkpoint folder, or 'demo' (default)")
    src.add_argument("--random-arch", choices=sorted(_models.PUBLISHED), help="random weights, published sizes")
    ap.add_argument("--scale", choices=("full", "tiny"), default="full", help="with --random-arch: 'tiny' shrinks it")
    ap.add_argument("--calibration", help="calibration folder (default: the demo's, else a quick fit)")
    ap.add_argument("--lengths", type=_ints, default=[32, 128, 512], help="answer lengths, e.g. 32,128,512")
    ap.add_argument("--batch-sizes", type=_ints, default=[1, 8], help="batch sizes, e.g. 1,8")
    ap.add_argument("--repeats", type=int, default=5, help="timed repetitions per configuration")
    ap.add_argument("--inputs", default="benign,harmful", help="input kinds: benign,harmful")
    ap.add_argument("--modes", default=",".join(MODES), help=f"subset of {','.join(MODES)}")
    ap.add_argument("--json", type=Path, help="write the records here")
    ap.add_argument("--markdown", type=Path, help="write the table here")
    ap.add_argument("--memory", choices=("auto", "off"), default="auto", help="measure peak memory (see above)")
    ap.add_argument("--device", help="cpu, cuda, cuda:1 (default: CUDA when available)")
    ap.add_argument("--dtype", help="float32, bfloat16... (default: the checkpoint's; random: bf16 on GPU)")
    ap.add_argument("--threads", type=int, help="torch CPU threads")
    ap.add_argument("--caption-tokens", type=int, help="override caption_max_new_tokens (changes the method)")
    ap.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--memory-worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = set(args.modes) - set(MODES)
    if unknown:
        ap.error(f"unknown modes {sorted(unknown)}; choose from {', '.join(MODES)}")
    if "unguarded" not in args.modes:
        args.modes.insert(0, "unguarded")  # every ratio is to it
    args.inputs = [k.strip() for k in args.inputs.split(",") if k.strip()]
    if set(args.inputs) - {"benign", "harmful"}:
        ap.error("--inputs takes benign and/or harmful")
    return args


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _p90(xs: list[float]) -> float:
    return statistics.quantiles(xs, n=10, method="inclusive")[-1] if len(xs) > 1 else xs[0]


def _configs(args: argparse.Namespace) -> list[tuple[str, int, int]]:
    return [(k, b, n) for k in args.inputs for b in args.batch_sizes for n in args.lengths]


def time_modes(g: Guards, args: argparse.Namespace, multimodal: bool) -> list[dict[str, Any]]:
    """Interleaved timing of every mode on every configuration."""
    device = g.default.backend.device
    for kind in args.inputs:  # warm-up: every code path once
        batch = _models.inputs(kind, 1, multimodal)
        for mode in args.modes:
            SETUP.get(mode, lambda *_: None)(g, batch)
            RUNNERS[mode](g, batch, min(args.lengths))
    records = []
    for kind, bs, length in _configs(args):
        batch = _models.inputs(kind, bs, multimodal)
        times: dict[str, list[float]] = {m: [] for m in args.modes}
        fractions: dict[str, list[float]] = {m: [] for m in args.modes}
        for rep in range(args.repeats):
            k = rep % len(args.modes)
            for mode in args.modes[k:] + args.modes[:k]:
                SETUP.get(mode, lambda *_: None)(g, batch)
                _sync(device)
                t0 = time.perf_counter()
                fractions[mode].append(RUNNERS[mode](g, batch, length))
                _sync(device)
                times[mode].append(time.perf_counter() - t0)
        base = statistics.median(times["unguarded"])
        for mode in args.modes:
            med = statistics.median(times[mode])
            paired = statistics.median(t / u for t, u in zip(times[mode], times["unguarded"]))
            records.append({
                "mode": mode, "input_kind": kind, "length": length, "batch_size": bs,
                "median_s": med, "p90_s": _p90(times[mode]), "min_s": min(times[mode]),
                "tokens_per_s": bs * length / med,
                "ratio_to_unguarded": med / base, "paired_ratio_to_unguarded": paired,
                "peak_mem_mb": None, "peak_mem_delta_mb": None,
                "mem_ratio_to_unguarded": None, "acted_fraction": statistics.mean(fractions[mode]),
                "repeats": args.repeats, "times_s": times[mode],
            })
        print(f"  {kind:8s} B={bs} L={length}: " + "  ".join(
            f"{m}={statistics.median(times[m]) / base:.2f}x" for m in args.modes), flush=True)
    return records


# ------------------------------------------------------------------------------------------------ memory
def _rss_kb() -> tuple[int, int]:
    status = Path("/proc/self/status").read_text()
    return tuple(int(re.search(rf"{k}:\s+(\d+)", status).group(1)) for k in ("VmRSS", "VmHWM"))  # type: ignore[return-value, union-attr]


def memory_worker(g: Guards, args: argparse.Namespace, multimodal: bool) -> list[dict[str, Any]]:
    """Peak memory of one mode (``args.memory_worker``) on every configuration, measured in this process."""
    mode, device = args.memory_worker, g.default.backend.device
    setup = SETUP.get(mode, lambda *_: None)
    for kind in args.inputs:
        setup(g, _models.inputs(kind, 1, multimodal))
        RUNNERS[mode](g, _models.inputs(kind, 1, multimodal), min(args.lengths))
    out = []
    for kind, bs, length in _configs(args):
        batch = _models.inputs(kind, bs, multimodal)
        setup(g, batch)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
            before = torch.cuda.memory_allocated(device)
            RUNNERS[mode](g, batch, length)
            torch.cuda.synchronize(device)
            peak = torch.cuda.max_memory_allocated(device)
            total, delta = peak / 2**20, (peak - before) / 2**20
        else:
            Path("/proc/self/clear_refs").write_text("5")
            rss, _ = _rss_kb()
            RUNNERS[mode](g, batch, length)
            _, hwm = _rss_kb()
            total, delta = hwm / 1024, (hwm - rss) / 1024
        out.append({"input_kind": kind, "batch_size": bs, "length": length, "peak_mem_mb": total,
                    "peak_mem_delta_mb": delta})
    return out


def measure_memory(args: argparse.Namespace, argv: Sequence[str], records: list[dict[str, Any]]) -> str:
    """Fill the memory fields of ``records``: one subprocess per mode. Returns a description of the method."""
    on_gpu = torch.cuda.is_available() and not (args.device or "").startswith("cpu")
    if not on_gpu and not Path("/proc/self/clear_refs").exists():
        return "not measured (needs Linux /proc/self/clear_refs on a CPU)"
    for mode in args.modes:
        cmd = [sys.executable, "-m", "benchmarks.overhead", *argv, "--memory-worker", mode, "--workdir",
               str(args.workdir), "--calibration", str(args.calibration)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(_MEM_TAG)]
        if proc.returncode or not lines:
            raise RuntimeError(f"memory worker for {mode} failed:\n{proc.stderr[-3000:]}")
        for m in json.loads(lines[-1][len(_MEM_TAG):]):
            for r in records:
                if r["mode"] == mode and all(r[k] == m[k] for k in ("input_kind", "batch_size", "length")):
                    r.update(peak_mem_mb=m["peak_mem_mb"], peak_mem_delta_mb=m["peak_mem_delta_mb"])
    for r in records:
        base = next(x for x in records if x["mode"] == "unguarded" and all(
            x[k] == r[k] for k in ("input_kind", "batch_size", "length")))
        if r["peak_mem_mb"] is not None and base["peak_mem_mb"]:
            r["mem_ratio_to_unguarded"] = r["peak_mem_mb"] / base["peak_mem_mb"]
    if on_gpu:
        return "torch.cuda.max_memory_allocated during the run (one subprocess per mode)"
    return "peak resident set (VmHWM after resetting it via /proc/self/clear_refs), one subprocess per mode"


# ------------------------------------------------------------------------------------------------ output
def summary(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per configuration, the issue's target ratios for ``ras_guard``, from the same runs.

    ``x_unguarded``: ras_guard's median over unguarded's; ``faster_than_reference`` / ``faster_than_ecso``: the
    baseline's median over ras_guard's (> 1: ras_guard is faster), with the same ratio taken per repetition and
    then the median (``*_paired``); ``mem_x``: ras_guard's peak memory over unguarded's; ``ecso_acted``: share of
    requests ECSO flagged and answered again.
    """
    by = {(r["mode"], r["input_kind"], r["length"], r["batch_size"]): r for r in records}
    out = []
    for (mode, kind, length, bs), r in by.items():
        if mode != "ras_guard":
            continue
        row: dict[str, Any] = {"input_kind": kind, "length": length, "batch_size": bs,
                               "x_unguarded": r["ratio_to_unguarded"], "mem_x": r["mem_ratio_to_unguarded"]}
        for base in ("reference", "ecso"):
            other = by.get((base, kind, length, bs))
            if other is None:
                continue
            row[f"faster_than_{base}"] = other["median_s"] / r["median_s"]
            per_rep = (o / t for o, t in zip(other["times_s"], r["times_s"]))
            row[f"faster_than_{base}_paired"] = statistics.median(per_rep)
            if base == "ecso":
                row["ecso_acted"] = other["acted_fraction"]
        out.append(row)
    return out


def _summary_markdown(rows: list[dict[str, Any]]) -> list[str]:
    def num(row: dict[str, Any], key: str, fmt: str = ".2f") -> str:
        return "-" if row.get(key) is None else format(row[key], fmt)

    lines = ["", ("Targets (ras_guard): cost over unguarded; speed-up over reference-style RAS and over ECSO "
                  "(baseline median / ras_guard median; paired: per repetition); peak memory over unguarded."), "",
             ("| input | new tokens | batch | x unguarded | faster than reference | paired | faster than ECSO | "
              "paired | ECSO acted | mem x |"), "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(
            f"| {r['input_kind']} | {r['length']} | {r['batch_size']} | {num(r, 'x_unguarded')} | "
            f"{num(r, 'faster_than_reference')} | {num(r, 'faster_than_reference_paired')} | "
            f"{num(r, 'faster_than_ecso')} | {num(r, 'faster_than_ecso_paired')} | {num(r, 'ecso_acted')} | "
            f"{num(r, 'mem_x', '.3f')} |")
    return lines


def markdown(meta: dict[str, Any], records: list[dict[str, Any]]) -> str:
    """The records as a Markdown table (one row per record), with the setup above it."""
    lines = [(f"Model: {meta['model']} on {meta['device']} (torch {meta['torch']}, {meta['threads']} threads); "
             f"{meta['repeats']} interleaved repetitions after a warm-up; memory: {meta['memory_method']}."), "",
             ("| input | new tokens | batch | mode | median s | p90 s | tokens/s | x unguarded | x paired | "
             "peak MB | delta MB | mem x | acted |"),
             "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]

    def num(x: Any, fmt: str) -> str:
        return "-" if x is None else format(x, fmt)

    for r in records:
        lines.append(
            f"| {r['input_kind']} | {r['length']} | {r['batch_size']} | {r['mode']} | {r['median_s']:.3f} | "
            f"{r['p90_s']:.3f} | {r['tokens_per_s']:.1f} | {r['ratio_to_unguarded']:.2f} | "
            f"{r['paired_ratio_to_unguarded']:.2f} | "
            f"{num(r['peak_mem_mb'], '.0f')} | {num(r['peak_mem_delta_mb'], '.1f')} | "
            f"{num(r['mem_ratio_to_unguarded'], '.3f')} | {r['acted_fraction']:.2f} |"
        )
    lines += ["", ("x unguarded: median / median of unguarded. x paired: median over repetitions of the ratio to the "
              "unguarded run of the same repetition (robust to slow load drifts on a shared machine). acted: "
              "fraction of requests steered (RAS modes) or flagged by the self-judge (ecso).")]
    if any(r["mode"] == "ras_guard" for r in records):
        lines += _summary_markdown(summary(records))
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; see the module docstring."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.workdir = args.workdir or _models.scratch_dir()
    guard, label = _models.load(args, args.workdir)
    g = Guards.of(guard)
    multimodal = guard.backend.is_multimodal
    if args.memory_worker:
        print(_MEM_TAG + json.dumps(memory_worker(g, args, multimodal)), flush=True)
        return 0
    if args.calibration is None:
        args.calibration = str(args.workdir / "calibration")
        guard.calibration.save(args.calibration)  # type: ignore[union-attr]
    from ras_guard.backends.hf._kv import prefix_support

    print(f"{label}: modes {', '.join(args.modes)}", flush=True)
    records = time_modes(g, args, multimodal)
    method = "not measured" if args.memory == "off" else measure_memory(args, argv, records)
    meta = {
        "model": label, "device": str(guard.backend.device), "torch": torch.__version__,
        "transformers": __import__("transformers").__version__, "python": platform.python_version(),
        "threads": torch.get_num_threads(), "repeats": args.repeats, "memory_method": method,
        "prefix_path": prefix_support(guard.backend) or "used", "date": dt.datetime.now(dt.timezone.utc).isoformat(),
        "required_modes": list(REQUIRED), "caption_max_new_tokens": guard.config.caption_max_new_tokens,
    }
    table = markdown(meta, records)
    print(table)
    if args.json:
        payload = {"meta": meta, "records": records, "summary": summary(records)}
        args.json.write_text(json.dumps(payload, indent=1) + "\n")
    if args.markdown:
        args.markdown.write_text(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
