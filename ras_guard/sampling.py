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

from .backends.protocol import Sampling
from .errors import InvalidMessageError

__all__ = ["GREEDY", "request_sampling", "sampling_kwargs"]

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


def request_sampling(kwargs: dict[str, Any]) -> tuple[Sampling, int, dict[str, Any]]:
    """``(Sampling, min_new_tokens, other options)`` of ``generate``-style keyword arguments.

    ``do_sample`` / ``temperature`` / ``top_p`` / ``top_k`` / ``seed`` become a
    :class:`~ras_guard.backends.protocol.Sampling` (``do_sample=False`` or ``temperature=0``: greedy; none given:
    the checkpoint's generation config decides); ``min_new_tokens`` is the request's; the rest is passed to the
    backend as engine options, which it rejects when it does not know them.

    Raises:
        InvalidMessageError: ``min_new_tokens`` is not an integer >= 0.

    Example:
        >>> s, n, rest = request_sampling({"do_sample": False, "min_new_tokens": 4, "repetition_penalty": 1.1})
        >>> s.greedy, n, rest
        (True, 4, {'repetition_penalty': 1.1})
        >>> request_sampling({})[0].temperature is None
        True
    """
    kw = dict(kwargs)
    min_new = kw.pop("min_new_tokens", 0) or 0
    if isinstance(min_new, bool) or not isinstance(min_new, int) or min_new < 0:
        raise InvalidMessageError(f"min_new_tokens must be an integer >= 0, got {min_new!r}.")
    do_sample = kw.pop("do_sample", None)
    temperature, top_p, top_k, seed = (kw.pop(k, None) for k in ("temperature", "top_p", "top_k", "seed"))
    if do_sample is False or temperature == 0:
        return Sampling(0.0, seed=seed), min_new, kw
    if do_sample is None and temperature is None and top_p is None and top_k is None:
        return Sampling(None, seed=seed), min_new, kw
    t = 1.0 if temperature is None else float(temperature)
    return Sampling(t, top_p=top_p, top_k=top_k, seed=seed), min_new, kw
