"""``ras-guard serve``: an OpenAI-compatible guarded endpoint (needs the ``serve`` extra)."""

from __future__ import annotations

import argparse
import os
import sys


def add_parser(sub: argparse._SubParsersAction) -> None:
    from ._common import add_model_args

    p = sub.add_parser(
        "serve", help="an OpenAI-compatible HTTP endpoint behind the guard",
        description="Serve POST /v1/chat/completions, GET /v1/models, /health and /metrics with every answer "
        "guarded. Binds 127.0.0.1 unless --host says otherwise.",
    )
    add_model_args(p)
    p.add_argument("--engine", choices=["hf", "vllm"], default="hf", help="inference engine (default hf)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    p.add_argument("--api-key", default=None,
                   help="require 'Authorization: Bearer KEY' (default: $RAS_GUARD_API_KEY, else no key)")
    p.add_argument("--policy", choices=["steer", "block", "monitor"], default="steer",
                   help="default policy; a request may override it with {'ras': {'policy': ...}}")
    p.add_argument("--block-threshold", type=float, default=0.5, help="risk at which 'block' refuses (0.5)")
    p.add_argument("--served-model-name", default=None, help="model id clients send (default: 'demo' or the "
                   "checkpoint folder's name)")
    p.add_argument("--max-queue", type=int, default=64, help="requests waiting at most; more get 429 (64)")
    p.add_argument("--max-batch", type=int, default=8, help="requests per batched generate call (8)")
    p.add_argument("--batch-window-ms", type=float, default=5.0, help="wait for more requests to batch (5 ms)")
    p.add_argument("--max-running", type=int, default=32,
                   help="--engine vllm: requests inside the engine at once; the rest wait in the queue (32)")
    p.add_argument("--tensor-parallel-size", type=int, default=None,
                   help="--engine vllm: GPUs one model is split over (vLLM tensor parallelism; default 1)")
    p.add_argument("--max-tokens-limit", type=int, default=4096, help="largest max_tokens accepted (4096)")
    p.add_argument("--max-body-mb", type=float, default=32.0, help="largest request body in MiB (32)")
    p.add_argument("--max-image-mb", type=float, default=20.0, help="largest image (data URI or URL) in MiB (20)")
    p.add_argument("--allow-image-urls", action="store_true",
                   help="fetch http(s) image URLs (SSRF-safe: internal addresses refused, every redirect "
                   "re-checked); off by default: URL parts answer 400")
    p.add_argument("--allowed-image-hosts", action="append", default=[], metavar="HOSTS",
                   help="comma-separated hosts exempt from the internal-address check: host, host:PORT, "
                   "*.suffix, IP, CIDR (e.g. 'images.internal,10.0.0.0/8'); repeatable")
    p.add_argument("--image-timeout", type=float, default=10.0,
                   help="seconds for one image URL: DNS, connect, headers, redirects and body (10)")
    p.add_argument("--expose-visual-context", action="store_true",
                   help="include the image's visual context in the 'ras' object of responses")
    p.set_defaults(func=run)


def _settings(args: argparse.Namespace) -> object:
    from pathlib import Path

    from ..serve import ServeSettings

    name = args.served_model_name or ("demo" if args.model == "demo" else Path(args.model).name)
    return ServeSettings(
        model_name=name, api_key=args.api_key or os.environ.get("RAS_GUARD_API_KEY") or None,
        policy=args.policy, block_threshold=args.block_threshold, max_queue=args.max_queue,
        max_batch=args.max_batch, batch_window_s=args.batch_window_ms / 1000.0, max_running=args.max_running,
        max_tokens_limit=args.max_tokens_limit, max_body_bytes=int(args.max_body_mb * 1024 * 1024),
        expose_visual_context=args.expose_visual_context, max_image_bytes=int(args.max_image_mb * 1024 * 1024),
        allow_image_urls=args.allow_image_urls, image_timeout_s=args.image_timeout,
        allowed_image_hosts=tuple(h.strip() for arg in args.allowed_image_hosts for h in arg.split(",") if h.strip()),
    )


def run(args: argparse.Namespace) -> int:
    from ..errors import InvalidMessageError
    from ._common import quiet_transformers

    if not 0.0 <= args.block_threshold <= 1.0:
        raise InvalidMessageError(f"--block-threshold {args.block_threshold} must lie in [0, 1].")
    try:
        import uvicorn

        from ..serve import create_app, load_engine_guard
    except ImportError as exc:
        raise InvalidMessageError(f"ras-guard serve needs the 'serve' extra ({exc}); pip install 'ras-guard[serve]'.")
    settings = _settings(args)
    if args.host not in ("127.0.0.1", "localhost", "::1") and not settings.api_key:  # type: ignore[attr-defined]
        print(f"ras-guard: warning: binding {args.host} without --api-key: anyone who can reach this port can "
              "use the model", file=sys.stderr)
    quiet_transformers()
    extra = {}
    if args.tensor_parallel_size is not None:
        if args.engine != "vllm":
            raise InvalidMessageError("--tensor-parallel-size applies to --engine vllm only; drop it or add that.")
        extra["tensor_parallel_size"] = args.tensor_parallel_size
    guard = load_engine_guard(args.engine, args.model, args.calibration, device=args.device, dtype=args.dtype,
                              **extra)
    app = create_app(guard, settings)  # type: ignore[arg-type]
    print(f"ras-guard: serving {settings.model_name!r} on http://{args.host}:{args.port}/v1 "  # type: ignore[attr-defined]
          f"(engine {args.engine}, policy {args.policy}{', API key required' if settings.api_key else ''})",  # type: ignore[attr-defined]
          file=sys.stderr)
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level="info", access_log=True)
    finally:
        if hasattr(guard, "shutdown"):
            guard.shutdown()
    return 0
