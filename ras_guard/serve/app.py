"""The FastAPI app of ``ras-guard serve``: OpenAI-compatible chat completions behind the guard.

Image parts are handled by :mod:`.images` (in a worker thread: URLs are fetched there, only with
``ServeSettings.allow_image_urls``); every image failure answers HTTP 400 (as OpenAI's API does for image URLs
it cannot download) with the code of :func:`.images.error_code`.

Example:
    >>> from ras_guard import RASGuard
    >>> app = create_app(RASGuard.from_pretrained("demo"), ServeSettings(model_name="demo"))  # doctest: +SKIP
    >>> import uvicorn; uvicorn.run(app, host="127.0.0.1", port=8000)  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import inspect
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import (
    GenerationError,
    InvalidMessageError,
    RASGuardError,
    ResponseFormatError,
    ServerOverloadedError,
    ToolCallingNotSupportedError,
    UnsupportedRequestError,
)
from .convert import GuardCall, ras_object, to_call
from .engine import HFEngine, Job
from .images import error_code as image_error_code
from .images import url_fetcher
from .metrics import CONTENT_TYPE, Metrics
from .responses import Answer, HTTPError, error_body, sse
from .schemas import ChatCompletionRequest

__all__ = ["ServeSettings", "create_app"]

_log = logging.getLogger("ras_guard.serve")
_POLICIES = ("steer", "block", "monitor")


@dataclass(frozen=True)
class ServeSettings:
    """Options of the server (see ``ras-guard serve -h``).

    ``allow_image_urls`` turns on fetching of http(s) image URLs (off: they answer 400);
    ``allowed_image_hosts`` exempts hosts from the internal-address check (``host``, ``host:PORT``,
    ``*.suffix``, IP literals, CIDR networks; see :mod:`ras_guard.fetch.allow`); ``image_timeout_s`` bounds one
    image's whole download. ``max_batch`` / ``batch_window_s`` shape the HF engine's batches; ``max_running`` is
    the vLLM engine's limit of requests inside ``AsyncLLM`` at once; ``max_queue`` bounds the requests in flight
    of either.
    """

    model_name: str = "demo"
    api_key: str | None = None
    policy: str = "steer"
    block_threshold: float = 0.5
    refusal_message: str = "I can't help with that request."
    expose_visual_context: bool = False
    default_max_tokens: int = 256
    max_tokens_limit: int = 4096
    max_body_bytes: int = 32 * 1024 * 1024
    max_image_bytes: int = 20 * 1024 * 1024
    max_images: int = 8
    max_queue: int = 64
    max_batch: int = 8
    max_running: int = 32
    batch_window_s: float = 0.005
    request_timeout_s: float = 600.0
    retry_after_s: int = 1
    allow_image_urls: bool = False
    allowed_image_hosts: tuple[str, ...] = ()
    image_timeout_s: float = 10.0


def _validation_message(exc: ValidationError) -> tuple[str, str | None]:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    if err["type"] == "extra_forbidden":
        return f"unknown field {loc!r}; remove it (see the OpenAI chat completions API).", loc
    return f"{loc or 'body'}: {err['msg']}", loc or None


def _status_of(exc: RASGuardError) -> tuple[int, str, str]:
    if (code := image_error_code(exc)) is not None:
        return 400, "invalid_request_error", code
    if isinstance(exc, ResponseFormatError):
        return 400, "invalid_request_error", "invalid_response_format"
    if isinstance(exc, UnsupportedRequestError | ToolCallingNotSupportedError):
        return 400, "invalid_request_error", "unsupported"
    if isinstance(exc, InvalidMessageError):
        return 400, "invalid_request_error", "invalid_request"
    if isinstance(exc, ServerOverloadedError):
        return 429, "rate_limit_error", "overloaded"
    return 500, "server_error", "generation_failed" if isinstance(exc, GenerationError) else "internal"


def _engine_for(guard: Any, metrics: Metrics, s: ServeSettings) -> Any:
    """An :class:`HFEngine` for a transformers guard, a :class:`VLLMServeEngine` for an async vLLM guard."""
    if inspect.iscoroutinefunction(getattr(guard, "astream", None)):
        from .vllm_engine import VLLMServeEngine

        return VLLMServeEngine(guard, metrics, max_queue=s.max_queue, max_running=s.max_running)
    return HFEngine(guard, metrics, max_queue=s.max_queue, max_batch=s.max_batch, batch_window_s=s.batch_window_s)


def create_app(guard: Any, settings: ServeSettings | None = None, *, engine: Any = None) -> FastAPI:
    """Build the app around a loaded guard (the engine's worker starts with the app and stops with it).

    Args:
        guard: A :class:`ras_guard.RASGuard` (HF engine) or a
            :class:`ras_guard.backends.vllm.AsyncVLLMGuard` (vLLM engine).
        settings: Server options.
        engine: A ready engine (default: :class:`HFEngine` or :class:`~.vllm_engine.VLLMServeEngine` by the
            guard's kind); both take :class:`~.engine.Job` objects and answer with the same events.

    Raises:
        InvalidMessageError: An unknown policy or a block threshold outside [0, 1].
    """
    s = settings or ServeSettings()
    if s.policy not in _POLICIES:
        raise InvalidMessageError(f"unknown policy {s.policy!r}; use one of {_POLICIES}.")
    if not 0.0 <= s.block_threshold <= 1.0:
        raise InvalidMessageError(f"block_threshold {s.block_threshold} must lie in [0, 1].")
    fetch = url_fetcher(allow=s.allow_image_urls, allowed_hosts=s.allowed_image_hosts, max_bytes=s.max_image_bytes,
                        timeout=s.image_timeout_s)
    metrics = engine.metrics if engine is not None else Metrics()
    eng = engine or _engine_for(guard, metrics, s)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        eng.start()
        try:
            yield
        finally:
            await asyncio.to_thread(eng.stop)

    app = FastAPI(title="ras-guard", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.engine, app.state.metrics, app.state.settings = eng, metrics, s

    def _error(status: int, message: str, type: str, code: str | None, param: str | None = None,
               headers: dict[str, str] | None = None) -> JSONResponse:
        metrics.requests.labels(endpoint="chat", status=str(status)).inc()
        return JSONResponse(error_body(message, type=type, code=code, param=param), status_code=status,
                            headers=headers)

    @app.exception_handler(HTTPError)
    async def _http_error(_r: Request, exc: HTTPError) -> JSONResponse:
        return _error(exc.status, exc.message, exc.type, exc.code, exc.param, exc.headers)

    @app.exception_handler(RASGuardError)
    async def _guard_error(_r: Request, exc: RASGuardError) -> JSONResponse:
        status, kind, code = _status_of(exc)
        if status >= 500:
            _log.error("request failed: %s: %s", exc.__class__.__name__, exc)
            return _error(status, "the model failed to answer this request; see the server log.", kind, code)
        headers = {"Retry-After": str(s.retry_after_s)} if status == 429 else None
        param = "response_format" if isinstance(exc, ResponseFormatError) else None
        return _error(status, str(exc), kind, code, param, headers=headers)

    @app.exception_handler(StarletteHTTPException)
    async def _starlette_error(_r: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail), "invalid_request_error", "not_found"
                      if exc.status_code == 404 else None)

    @app.exception_handler(Exception)
    async def _unexpected(_r: Request, exc: Exception) -> JSONResponse:
        _log.error("unexpected server error: %s", exc.__class__.__name__, exc_info=exc)
        return _error(500, "internal server error; see the server log.", "server_error", "internal")

    def _auth(request: Request) -> None:
        if s.api_key is None:
            return
        given = request.headers.get("authorization", "")
        token = given[7:] if given[:7].lower() == "bearer " else ""
        if not hmac.compare_digest(token.encode(), s.api_key.encode()):
            raise HTTPError(401, "invalid or missing API key; send 'Authorization: Bearer <key>'.",
                            code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})

    async def _body(request: Request) -> Any:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > s.max_body_bytes:
            raise HTTPError(413, f"request body of {declared} bytes exceeds {s.max_body_bytes} bytes.",
                            code="body_too_large")
        buf = bytearray()
        async for part in request.stream():
            buf += part
            if len(buf) > s.max_body_bytes:
                raise HTTPError(413, f"request body exceeds {s.max_body_bytes} bytes.", code="body_too_large")
        try:
            return json.loads(buf)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise HTTPError(400, f"the body is not valid JSON ({exc}).", code="invalid_json") from None

    def _convert(req: ChatCompletionRequest, deadline: float) -> GuardCall:
        fetcher = None if fetch is None else (lambda url: fetch(url, deadline))
        call = to_call(req, default_max_tokens=s.default_max_tokens, max_tokens_limit=s.max_tokens_limit,
                       fetcher=fetcher, max_image_bytes=s.max_image_bytes, max_images=s.max_images)
        guard.normalize(call.messages)  # bad messages and images answer 400 before queueing
        return call

    async def _event(job: Job, request: Request | None, deadline: float) -> tuple[Any, ...]:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                job.cancelled.set()
                metrics.rejected.labels(reason="timeout").inc()
                raise HTTPError(503, "the request timed out in the server's queue; retry later.",
                                type="server_error", code="timeout", headers={"Retry-After": str(s.retry_after_s)})
            try:
                event = await asyncio.wait_for(job.events.get(), timeout=min(0.2, left))
            except TimeoutError:
                if request is not None and await request.is_disconnected():
                    job.cancelled.set()
                    raise HTTPError(499, "client disconnected", code="client_closed") from None
                continue
            if event[0] == "error":
                raise event[1]
            return event

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        _auth(request)
        deadline = time.monotonic() + s.request_timeout_s
        try:
            req = ChatCompletionRequest.model_validate(await _body(request))
        except ValidationError as exc:
            msg, param = _validation_message(exc)
            raise HTTPError(400, msg, code="invalid_request", param=param) from None
        if req.model != s.model_name:
            raise HTTPError(404, f"model {req.model!r} is not served here; use {s.model_name!r}.",
                            code="model_not_found", param="model")
        call: GuardCall = await asyncio.to_thread(_convert, req, deadline)  # image URLs are fetched here
        if call.tools and not eng.supports_tools:
            raise ToolCallingNotSupportedError(
                "this server does not render tools (the model's chat template has none, or --engine vllm); drop 'tools'."
            )
        opts = req.ras
        policy = (opts.policy if opts and opts.policy else None) or s.policy
        threshold = opts.block_threshold if opts and opts.block_threshold is not None else s.block_threshold
        job = Job(call, policy, threshold, bool(req.stream), asyncio.get_running_loop())
        eng.submit(job)
        try:
            _, a, decision = await _event(job, request, deadline)
        except BaseException:
            job.cancelled.set()
            raise
        ras = ras_object(a, decision, policy=policy, visual_context=s.expose_visual_context)
        ans = Answer(call, s.model_name, s.refusal_message, ras)
        if not req.stream:
            try:
                _, gen = await _event(job, request, deadline)
            finally:
                job.cancelled.set()
            metrics.requests.labels(endpoint="chat", status="200").inc()
            return JSONResponse(ans.completion(gen), headers=ans.headers())
        include_usage = bool(req.stream_options and req.stream_options.include_usage)

        async def events() -> AsyncIterator[str]:
            streamed = False
            try:
                yield sse(ans.first_chunk())
                while True:
                    try:  # each token must come within the timeout (a long answer is not an error)
                        event = await _event(job, None, time.monotonic() + s.request_timeout_s)
                    except (RASGuardError, HTTPError) as exc:
                        yield sse(error_body(str(exc), type="server_error"))
                        yield sse("[DONE]")
                        return
                    if event[0] == "text":
                        streamed = True
                        yield sse(ans.chunk({"content": event[1]}))
                    else:
                        for line in ans.last_chunks(event[1], streamed, include_usage):
                            yield line
                        return
            finally:
                job.cancelled.set()

        metrics.requests.labels(endpoint="chat", status="200").inc()
        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={**ans.headers(), "Cache-Control": "no-cache"})

    @app.get("/v1/models")
    async def models(request: Request) -> dict[str, Any]:
        _auth(request)
        return {"object": "list", "data": [{"id": s.model_name, "object": "model", "created": 0,
                                            "owned_by": "ras-guard"}]}

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": s.model_name, "queue_depth": eng.depth}

    @app.get("/metrics")
    async def prometheus(request: Request) -> Response:
        _auth(request)
        metrics.queue_depth.set(eng.depth)
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    return app
