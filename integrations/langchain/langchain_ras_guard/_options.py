"""Constructor options: unknown keywords raise, naming the closest known option (private).

A mistyped option (``model_name=``, ``base_url=``, ``num_predict=``) must never be ignored: the model would
silently run with defaults. Generation arguments of ``model.generate`` that are not fields go in
``model_kwargs`` explicitly.

Example:
    >>> closest("modle", ["model", "policy"])
    'model'
"""

from __future__ import annotations

import difflib
import threading
import weakref
from collections.abc import Iterable, Mapping
from typing import Any

from ras_guard import RASGuard
from ras_guard.errors import UnknownOptionError

__all__ = ["ALIASES", "chat_model_options", "check_unknown", "closest", "load_guard"]

ALIASES: dict[str, str] = {
    "model_name": "model",
    "model_id": "model",
    "model_path": "model",
    "checkpoint": "model",
    "repo_id": "model",
    "num_predict": "max_tokens",
    "max_new_tokens": "max_tokens",
    "max_output_tokens": "max_tokens",
    "max_completion_tokens": "max_tokens",
    "request_timeout": "timeout",
    "stop_strings": "stop",
    "torch_dtype": "dtype",
    "device_map": "device",
    "random_seed": "seed",
}
"""Names other chat models use for an option we have under another name."""

_NOT_HERE = {
    "base_url": "a local model has no server; pass the checkpoint folder as model='/path/to/checkpoint'.",
    "api_base": "a local model has no server; pass the checkpoint folder as model='/path/to/checkpoint'.",
    "endpoint_url": "a local model has no server; pass the checkpoint folder as model='/path/to/checkpoint'.",
    "api_key": "a local model needs no API key; remove it.",
    "openai_api_key": "a local model needs no API key; remove it.",
}
_GENERATE_HINT = (
    "arguments of transformers' model.generate (top_k, repetition_penalty, ...) go in model_kwargs={...}."
)


def closest(name: str, known: Iterable[str]) -> str | None:
    """The known option closest to ``name`` (difflib), if any is close enough."""
    matches = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    return matches[0] if matches else None


def check_unknown(owner: str, given: Mapping[str, Any], known: Iterable[str]) -> None:
    """Raise :class:`UnknownOptionError` for the first keyword of ``given`` that is not in ``known``.

    Args:
        owner: Class name shown in the message.
        given: The keywords passed.
        known: Field names and aliases the class accepts.

    Raises:
        UnknownOptionError: Naming the unknown keyword and the option meant (alias table, then difflib).
    """
    known_set = set(known)
    unknown = [k for k in given if k not in known_set]
    if not unknown:
        return
    name = unknown[0]
    if name in _NOT_HERE:
        hint = _NOT_HERE[name]
    elif ALIASES.get(name) in known_set:
        hint = f"did you mean {ALIASES[name]}=? ({_GENERATE_HINT[:-1]})"
    elif (near := closest(name, known_set)) is not None:
        hint = f"did you mean {near}=? ({_GENERATE_HINT[:-1]})"
    else:
        hint = f"the class docstring lists the options; {_GENERATE_HINT}"
    others = f" (also unknown: {', '.join(unknown[1:])})" if len(unknown) > 1 else ""
    secret = any(s in name.lower() for s in ("key", "secret", "token", "password"))
    value = "..." if secret else f"{given[name]!r:.80}"
    raise UnknownOptionError(f"{owner} got an unknown option {name}={value}{others}: {hint}")


def chat_model_options(owner: str, fields: Mapping[str, Any], data: Any) -> Any:
    """The chat model's before-validator: unknown keywords raise; ``model`` is required unless ``guard`` is.

    Raises:
        UnknownOptionError: An unknown keyword, or neither ``model`` nor ``guard``.
    """
    if not isinstance(data, dict):
        return data
    known = set(fields) | {f.alias for f in fields.values() if getattr(f, "alias", None)}
    check_unknown(owner, data, known)
    if data.get("model") is None:
        guard = data.get("guard")
        if guard is None:
            raise UnknownOptionError(
                f"{owner} needs model=...: a local checkpoint folder (with calibration=...), or model='demo' "
                "for the bundled 2.65M-parameter demo model (a toy: never use it to guard real traffic); or "
                "guard=... to share a loaded RASGuard."
            )
        data = {**data, "model": guard.model_name}
    return data


_GUARDS: weakref.WeakValueDictionary[tuple[Any, ...], RASGuard] = weakref.WeakValueDictionary()
_GUARDS_LOCK = threading.Lock()


def load_guard(model: str, calibration: str | None, device: str | None, dtype: str | None) -> RASGuard:
    """Load a guard once per (model, calibration, device, dtype) while some chat model still uses it."""
    key = (model, calibration, device, dtype)
    with _GUARDS_LOCK:
        guard = _GUARDS.get(key)
        if guard is None:
            guard = RASGuard.from_pretrained(model, calibration, device=device, dtype=dtype)
            _GUARDS[key] = guard
        return guard
