"""Reusing the KV cache of a prompt prefix across the guard's passes (private).

The caption, risk and answer passes of one request begin with the same tokens (system prompt, history, the user
header and the image tokens). :func:`prefix_support` says whether a model can continue ``generate`` from a cache of
that prefix; :class:`Prefix` holds one request's prefix cache; :class:`Row` is one sequence of a batched call that
starts from (part of) such a cache; :func:`assemble` lays rows out for one ``model.generate`` call:

``[left pad][cached tokens][middle pad][uncached tail]``, with the attention mask zero on both pads. Positions
follow the mask (mrope models get them explicitly), so each row sees exactly its own tokens at their own positions,
as if it ran alone. ``generate`` then prefills only the tail columns; the image tokens lie in the cached part, so
no ``pixel_values`` are passed and the vision tower does not run again.

A :class:`Prefix` belongs to one request group (one guard call, :mod:`._prefix`) and is dropped with it. Cache
tensors are never written in place (``DynamicCache`` grows by concatenation), so rows may share them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import DynamicCache

RowKV = list[tuple[torch.Tensor, torch.Tensor]]
"""Per decoder layer: keys and values ``[heads, tokens, head_dim]`` of one sequence."""

VERIFIED_MODEL_TYPES = frozenset({"llava", "qwen2_vl", "qwen2_5_vl", "idefics3", "gemma3", "llama"})
"""``config.model_type`` values whose cached-prefix outputs were checked against plain generation
(tests/test_speed_paths.py). Others use the plain path until verified."""

_SEQ_KEYS = ("token_type_ids", "mm_token_type_ids")
_MEDIA_ATTRS = ("image_token_id", "image_token_index", "video_token_id", "video_token_index")


class NotCacheable(Exception):
    """A request cannot use the prefix path after all (the caller falls back to plain generation)."""


def prefix_support(backend: Any) -> str | None:
    """None when ``backend`` can continue generation from a prefix cache, else the reason it cannot.

    Example:
        >>> prefix_support(object())
        'not a transformers backend'
    """
    from ._backend import HFBackend

    if not isinstance(backend, HFBackend):
        return "not a transformers backend"
    model = backend.model
    kind = getattr(model.config, "model_type", "")
    if kind not in VERIFIED_MODEL_TYPES:
        return f"model type {kind!r} is not verified for prefix reuse"
    impl = getattr(getattr(model, "generation_config", None), "cache_implementation", None)
    if impl not in (None, "dynamic"):
        return f"generation_config.cache_implementation is {impl!r} (only the dynamic cache is reused)"
    return None


def media_token_ids(config: Any) -> frozenset[int]:
    """Ids of the placeholder tokens that take image/video features (they must lie in the cached part)."""
    ids = {getattr(config, a, None) for a in _MEDIA_ATTRS}
    return frozenset(i for i in ids if isinstance(i, int))


def sliding_window(config: Any) -> int | None:
    """The decoder's sliding attention window, None when no layer slides."""
    text = config.get_text_config(decoder=True)
    window = getattr(text, "sliding_window", None)
    slides = any("sliding" in str(t) for t in (getattr(text, "layer_types", None) or []))
    return int(window) if slides and window else None


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common prefix."""
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def is_mrope(model: Any) -> bool:
    """Whether positions are multimodal rotary (Qwen-VL style): then they are passed explicitly."""
    return hasattr(getattr(model, "model", None), "get_rope_index")


def mrope_positions(model: Any, inputs: dict[str, Any]) -> torch.Tensor:
    """``[4, B, L]`` positions (text, then temporal/height/width) exactly as ``generate`` computes them."""
    kwargs = {k: v for k, v in inputs.items() if k != "input_ids"}
    return model._prepare_position_ids_for_generation(inputs["input_ids"], kwargs)


@dataclass
class Prefix:
    """One request's cached prompt prefix.

    Attributes:
        ids: Its token ids.
        types: Token type ids per key (``token_type_ids`` / ``mm_token_type_ids``), aligned with ``ids``.
        kv: Its keys and values.
        images: Hashes of the images inside the prefix, in token order.
        mpos: ``[3, len]`` mrope positions (mrope models), else None.
    """

    ids: list[int]
    types: dict[str, list[int]]
    kv: RowKV
    images: tuple[str, ...] = ()
    mpos: torch.Tensor | None = None

    def crop(self, ids: Sequence[int], images: Sequence[str], media: frozenset[int]) -> tuple[int, RowKV, int]:
        """How much of this prefix a pass over ``ids`` can reuse: ``(cached tokens, their kv, position delta)``.

        Image placeholder tokens look alike for every image, so token equality is not enough: the pass's images
        (``images``, in token order) must be the prefix's first images.

        Raises:
            NotCacheable: The uncached tail would hold image tokens, or the images differ.
        """
        c = min(common_prefix(ids, self.ids), len(ids) - 1)
        if c <= 0 or any(t in media for t in ids[c:]):
            raise NotCacheable("the pass's image tokens are not all inside the shared prefix")
        if tuple(self.images[: len(images)]) != tuple(images):
            raise NotCacheable("the pass shows other images than the prefix")
        delta = 0
        if self.mpos is not None:
            delta = int(self.mpos[:, :c].max()) + 1 - c
        return c, [(k[:, :c], v[:, :c]) for k, v in self.kv], delta


@dataclass
class Row:
    """One sequence of a batched call that continues from cached keys/values.

    Attributes:
        ids: All its tokens so far (prompt, plus tokens generated by earlier calls).
        types: Token type ids per key, aligned with ``ids``.
        kv: Keys/values of ``ids[:cached]``.
        cached: How many leading tokens are cached (at least 1 token stays uncached).
        delta: mrope offset of the uncached (text) positions.
        max_new: Tokens this row may generate.
        min_new: Tokens before which EOS is suppressed.
    """

    ids: list[int]
    types: dict[str, list[int]]
    kv: RowKV
    cached: int
    delta: int = 0
    max_new: int = 1
    min_new: int = 0


def assemble(rows: Sequence[Row], model: Any, pad_id: int) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Inputs and ``generate`` kwargs (``past_key_values``, positions for mrope) for a batch of rows."""
    big_c = max(r.cached for r in rows)
    big_t = max(len(r.ids) - r.cached for r in rows)
    b, width = len(rows), big_c + big_t
    ids = torch.full((b, width), pad_id, dtype=torch.long)
    mask = torch.zeros((b, width), dtype=torch.long)
    keys = sorted({k for r in rows for k in r.types})
    types = {k: torch.zeros((b, width), dtype=torch.long) for k in keys}
    for i, r in enumerate(rows):
        c, t = r.cached, len(r.ids) - r.cached
        cols = list(range(big_c - c, big_c)) + list(range(width - t, width))
        ids[i, cols] = torch.tensor(r.ids, dtype=torch.long)
        mask[i, cols] = 1
        for k in keys:
            types[k][i, cols] = torch.tensor(r.types.get(k, [0] * len(r.ids)), dtype=torch.long)
    device = rows[0].kv[0][0].device
    data = [_stack_layer(rows, layer, big_c) for layer in range(len(rows[0].kv))]
    inputs: dict[str, torch.Tensor] = {"input_ids": ids.to(device), "attention_mask": mask.to(device)}
    inputs.update({k: v.to(device) for k, v in types.items()})
    extra: dict[str, Any] = {"past_key_values": DynamicCache(ddp_cache_data=data, config=model.config)}
    if is_mrope(model):
        text = (mask.cumsum(-1) - 1).clamp(min=0) * mask
        delta = torch.tensor([r.delta for r in rows], dtype=torch.long)[:, None]
        mm = (text + delta) * mask
        extra["position_ids"] = torch.stack([text, mm, mm, mm]).to(device)
    return inputs, extra


def _stack_layer(rows: Sequence[Row], layer: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One layer's cached keys/values of all rows, right-aligned in ``width`` columns (views for one row)."""
    if len(rows) == 1:
        return rows[0].kv[layer][0][None], rows[0].kv[layer][1][None]
    out = []
    for part in (0, 1):
        first = rows[0].kv[layer][part]
        t = first.new_zeros((len(rows), first.shape[0], width, first.shape[2]))
        for i, r in enumerate(rows):
            t[i, :, width - r.cached :] = r.kv[layer][part]
        out.append(t)
    return out[0], out[1]


def harvest(
    cache: Any, row: int, start: int, columns: torch.Tensor | None = None, *, stop: int | None = None
) -> RowKV:
    """Keys/values of one batch row: columns ``start:stop`` (views), or the given ``columns`` (a copy).

    Raises:
        NotCacheable: A sliding-window layer no longer holds every column.
    """
    layers = [(k, v) for k, v, *_ in cache]
    width = max(k.shape[-2] for k, _ in layers)
    if any(k.shape[-2] != width for k, _ in layers):
        raise NotCacheable("a sliding-window layer dropped cached positions")
    if columns is None:
        return [(k[row, :, start:stop], v[row, :, start:stop]) for k, v in layers]
    idx = columns.to(layers[0][0].device)
    return [(k[row].index_select(1, idx), v[row].index_select(1, idx)) for k, v in layers]
