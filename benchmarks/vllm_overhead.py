"""What guarding costs on vLLM: the same engine guarded (VLLMGuard) and unguarded, as ratios.

For each input kind (benign, harmful) and each number of concurrent requests (default 1, 8, 32), one batch of
requests is answered with exactly ``--max-tokens`` new tokens (``ignore_eos``): unguarded (the engine alone)
and guarded (caption, risk and steered answer passes). Runs are interleaved per repetition. Requests of a batch
are submitted together to the offline ``vllm.LLM`` (continuous batching inside the engine), so each request's
latency is the batch's wall time; p50 / p90 are over repetitions. Reported: tokens/s, p50 / p90 latency, the
guarded/unguarded throughput ratio, and where the guarded time goes (caption, risk, answer). ``--compare-hf``
adds the transformers guard on the same weights at the largest concurrency.

Run it in the vLLM environment, with the repository on the path::

    PYTHONPATH=. .venv-vllm/bin/python -m benchmarks.vllm_overhead --random-arch llava-1.5-7b --scale tiny
    PYTHONPATH=. python -m benchmarks.vllm_overhead --random-arch llava-1.5-7b --dtype bfloat16   # a GPU
    PYTHONPATH=. python -m benchmarks.vllm_overhead --model /models/llava-1.5-7b-hf --calibration cal/llava

``--random-arch`` builds the published configuration with random weights (``--scale tiny`` shrinks widths and
depths, keeping the 576-token image geometry, with vLLM-CPU head size 32), saves it in the llava-hf layout, fits
the benchmark's quick calibration with the transformers guard and frees it before vLLM starts.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("VLLM_HOST_IP", "127.0.0.1")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="local checkpoint folder (needs --calibration)")
    src.add_argument("--random-arch", choices=["llava-1.5-7b", "llava-1.5-13b", "demo-sized"])
    p.add_argument("--calibration", help="calibration folder of --model")
    p.add_argument("--scale", choices=["full", "tiny"], default="full")
    p.add_argument(
        "--dtype", default=None, help="float32 / bfloat16 (default: bfloat16 on GPU, float32 on CPU)"
    )
    p.add_argument("--concurrency", default="1,8,32", help="comma-separated numbers of concurrent requests")
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--max-model-len", type=int, default=2048)
    p.add_argument("--engine-args", default="{}", help="JSON of extra vllm.LLM arguments")
    p.add_argument("--compare-hf", action="store_true", help="also time the transformers guard")
    p.add_argument("--json", type=Path, help="write the records here")
    p.add_argument("--workdir", type=Path, default=None)
    args = p.parse_args(argv)
    if args.model and not args.calibration:
        p.error("--model needs --calibration")
    return args


def _random_checkpoint(args: argparse.Namespace, workdir: Path) -> tuple[Path, Path]:
    """Save a random-weight published architecture for vLLM and fit the quick calibration on it."""
    import torch

    from benchmarks import _models
    from ras_guard import RASGuard
    from ras_guard.testing.vllm import save_llava_for_vllm

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = getattr(torch, args.dtype or ("bfloat16" if device.type == "cuda" else "float32"))
    backend = _models.random_model(args.random_arch, args.scale, device, dtype, workdir)
    if args.scale == "tiny":  # vLLM's CPU attention backend takes head size 32, not the tiny scale's 16
        from transformers import AutoModelForImageTextToText

        from ras_guard.backends.hf import HFBackend

        config = backend.model.config
        config.get_text_config().update({"num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 32})
        torch.manual_seed(0)
        with torch.device(device):
            model = AutoModelForImageTextToText.from_config(config, dtype=dtype)
        model.generation_config = backend.model.generation_config
        backend = HFBackend(model.eval(), backend.processor)
    folder = workdir / f"{args.random_arch}-{args.scale}"
    backend.model.save_pretrained(folder)
    backend.processor.save_pretrained(folder)
    save_llava_for_vllm(backend.model, folder)
    cal = _models.quick_calibration(RASGuard(backend))
    cal.save(workdir / "calibration")
    del backend
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return folder, workdir / "calibration"


def _time(fn: Any) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    import tempfile

    from benchmarks import _models
    from ras_guard.backends.vllm import VLLMGuard

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="ras-vllm-bench-"))
    path, cal = (
        (Path(args.model), Path(args.calibration)) if args.model else _random_checkpoint(args, workdir)
    )
    levels = [int(x) for x in args.concurrency.split(",")]
    engine_args = {
        "max_model_len": args.max_model_len,
        "max_num_seqs": max(levels),
        **json.loads(args.engine_args),
    }
    if args.dtype:
        engine_args["dtype"] = args.dtype
    from ras_guard import Calibration

    config = Calibration.load(cal).config(caption_cache_size=0)  # every repetition pays for its captions
    guard = VLLMGuard.from_pretrained(path, cal, config=config, **engine_args)
    mm = guard.engine.is_multimodal
    n = args.max_tokens
    records = []
    for kind in ("benign", "harmful"):
        for c in levels:
            batch = _models.inputs(kind, c, mm)
            convs = [guard.normalize(m).as_list() for m in batch]

            def plain() -> Any:
                return guard.engine.complete(convs, max_tokens=n, ignore_eos=True)

            def guarded() -> Any:
                return guard.generate_batch(batch, max_new_tokens=n, ignore_eos=True)

            plain(), guarded()  # warm-up
            times: dict[str, list[float]] = {"unguarded": [], "guarded": []}
            stages: dict[str, list[float]] = {"caption": [], "risk": [], "answer": []}
            steered = 0
            for _ in range(args.repeats):
                times["unguarded"].append(_time(plain)[0])
                wall, outs = _time(guarded)
                times["guarded"].append(wall)
                t = outs[0].timings
                for key in stages:
                    stages[key].append(t.get(f"assess_{key}", t.get(key, 0.0)))
                steered = sum(o.steered for o in outs)
            for mode, ts in times.items():
                records.append(
                    {
                        "mode": mode,
                        "input_kind": kind,
                        "concurrency": c,
                        "max_tokens": n,
                        "p50_s": statistics.median(ts),
                        "p90_s": sorted(ts)[min(len(ts) - 1, int(0.9 * len(ts)))],
                        "tokens_per_s": c * n / statistics.median(ts),
                        **(
                            {
                                "steered": steered,
                                **{f"{k}_s": statistics.median(v) for k, v in stages.items()},
                            }
                            if mode == "guarded"
                            else {}
                        ),
                    }
                )
            g, u = records[-1], records[-2]
            g["throughput_ratio_to_unguarded"] = g["tokens_per_s"] / u["tokens_per_s"]
            print(
                f"{kind:8s} c={c:3d}  unguarded {u['tokens_per_s']:8.1f} tok/s  guarded {g['tokens_per_s']:8.1f} "
                f"tok/s  ratio {g['throughput_ratio_to_unguarded']:.2f}  caption {g['caption_s']:.3f}s "
                f"risk {g['risk_s']:.3f}s answer {g['answer_s']:.3f}s  steered {steered}/{c}",
                flush=True,
            )
    if args.compare_hf:
        records += _compare_hf(guard, path, cal, max(levels), n, mm, args)
    return records


def _compare_hf(
    guard: Any, path: Path, cal: Path, c: int, n: int, mm: bool, args: argparse.Namespace
) -> list[dict]:
    from benchmarks import _models
    from ras_guard import RASGuard

    hf = RASGuard.from_pretrained(path, cal, dtype=args.dtype or "float32")
    batch = _models.inputs("benign", c, mm)
    out = []
    for name, fn in (
        ("vllm_guarded", lambda: guard.generate_batch(batch, max_new_tokens=n, ignore_eos=True)),
        ("hf_guarded", lambda: hf.generate_batch(batch, max_new_tokens=n, min_new_tokens=n)),
    ):
        fn()
        ts = [_time(fn)[0] for _ in range(args.repeats)]
        out.append(
            {
                "mode": name,
                "input_kind": "benign",
                "concurrency": c,
                "max_tokens": n,
                "p50_s": statistics.median(ts),
                "tokens_per_s": c * n / statistics.median(ts),
            }
        )
    out[1]["vllm_speedup"] = out[1]["p50_s"] / out[0]["p50_s"]
    print(
        f"benign   c={c:3d}  vLLM guard {out[0]['tokens_per_s']:.1f} tok/s, HF guard {out[1]['tokens_per_s']:.1f} "
        f"tok/s: vLLM {out[1]['vllm_speedup']:.2f}x",
        flush=True,
    )
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    records = run(args)
    if args.json:
        args.json.write_text(
            json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "records": records}, indent=2)
            + "\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
