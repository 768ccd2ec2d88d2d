"""OpenAI-style sampling fields (``temperature``, ``top_p``) as ``generate`` keyword arguments.

One mapping for the server and the LangChain package, with OpenAI's semantics:

* neither given: ``{}``, the checkpoint's generation config decides (the demo model: greedy);
* ``temperature == 0``: greedy decoding; ``top_p`` is moot and dropped (OpenAI: deterministic-ish argmax);
* ``temperature > 0``: sampling at that temperature, with ``top_p`` when given;
* ``top_p`` alone: sampling at OpenAI's default temperature 1.0 with that ``top_p`` (a nucleus only means
  something when sampling).

``seed`` is not a ``generate`` argument: callers seed torch's generator before the call (the server per batch
key, the LangChain package per call), so sampled answers with one seed repeat.

Example:
    >>> sampling_kwargs(temperature=0)
    {'do_sample': False, 'temperature': None, 'top_p': None, 'top_k': None}
    >>> sampling_kwargs(top_p=0.9)
    {'do_sample': True, 'temperature': 1.0, 'top_p': 0.9}
    >>> sampling_kwargs()
    {}
"""

from __future__ import annotations

import math
from typing import Any

from .errors import InvalidMessageError

__all__ = ["GREEDY", "sampling_kwargs"]

GREEDY: dict[str, Any] = {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
"""Greedy decoding (the sampling fields set to None, so a checkpoint's sampling defaults do not warn)."""


def sampling_kwargs(temperature: float | None = None, top_p: float | None = None) -> dict[str, Any]:
    """``generate`` arguments for OpenAI's ``temperature`` / ``top_p`` (see the module docstring).

    Args:
        temperature: 0 for greedy, above 0 to sample; None: not given.
        top_p: Nucleus mass in (0, 1]; None: not given.

    Raises:
        InvalidMessageError: A temperature below 0, or a ``top_p`` outside (0, 1], or either not finite.

    Example:
        >>> sampling_kwargs(temperature=0.7, top_p=0.5)
        {'do_sample': True, 'temperature': 0.7, 'top_p': 0.5}
        >>> sampling_kwargs(temperature=0, top_p=0.5)["do_sample"]
        False
    """
    if temperature is not None and (not math.isfinite(temperature) or temperature < 0):
        raise InvalidMessageError(f"temperature={temperature!r} must be a number >= 0 (0: greedy).")
    if top_p is not None and (not math.isfinite(top_p) or not 0.0 < top_p <= 1.0):
        raise InvalidMessageError(f"top_p={top_p!r} must lie in (0, 1].")
    if temperature == 0:
        return dict(GREEDY)
    if temperature is None and top_p is None:
        return {}
    gen: dict[str, Any] = {"do_sample": True, "temperature": 1.0 if temperature is None else float(temperature)}
    if top_p is not None:
        gen["top_p"] = float(top_p)
    return gen
