"""The vLLM engine of the server: jobs run as coroutines on :class:`~ras_guard.backends.vllm.AsyncVLLMGuard`.

The engine owns one event loop in a worker thread (the loop of the guard's ``AsyncLLM``, whose output handler
is bound to the loop of its first request); :meth:`VLLMServeEngine.submit` schedules a job there and the job's
events travel back to the request's loop exactly as with :class:`~ras_guard.serve.engine.HFEngine`, so the app
has one code path for both engines. ``AsyncLLM`` batches concurrent requests itself: every job is its own
``agenerate`` / ``astream`` call, at most ``max_running`` at once; jobs in flight (waiting or running) are
bounded by ``max_queue`` (more: :class:`ServerOverloadedError`, answered 429 with ``Retry-After``).

Per request: the policy and block threshold (``steer``: one ``agenerate``; ``block`` / ``monitor``: ``aassess``
first, then an answer with the assessment or with risk 0), sampling (OpenAI ``temperature`` / ``top_p`` / ``seed``
as ``vllm.SamplingParams`` fields, a per-request seed), ``min_tokens``, ``max_tokens`` and stop strings (the guard
generates without detokenizing, so stop strings are applied here to the text: the answer is cut where the first
stop string completes, and a stream holds back the few characters that could start one; ``usage`` counts the
tokens generated). ``response_format`` uses vLLM's structured outputs and fails closed like the HF engine: a
request whose risk would steer it is not generated (``finish_reason="refusal"``). A job cancelled by a
disconnecting client is cancelled in the engine (vLLM aborts the request). ``tools`` are not supported (the
vLLM guard flattens text-only prompts): the app answers 400.

Example:
    >>> guard = AsyncVLLMGuard.from_pretrained("/models/llava", "cal/llava")  # doctest: +SKIP
    >>> engine = VLLMServeEngine(guard)  # doctest: +SKIP
    >>> engine.start(); engine.call(guard.aassess(messages)).risk  # doctest: +SKIP
    0.97
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

from ..errors import InvalidMessageError, ResponseFormatError, ServerOverloadedError
from ..types import Decision, GuardedGeneration, RiskAssessment, guarded_generation
from .convert import GuardCall
from .engine import Job, job_decision
from .metrics import Metrics

__all__ = ["StopCutter", "VLLMServeEngine", "cut_at_stop", "vllm_sampling"]

_log = logging.getLogger("ras_guard.serve")
T = TypeVar("T")
_REFUSAL = "refusal"  # ras_guard.constrained.REFUSAL, without importing transformers here
_POLL_S = 0.05


def vllm_sampling(call: GuardCall) -> dict[str, Any]:
    """A request's sampling as ``vllm.SamplingParams`` fields (greedy when nothing is said).

    Example:
        >>> from ras_guard.sampling import sampling_kwargs
        >>> vllm_sampling(GuardCall([], 8, generation_kwargs=sampling_kwargs(0.7, 0.9), seed=3))
        {'temperature': 0.7, 'top_p': 0.9, 'seed': 3}

    Raises:
        InvalidMessageError: A generation argument this engine has no equivalent for.
    """
    gen = dict(call.generation_kwargs)
    out: dict[str, Any] = {}
    do_sample = gen.pop("do_sample", None)
    temperature, top_p, top_k = gen.pop("temperature", None), gen.pop("top_p", None), gen.pop("top_k", None)
    if do_sample:
        out["temperature"] = 1.0 if temperature is None else float(temperature)
        if top_p is not None:
            out["top_p"] = float(top_p)
        if top_k is not None:
            out["top_k"] = int(top_k)
    elif do_sample is False:
        out["temperature"] = 0.0
    if (min_new := gen.pop("min_new_tokens", None)) is not None:
        out["min_tokens"] = int(min_new)
    if gen:
        raise InvalidMessageError(f"--engine vllm cannot honour {sorted(gen)}; leave them out.")
    if call.seed is not None:
        out["seed"] = int(call.seed)
    return out


def _vllm_client_error(exc: BaseException) -> bool:
    """Whether vLLM blamed the request (``vllm.exceptions.VLLMClientError``), without importing vLLM here."""
    return any(c.__name__ == "VLLMClientError" and c.__module__.startswith("vllm") for c in type(exc).__mro__)


def _first_stop(text: str, stops: Sequence[str]) -> int | None:
    """Start of the stop string that completes first in ``text`` (smallest end), or None."""
    best: tuple[int, int] | None = None
    for s in stops:
        i = text.find(s)
        if i >= 0 and (best is None or i + len(s) < best[0]):
            best = (i + len(s), i)
    return None if best is None else best[1]


def cut_at_stop(gen: GuardedGeneration, stops: Sequence[str]) -> GuardedGeneration:
    """The answer cut where its first stop string completes (``finish_reason="stop"``); unchanged without one.

    Example:
        >>> a = RiskAssessment(risk=0.0, similarity=0.1, visual_context="", reformulated_prompt="")
        >>> g = guarded_generation("one two three", [1, 2, 3], a, steered=False, prompt_tokens=2, finish_reason="length")
        >>> cut = cut_at_stop(g, ["two"]); cut.text, cut.finish_reason
        ('one ', 'stop')
    """
    at = _first_stop(gen.text, stops) if stops else None
    return gen if at is None else dataclasses.replace(gen, text=gen.text[:at], finish_reason="stop")


class StopCutter:
    """Streamed pieces to the pieces a client may see: nothing past the first stop string, whose first
    characters are held back until they cannot start one; the pieces join to :func:`cut_at_stop`'s text.

    Example:
        >>> c = StopCutter(["END"]); [c.feed(p) for p in ["ab", "cE", "N", "Dx"]], c.hit
        (['', 'ab', 'c', ''], True)
    """

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops, self.text, self.sent, self.hit = tuple(s for s in stops if s), "", 0, False
        self._hold = max((len(s) for s in self.stops), default=1) - 1

    def feed(self, piece: str) -> str:
        """Take one piece; return what can be sent now."""
        if self.hit:
            return ""
        self.text += piece
        at = _first_stop(self.text, self.stops) if self.stops else None
        if at is not None:
            self.hit = True
            return self._send(at)
        return self._send(max(self.sent, len(self.text) - self._hold))

    def flush(self) -> str:
        """The held-back rest, once the answer is complete."""
        return "" if self.hit else self._send(len(self.text))

    def _send(self, upto: int) -> str:
        out, self.sent = self.text[self.sent : upto], max(self.sent, upto)
        return out


class VLLMServeEngine:
    """Runs the server's jobs on an :class:`~ras_guard.backends.vllm.AsyncVLLMGuard` (see the module docstring).

    Args:
        guard: The async vLLM guard (its ``AsyncLLM`` must not have served requests on another event loop).
        metrics: Where to count requests, decisions and timings.
        max_queue: Jobs in flight (waiting or running) at most; more are refused.
        max_running: Jobs inside the guard at once at most (the rest wait, within the request timeout).
    """

    supports_tools = False

    def __init__(self, guard: Any, metrics: Metrics | None = None, *, max_queue: int = 64, max_running: int = 32):
        if max_queue < 1 or max_running < 1:
            raise InvalidMessageError(f"max_queue={max_queue} and max_running={max_running} must be >= 1.")
        self.guard, self.metrics = guard, metrics or Metrics()
        self.max_queue, self.max_running = max_queue, max_running
        self._lock = threading.Lock()
        self._inflight = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._slots: asyncio.Semaphore | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Start the engine's event loop thread (idempotent)."""
        if self._thread is not None:
            return
        ready = threading.Event()
        loop = asyncio.new_event_loop()

        def run() -> None:
            asyncio.set_event_loop(loop)
            self._slots = asyncio.Semaphore(self.max_running)
            loop.call_soon(ready.set)
            loop.run_forever()

        self._loop = loop
        self._thread = threading.Thread(target=run, name="ras-guard-vllm-engine", daemon=True)
        self._thread.start()
        ready.wait()

    def stop(self, timeout: float = 30.0) -> None:
        """Cancel what runs (the guard's output handler included) and stop the loop; the guard is then spent."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return

        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        try:
            asyncio.run_coroutine_threadsafe(cancel_all(), loop).result(timeout)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)
            loop.close()
            self._loop = self._thread = None

    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run a coroutine on the engine's loop and wait for it (tests and benchmarks use the guard this way)."""
        if self._loop is None:
            coro.close()
            raise RuntimeError("the engine is not started; call start() first.")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    @property
    def depth(self) -> int:
        """Jobs waiting or running."""
        return self._inflight

    def submit(self, job: Job) -> None:
        """Schedule a job on the engine's loop.

        Raises:
            ServerOverloadedError: ``max_queue`` jobs are in flight.
        """
        if self._loop is None:
            raise RuntimeError("the engine is not started; call start() first.")
        with self._lock:
            if self._inflight >= self.max_queue:
                self.metrics.rejected.labels(reason="queue_full").inc()
                raise ServerOverloadedError(
                    f"the server has {self._inflight} requests in flight (its limit); retry in a moment."
                )
            self._inflight += 1
        self.metrics.queue_depth.set(self.depth)
        asyncio.run_coroutine_threadsafe(self._run(job), self._loop)

    # ------------------------------------------------------------------ jobs
    async def _run(self, job: Job) -> None:
        try:
            assert self._slots is not None
            async with self._slots:
                if job.cancelled.is_set():
                    self.metrics.cancelled.labels(stage="queued").inc()
                    return
                self.metrics.batch_size.observe(1)
                await self._until_cancelled(job, self._answer(job))
        except Exception as exc:  # noqa: BLE001 - reported to the waiting request
            if _vllm_client_error(exc):  # the request's fault: a 400, not a 500
                exc = InvalidMessageError(f"the vLLM engine refused the request: {exc}")
            elif not isinstance(exc, InvalidMessageError):
                _log.exception("vLLM engine failure")
            job.emit("error", exc)
        finally:
            with self._lock:
                self._inflight -= 1
            self.metrics.queue_depth.set(self.depth)

    async def _until_cancelled(self, job: Job, coro: Coroutine[Any, Any, None]) -> None:
        """Run a job's coroutine; cancel it (vLLM aborts its requests) once the client is gone."""
        task = asyncio.ensure_future(coro)
        while not task.done():
            await asyncio.wait([task], timeout=_POLL_S)
            if job.cancelled.is_set() and not task.done():
                task.cancel()
                self.metrics.cancelled.labels(stage="generating").inc()
                await asyncio.gather(task, return_exceptions=True)
                return
        task.result()

    def _deliver(self, job: Job, a: RiskAssessment, gen: GuardedGeneration | None) -> None:
        decision = job_decision(job, a, self.guard.config.risk_floor, None if gen is None else gen.steered)
        self.metrics.observe(a, decision, gen)
        job.emit("ras", a, decision)
        job.emit("done", gen)

    async def _assess_first(self, job: Job) -> tuple[RiskAssessment, dict[str, Any]] | None:
        """``block`` / ``monitor``: the assessment and how to answer; None when the job was answered (blocked)."""
        a = await self.guard.aassess(job.call.messages)
        if job_decision(job, a, self.guard.config.risk_floor, None) is Decision.BLOCKED:
            self._deliver(job, a, None)
            return None
        return a, ({"risk": 0.0} if job.policy == "monitor" else {"assessment": a})

    async def _answer(self, job: Job) -> None:
        call, g = job.call, self.guard
        kwargs: dict[str, Any] = {"max_new_tokens": call.max_new_tokens, **vllm_sampling(call)}
        if call.response_format is not None:
            await self._structured(job, kwargs)
            return
        a: RiskAssessment | None = None
        extra: dict[str, Any] = {}
        if job.policy != "steer":
            first = await self._assess_first(job)
            if first is None:
                return
            a, extra = first
        if job.streaming:
            await self._stream(job, a, {**extra, **kwargs})
            return
        gen = cut_at_stop(await g.agenerate(call.messages, **extra, **kwargs), call.stop)
        self._deliver(job, a or gen.assessment, gen)

    async def _stream(self, job: Job, a: RiskAssessment | None, kwargs: dict[str, Any]) -> None:
        stream = await self.guard.astream(job.call.messages, **kwargs)
        a = a or stream.assessment
        decision = job_decision(job, a, self.guard.config.risk_floor, stream.steered)
        job.emit("ras", a, decision)
        cutter = StopCutter(job.call.stop)
        async with stream:
            async for piece in stream:  # after a stop string, drain quietly so usage counts what was generated
                if job.cancelled.is_set():
                    self.metrics.cancelled.labels(stage="generating").inc()
                    return
                if out := cutter.feed(piece):
                    job.emit("text", out)
        if out := cutter.flush():
            job.emit("text", out)
        gen = stream.result
        if gen is None:
            raise RuntimeError("the vLLM stream ended without a result")
        gen = cut_at_stop(gen, job.call.stop)
        self.metrics.observe(a, decision, gen)
        job.emit("done", gen)

    async def _structured(self, job: Job, kwargs: dict[str, Any]) -> None:
        """``response_format`` through vLLM's structured outputs; fail closed where steering would apply."""
        from vllm.sampling_params import StructuredOutputsParams  # the one vLLM import above backends/

        from ..constrained import parse_response_format

        spec = parse_response_format(job.call.response_format)
        g, floor = self.guard, self.guard.config.risk_floor
        a = await g.aassess(job.call.messages)
        decision = job_decision(job, a, floor, None)
        if decision is Decision.BLOCKED:
            self._deliver(job, a, None)
            return
        if decision is Decision.STEERED:  # a grammar would mask the steered tokens: refuse instead
            self._deliver(job, a, guarded_generation("", [], a, steered=True, prompt_tokens=0,
                                                     finish_reason=_REFUSAL))
            return
        so = StructuredOutputsParams(json_object=True) if spec.kind == "json_object" else (
            StructuredOutputsParams(json=spec.schema))
        try:
            gen = await g.agenerate(job.call.messages, risk=0.0, structured_outputs=so, **kwargs)
        except Exception as exc:  # vLLM validates the grammar when the request is added
            if not (isinstance(exc, ValueError) or _vllm_client_error(exc)):
                raise
            raise ResponseFormatError(f"cannot compile the response_format schema: {exc}") from exc
        gen = dataclasses.replace(gen, assessment=a)
        if job.streaming:
            job.emit("ras", a, job_decision(job, a, floor, gen.steered))
            if gen.text:
                job.emit("text", gen.text)
            self.metrics.observe(a, job_decision(job, a, floor, gen.steered), gen)
            job.emit("done", gen)
            return
        self._deliver(job, a, gen)
