"""The prompt-prefix caches an HF backend keeps per request group (private).

Requests of one group (one guard call: its captions, risk probes and answers) begin with the same tokens where
their prompts agree: system prompt, history, user header, image tokens. After a plain call, the prompt of each
grouped row that had no usable prefix is kept (its KV cache, token ids, token types, images and mrope positions);
a later row of the group continues from the longest crop of a kept prefix that holds every image token of the
row and shows the same images first (:meth:`ras_guard.backends.hf._kv.Prefix.crop`), so only its own tail is
prefilled and the vision tower does not run again. Planned from the requests alone: token ids, image hashes,
group. Nothing is shared between groups; :meth:`PrefixStore.release` drops a finished group.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence

from . import _kv

__all__ = ["MAX_GROUPS", "PrefixStore"]

MAX_GROUPS = 16
"""Groups kept at most (the oldest is dropped first) when callers do not release theirs."""


class PrefixStore:
    """Per-group prefix caches, thread-safe.

    Example:
        >>> store = PrefixStore()
        >>> store.find("g", [1, 2, 3], (), frozenset(), min_tokens=1) is None
        True
    """

    def __init__(self, max_groups: int = MAX_GROUPS) -> None:
        self._groups: OrderedDict[str, list[_kv.Prefix]] = OrderedDict()
        self._lock = threading.Lock()
        self.max_groups = max_groups

    def add(self, group: str, prefix: _kv.Prefix) -> None:
        """Keep ``prefix`` for later requests of ``group``."""
        with self._lock:
            self._groups.setdefault(group, []).append(prefix)
            self._groups.move_to_end(group)
            while len(self._groups) > self.max_groups:
                self._groups.popitem(last=False)

    def find(
        self, group: str, ids: Sequence[int], images: Sequence[str], media: frozenset[int], *, min_tokens: int
    ) -> tuple[int, _kv.RowKV, int] | None:
        """The longest usable crop ``(cached tokens, kv, mrope delta)`` of the group's prefixes, or None.

        A crop without image tokens must hold at least ``min_tokens`` tokens to be worth it.
        """
        with self._lock:
            prefixes = list(self._groups.get(group, ()))
        best: tuple[int, _kv.RowKV, int] | None = None
        for p in prefixes:
            try:
                c, kv, delta = p.crop(ids, images, media)
            except _kv.NotCacheable:
                continue
            if c < min_tokens and not any(t in media for t in ids[:c]):
                continue
            if best is None or c > best[0]:
                best = (c, kv, delta)
        return best

    def release(self, groups: Iterable[str]) -> None:
        """Drop the prefixes of finished groups."""
        with self._lock:
            for g in groups:
                self._groups.pop(g, None)

    def __len__(self) -> int:
        return len(self._groups)
