"""Running a stage plan on a backend: :func:`drive` (sync) and :func:`adrive` (async).

Example:
    >>> def plan():
    ...     outs = yield []
    ...     return len(outs)
    >>> class Nothing:
    ...     def generate(self, requests): return []
    >>> drive(plan(), Nothing())
    0
"""

from __future__ import annotations

from collections.abc import Generator, Iterable
from typing import Any, TypeVar

from ..backends.protocol import GenerationRequest, GenerationResult
from ..errors import GenerationError

__all__ = ["Plan", "adrive", "drive", "release"]

T = TypeVar("T")

Plan = Generator[list[GenerationRequest], list[GenerationResult], T]
"""A stage plan: yields requests, is sent their results, returns its value."""


def _check(requests: list[GenerationRequest], results: list[GenerationResult], backend: Any) -> list[GenerationResult]:
    if len(results) != len(requests):
        raise GenerationError(
            f"backend {getattr(backend, 'name', type(backend).__name__)} returned {len(results)} results for "
            f"{len(requests)} requests; a backend must return one result per request, in order."
        )
    return results


def drive(plan: Plan[T], backend: Any) -> T:
    """Run ``plan``, answering each of its calls with ``backend.generate`` (an empty call is not sent)."""
    outs: Any = None
    while True:
        try:
            requests = plan.send(outs)
        except StopIteration as done:
            return done.value
        outs = _check(requests, list(backend.generate(requests)) if requests else [], backend)


async def adrive(plan: Plan[T], backend: Any) -> T:
    """Run ``plan``, awaiting ``backend.agenerate`` for each of its calls."""
    outs: Any = None
    while True:
        try:
            requests = plan.send(outs)
        except StopIteration as done:
            return done.value
        outs = _check(requests, list(await backend.agenerate(requests)) if requests else [], backend)


def release(backend: Any, groups: Iterable[str | None]) -> None:
    """Tell ``backend`` that these request groups are finished (backends that keep nothing have no ``release``)."""
    done = sorted({g for g in groups if g})
    hook = getattr(backend, "release", None)
    if done and callable(hook):
        hook(done)
