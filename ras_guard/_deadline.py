"""A deadline over one guarded call: caption, risk and answer passes, streaming included (private).

``RASGuard.assess / generate / stream(..., timeout=seconds)`` bind a :class:`Deadline` to the calling context
(a :class:`contextvars.ContextVar`, so concurrent calls and threads never see each other's). Every
``HFBackend.generate`` made while it is bound checks it first (the check between passes) and adds a stopping
criterion that ends generation at the next token once it has passed; a pass cut that way raises
:class:`~ras_guard.errors.GuardTimeoutError`, because a half-finished caption or risk pass would give a wrong
risk (fail closed), and a cut answer is not what was asked for. A stream's generation thread runs in a copy of
the context it was started from, so the deadline carries over.

Example:
    >>> with bound(Deadline.after(30.0)):  # doctest: +SKIP
    ...     guard.generate(messages, max_new_tokens=8)
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar

from .errors import GuardTimeoutError, InvalidMessageError

__all__ = ["Deadline", "bound", "current", "with_timeout"]

T = TypeVar("T")


@dataclass
class Deadline:
    """An absolute deadline on the monotonic clock.

    Attributes:
        at: ``time.monotonic()`` value at which the call must be over.
        seconds: The timeout it was made from (for messages).
        fired: Whether a generation was stopped by it.
    """

    at: float
    seconds: float
    fired: bool = False

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        """A deadline ``seconds`` from now.

        Raises:
            InvalidMessageError: ``seconds`` is not a positive finite number.
        """
        number = isinstance(seconds, (int, float)) and not isinstance(seconds, bool)
        if not number or not 0.0 < float(seconds) < float("inf"):
            raise InvalidMessageError(f"timeout must be a positive number of seconds, got {seconds!r}.")
        return cls(time.monotonic() + float(seconds), float(seconds))

    def remaining(self) -> float:
        """Seconds left (negative once passed)."""
        return self.at - time.monotonic()

    def error(self, where: str) -> GuardTimeoutError:
        """The error raised when the deadline passed ``where``."""
        return GuardTimeoutError(
            f"the guarded call ran past its timeout of {self.seconds:g} s {where}; nothing was returned. Raise the "
            "timeout, shorten the prompt or max_new_tokens, or use a faster device."
        )

    def check(self, where: str) -> None:
        """Raise :class:`GuardTimeoutError` if the deadline has passed."""
        if self.remaining() <= 0.0:
            raise self.error(where)


_CURRENT: ContextVar[Deadline | None] = ContextVar("ras_guard_deadline", default=None)


def current() -> Deadline | None:
    """The deadline bound to the calling context, if any."""
    return _CURRENT.get()


@contextmanager
def bound(deadline: Deadline | None) -> Iterator[Deadline | None]:
    """Bind ``deadline`` for the block (None: leave the current binding as it is)."""
    if deadline is None:
        yield current()
        return
    token = _CURRENT.set(deadline)
    try:
        yield deadline
    finally:
        _CURRENT.reset(token)


def with_timeout(fn: Callable[..., T]) -> Callable[..., T]:
    """Decorate a guard method with a ``timeout`` keyword: bind a :class:`Deadline` while it runs."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        timeout = kwargs.get("timeout")
        with bound(None if timeout is None else Deadline.after(timeout)):
            return fn(*args, **kwargs)

    return wrapper
