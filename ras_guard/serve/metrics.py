"""Prometheus metrics of one server (its own registry, so several apps in one process never clash).

Example:
    >>> m = Metrics()
    >>> m.requests.labels(endpoint="chat", status="200").inc()
    >>> b"ras_guard_requests_total" in m.render()
    True
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from ..types import Decision, GuardedGeneration, RiskAssessment

__all__ = ["CONTENT_TYPE", "Metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_RISK_BUCKETS = (0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)
_TIME_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    """Counters, histograms and gauges of the server."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter("ras_guard_requests", "HTTP requests by endpoint and status.",
                                ["endpoint", "status"], registry=r)
        self.decisions = Counter("ras_guard_decisions", "Guard decisions.", ["decision"], registry=r)
        self.risk = Histogram("ras_guard_risk", "Assessed risk of answered requests.", buckets=_RISK_BUCKETS,
                              registry=r)
        self.stage_seconds = Histogram("ras_guard_stage_seconds", "Seconds per guard stage.", ["stage"],
                                       buckets=_TIME_BUCKETS, registry=r)
        self.queue_depth = Gauge("ras_guard_queue_depth", "Requests waiting or running in the engine.", registry=r)
        self.batch_size = Histogram("ras_guard_batch_size", "Requests per generate_batch call.",
                                    buckets=(1, 2, 4, 8, 16, 32, 64), registry=r)
        self.cancelled = Counter("ras_guard_cancelled", "Requests cancelled by a disconnecting client.", ["stage"],
                                 registry=r)
        self.rejected = Counter("ras_guard_rejected", "Requests refused for overload.", ["reason"], registry=r)
        self.output_tokens = Counter("ras_guard_output_tokens", "Answer tokens generated.", registry=r)

    def observe(self, a: RiskAssessment, decision: Decision, gen: GuardedGeneration | None) -> None:
        """Record one finished request."""
        self.decisions.labels(decision=decision.value).inc()
        self.risk.observe(float(a.risk))
        for stage, seconds in a.timings.items():
            self.stage_seconds.labels(stage=stage).observe(float(seconds))
        if gen is not None:
            if "answer" in gen.timings:
                self.stage_seconds.labels(stage="answer").observe(float(gen.timings["answer"]))
            self.output_tokens.inc(gen.usage.output_tokens)

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        return generate_latest(self.registry)
