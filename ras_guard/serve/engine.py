"""The HF engine of the server: one worker thread owns the guard; concurrent requests are batched.

Requests that arrive within ``batch_window_s`` of each other (a sliding window, at most ten windows long) and ask
for the same generation settings run through one :meth:`RASGuard.generate_batch` call; streamed requests run one at a time through :meth:`RASGuard.stream`.
The queue is bounded: :meth:`HFEngine.submit` raises :class:`ServerOverloadedError` when it is full, so callers
answer 429 instead of waiting forever. A cancelled job is skipped if it has not started, and a cancelled stream
stops at its next token.

Only the public guard API is used (assess, assess_batch, generate_batch, stream), so the engine survives a redesign
of the guard's internals.

Example:
    >>> engine = HFEngine(RASGuard.from_pretrained("demo"))  # doctest: +SKIP
    >>> engine.start()  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

from ..errors import RASGuardError, ServerOverloadedError
from ..types import Decision, GuardedGeneration, RiskAssessment, decide_policy
from .convert import GuardCall
from .metrics import Metrics

__all__ = ["HFEngine", "Job", "job_decision"]

_log = logging.getLogger("ras_guard.serve")


@dataclass
class Job:
    """One request on its way through the engine; results come back as events on ``events``.

    Events: ``("ras", assessment, decision)`` first, then ``("text", piece)`` (streams only), then
    ``("done", GuardedGeneration | None)`` (None: blocked), or ``("error", exception)`` at any point.
    """

    call: GuardCall
    policy: str
    block_threshold: float
    streaming: bool
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)

    def emit(self, *event: Any) -> None:
        """Hand an event to the request's event loop (thread-safe; a closed loop is ignored)."""
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, event)
        except RuntimeError:  # the loop is closed: the client is gone
            self.cancelled.set()


def job_decision(job: Job, a: RiskAssessment, risk_floor: float, steered: bool | None) -> Decision:
    """The decision reported for a job: its policy at its threshold, ``answered`` when steering did not apply.

    Args:
        job: The request (policy and block threshold).
        a: Its assessment.
        risk_floor: The guard's risk floor.
        steered: Whether the answer was steered (None: no answer yet).
    """
    d = decide_policy(job.policy, a.risk, block_threshold=job.block_threshold, risk_floor=risk_floor)
    if d is Decision.STEERED and steered is False:
        return Decision.ANSWERED
    return d


class HFEngine:
    """Batching worker over an in-process :class:`~ras_guard.RASGuard`.

    Args:
        guard: The loaded guard (owned by the worker thread from :meth:`start` on).
        metrics: Where to count requests, decisions and timings.
        max_queue: Requests waiting at most; more are refused.
        max_batch: Requests per ``generate_batch`` call at most.
        batch_window_s: How long the worker waits for more requests to join a batch.
    """

    def __init__(
        self, guard: Any, metrics: Metrics | None = None, *, max_queue: int = 64, max_batch: int = 8,
        batch_window_s: float = 0.005,
    ) -> None:
        self.guard = guard
        self.metrics = metrics or Metrics()
        self.max_batch = max_batch
        self.batch_window_s = batch_window_s
        self._q: queue.Queue[Job | None] = queue.Queue(maxsize=max_queue)
        self._held: deque[Job] = deque()
        self._active = 0
        self._thread: threading.Thread | None = None

    @property
    def supports_tools(self) -> bool:
        """Whether the model's chat template renders ``tools``."""
        return bool(self.guard.supports_tools)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Start the worker thread."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="ras-guard-engine", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the worker after the job it is running."""
        if self._thread is not None:
            self._q.put(None)
            self._thread.join(timeout)
            self._thread = None

    @property
    def depth(self) -> int:
        """Requests waiting or running."""
        return self._q.qsize() + len(self._held) + self._active

    def submit(self, job: Job) -> None:
        """Queue a job.

        Raises:
            ServerOverloadedError: The queue is full.
        """
        try:
            self._q.put_nowait(job)
        except queue.Full:
            self.metrics.rejected.labels(reason="queue_full").inc()
            raise ServerOverloadedError(
                f"the server's queue is full ({self._q.maxsize} requests waiting); retry in a moment."
            ) from None
        self.metrics.queue_depth.set(self.depth)

    # ------------------------------------------------------------------ worker
    def _next(self, timeout: float | None) -> Job | None:
        if self._held:
            return self._held.popleft()
        return self._q.get(timeout=timeout) if timeout is not None else self._q.get()

    def _run(self) -> None:
        while True:
            job = self._next(None)
            if job is None:
                return
            batch = [job]
            if not job.streaming:
                # a sliding window: each arrival keeps it open for another window, up to 10 windows in all
                start = time.monotonic()
                deadline = start + self.batch_window_s
                while len(batch) < self.max_batch and (left := deadline - time.monotonic()) > 0:
                    try:
                        nxt = self._q.get(timeout=left)
                    except queue.Empty:
                        break
                    if nxt is None:
                        self._q.put(None)
                        break
                    (self._held if nxt.streaming else batch).append(nxt)  # type: ignore[attr-defined]
                    deadline = min(time.monotonic() + self.batch_window_s, start + 10 * self.batch_window_s)
            live = [j for j in batch if not j.cancelled.is_set()]
            for j in batch:
                if j.cancelled.is_set():
                    self.metrics.cancelled.labels(stage="queued").inc()
            self._active = len(live)
            self.metrics.queue_depth.set(self.depth)
            try:
                if live and live[0].streaming and live[0].call.tools is None:
                    self._run_stream(live[0])
                elif live:
                    self._run_batch(live)
            except BaseException as exc:  # noqa: BLE001 - reported to every waiting request
                _log.exception("engine failure")
                for j in live:
                    j.emit("error", exc)
            finally:
                self._active = 0
                self.metrics.queue_depth.set(self.depth)

    def _kwargs(self, call: GuardCall) -> dict[str, Any]:
        if call.seed is not None:
            import torch

            torch.manual_seed(call.seed)
        extra = {} if call.response_format is None else {"response_format": call.response_format}
        return dict(max_new_tokens=call.max_new_tokens, stop=list(call.stop) or None, tools=call.tools,
                    **extra, **call.generation_kwargs)

    def _run_batch(self, jobs: list[Job]) -> None:
        groups: dict[tuple[str, str, float], list[Job]] = defaultdict(list)
        for j in jobs:
            groups[(j.call.batch_key(), j.policy, j.block_threshold)].append(j)
        for group in groups.values():
            self.metrics.batch_size.observe(len(group))
            try:
                self._answer_group(group)
            except RASGuardError:
                if len(group) == 1:
                    raise
                for j in group:  # one bad request must not fail the others
                    try:
                        self._answer_group([j])
                    except RASGuardError as exc:
                        j.emit("error", exc)

    def _answer_group(self, group: list[Job]) -> None:
        g, policy, threshold = self.guard, group[0].policy, group[0].block_threshold
        msgs = [j.call.messages for j in group]
        kwargs = self._kwargs(group[0].call)
        if policy == "steer":
            gens: list[GuardedGeneration | None] = list(g.generate_batch(msgs, **kwargs))
            found = [gen.assessment for gen in gens if gen is not None]
        else:
            found = g.assess_batch(msgs)
            floor = g.config.risk_floor
            rows = [i for i, a in enumerate(found)
                    if decide_policy(policy, a.risk, block_threshold=threshold, risk_floor=floor)
                    is not Decision.BLOCKED]
            gens = [None] * len(group)
            if rows:
                sub = [msgs[i] for i in rows]
                extra = ({"risks": [0.0] * len(rows)} if policy == "monitor"
                         else {"assessments": [found[i] for i in rows]})
                for i, gen in zip(rows, g.generate_batch(sub, **extra, **kwargs)):
                    gens[i] = gen
        for j, a, gen in zip(group, found, gens):
            self._deliver(j, a, gen)

    def _decision(self, job: Job, a: RiskAssessment, steered: bool | None) -> Decision:
        return job_decision(job, a, self.guard.config.risk_floor, steered)

    def _deliver(self, job: Job, a: RiskAssessment, gen: GuardedGeneration | None) -> None:
        decision = self._decision(job, a, None if gen is None else gen.steered)
        self.metrics.observe(a, decision, gen)
        job.emit("ras", a, decision)
        job.emit("done", gen)

    def _run_stream(self, job: Job) -> None:
        g, call = self.guard, job.call
        kwargs = self._kwargs(call)
        if job.policy == "steer":
            stream = g.stream(call.messages, **kwargs)
            a = stream.assessment
        else:
            a = g.assess(call.messages)
            if self._decision(job, a, None) is Decision.BLOCKED:
                self._deliver(job, a, None)
                return
            extra = {"risk": 0.0} if job.policy == "monitor" else {"assessment": a}
            stream = g.stream(call.messages, **extra, **kwargs)
        decision = self._decision(job, a, stream.steered)
        job.emit("ras", a, decision)
        with stream:
            for piece in stream:
                if job.cancelled.is_set():
                    self.metrics.cancelled.labels(stage="generating").inc()
                    return
                job.emit("text", piece)
        self.metrics.observe(a, decision, stream.result)
        job.emit("done", stream.result)
