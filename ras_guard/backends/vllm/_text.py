"""Stop strings on vLLM, checked on ras-guard's own decoding: cutting finished text, and held-back stream deltas.

vLLM checks stop strings on its own incremental detokenization, which needs ``detokenize=True`` and can differ
from the tokenizer's ``decode`` (word-level vocabularies get a leading space), so the vLLM backend never hands
stop strings to vLLM: it watches the decoded text of each request as the engine steps and aborts the request at
the first stop string. Streams hold back the last ``len(longest stop) - 1`` characters until more text arrives,
so a stop string split across deltas never leaks a prefix of itself.

Example:
    >>> cut_at_stop("hello world. bye", ("." ,))
    ('hello world', True)
    >>> deltas = TextDeltas(lambda ids: " ".join(map(str, ids)), ("3 4",))
    >>> deltas.push([1, 2]), deltas.push([1, 2, 3]), deltas.push([1, 2, 3, 4]), deltas.stopped
    ('1', ' 2', ' ', True)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

__all__ = ["TextDeltas", "cut_at_stop", "stop_prefix"]

Decode = Callable[[list[int]], str]


def cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """``text`` cut before its earliest stop string, and whether one was found."""
    hits = [i for i in (text.find(s) for s in stop if s) if i >= 0]
    return (text[: min(hits)], True) if hits else (text, False)


def stop_prefix(decode: Decode, ids: list[int], stop: Sequence[str]) -> int:
    """The length of the shortest prefix of ``ids`` whose text holds a stop string (``len(ids)`` if none does)."""
    k = len(ids)
    while k > 1 and cut_at_stop(decode(ids[: k - 1]), stop)[1]:
        k -= 1
    return k


class TextDeltas:
    """Growing token ids to text deltas that join to the final text cut before its first stop string.

    Args:
        decode: Token ids to text (cut at EOS, special tokens skipped).
        stop: Stop strings (empty ones are ignored).
    """

    def __init__(self, decode: Decode, stop: Sequence[str] = ()) -> None:
        self._decode = decode
        self.stop = tuple(s for s in stop if s)
        self._hold = max((len(s) for s in self.stop), default=1) - 1
        self.emitted = ""
        self.stopped = False

    def push(self, ids: list[int], final: bool = False) -> str:
        """The new text safe to emit after the engine produced ``ids`` (all of them so far)."""
        text, self.stopped = cut_at_stop(self._decode(list(ids)), self.stop)
        if not (final or self.stopped):
            if text.endswith("\ufffd"):
                return ""  # an incomplete character: wait for more tokens
            text = text[: len(text) - self._hold]
        if len(text) <= len(self.emitted) or not text.startswith(self.emitted):
            return ""  # nothing new, or a re-tokenized prefix: wait for more tokens
        piece, self.emitted = text[len(self.emitted) :], text
        return piece
