"""Generation arguments shared by the guard's passes, and stop-string cutting (private, framework-free).

Example:
    >>> cut_at_stop("Sure. STOP more", ["STOP"])
    ('Sure. ', True)
"""

from __future__ import annotations

from typing import Any

GREEDY: dict[str, Any] = {"do_sample": False, "num_beams": 1, "temperature": None, "top_p": None, "top_k": None}


def cut_at_stop(text: str, stop: list[str] | None) -> tuple[str, bool]:
    """Truncate ``text`` at the earliest stop string; return (text, whether one was found)."""
    if not stop:
        return text, False
    hits = [i for i in (text.find(s) for s in stop if s) if i >= 0]
    if not hits:
        return text, False
    return text[: min(hits)], True
