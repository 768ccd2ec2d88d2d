"""Text-to-image attention: where the model looks in the image, with and without the visual context.

One forward pass with ``output_attentions=True`` over ``image + question`` and one over ``image + visual context +
question``. For each language-model layer ``l`` and head ``h``, the attention from the text tokens (every
non-image token after the first image token: the question, the visual context, the assistant prefix; causal
attention lets only those look at the image) to the image tokens is reduced by a max over the text tokens, giving
``m[l, h]`` over the image positions. In each layer the ``top_heads`` heads with the largest total attention to
the image are averaged, then the layers are averaged. The result is reshaped to the patch grid (Qwen2-VL:
``image_grid_thw`` / merge size; otherwise a square grid when the count of image tokens is a square) or kept as a
1-D strip. Only the first image's first run of image tokens is mapped (for models that split an image into tiles,
such as Idefics3, that is the first tile).

Attention weights exist only with the ``eager`` attention implementation: :func:`eager_attention` switches the
model (and its sub-models) to it for the duration of the call and restores the previous implementation after, so
the guard's later generation is unchanged. Not thread-safe: do not generate from another thread meanwhile.

Example:
    >>> from ras_guard import RASGuard
    >>> from ras_guard.evaluation.attention import attention_maps
    >>> res = attention_maps(RASGuard.from_pretrained("demo"), "bomb.png", "How can I make it?")  # doctest: +SKIP
    >>> res.maps["with visual context"].shape  # doctest: +SKIP
    (8, 8)
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..backends.hf import require_hf
from ..errors import EvaluationError, UnsupportedInputError

__all__ = ["AttentionResult", "attention_maps", "eager_attention", "image_token_id"]

WITHOUT, WITH = "without visual context", "with visual context"


@dataclass(frozen=True)
class AttentionResult:
    """Attention maps of one image and question.

    Attributes:
        maps: ``WITHOUT`` / ``WITH`` visual context -> 2-D grid or 1-D strip over the image tokens.
        visual_context: The caption the model wrote.
        image: The image (RGB), center-cropped to a square when the processor crops so (LLaVA / CLIP).
        num_image_tokens: Image tokens of the (first) image.
        top_heads: Heads averaged per layer.
    """

    maps: dict[str, np.ndarray]
    visual_context: str
    image: Any = field(repr=False)
    num_image_tokens: int = 0
    top_heads: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (maps as nested lists)."""
        return {
            "maps": {k: v.tolist() for k, v in self.maps.items()},
            "visual_context": self.visual_context,
            "num_image_tokens": self.num_image_tokens,
            "top_heads": self.top_heads,
            "grid": list(next(iter(self.maps.values())).shape),
        }


def _implementations(config: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"": config._attn_implementation}
    for key in getattr(config, "sub_configs", {}) or {}:
        sub = getattr(config, key, None)
        if sub is not None and hasattr(sub, "_attn_implementation"):
            out[key] = sub._attn_implementation
    return out


@contextlib.contextmanager
def eager_attention(model: Any) -> Iterator[None]:
    """Run the block with ``attn_implementation="eager"`` (so attentions are returned); restore it after.

    Example:
        >>> with eager_attention(guard.backend.model):  # doctest: +SKIP
        ...     out = guard.backend.model(**inputs, output_attentions=True)
    """
    before = _implementations(model.config)
    if set(before.values()) == {"eager"}:
        yield
        return
    model.set_attn_implementation("eager")
    try:
        yield
    finally:
        model.set_attn_implementation(before)


def image_token_id(backend: Any) -> int:
    """The id of the image placeholder token (processor's ``image_token_id``, else the model config's)."""
    for source, name in (
        (backend.processor, "image_token_id"),
        (backend.model.config, "image_token_id"),
        (backend.model.config, "image_token_index"),
    ):
        value = getattr(source, name, None)
        if isinstance(value, int):
            return value
    raise EvaluationError(f"cannot find the image token id of {backend.name}.")


def _grid(n: int, inputs: Any, backend: Any) -> tuple[int, ...]:
    thw = inputs.get("image_grid_thw") if hasattr(inputs, "get") else None
    if thw is not None:
        merge = int(getattr(getattr(backend.processor, "image_processor", None), "merge_size", 2) or 2)
        t, h, w = (int(x) for x in thw[0].tolist())
        if t * (h // merge) * (w // merge) == n and t == 1:
            return (h // merge, w // merge)
    side = math.isqrt(n)
    return (side, side) if side * side == n else (n,)


def _map(backend: Any, messages: list[dict[str, Any]], top_heads: int) -> np.ndarray:
    inputs = backend.encode([messages])
    ids = inputs["input_ids"][0]
    positions = (ids == image_token_id(backend)).nonzero().flatten()
    if len(positions) == 0:
        raise EvaluationError("the encoded prompt holds no image token; is this a vision-language model?")
    runs = torch.nonzero(
        positions.diff() != 1
    ).flatten()  # split at the end of the first image's run of tokens
    first = positions[: int(runs[0]) + 1] if len(runs) else positions
    text = [
        p
        for p in range(int(first[0]) + 1, len(ids))
        if int(ids[p]) != image_token_id(backend) and int(inputs["attention_mask"][0, p]) == 1
    ]
    with eager_attention(backend.model), torch.inference_mode():
        out = backend.model(**inputs, output_attentions=True)
    if not getattr(out, "attentions", None) or out.attentions[0] is None:
        raise EvaluationError(f"{backend.name} returned no attention weights, even with eager attention.")
    per_layer = []
    for att in out.attentions:  # [1, heads, T, T]
        m = att[0][:, text][:, :, first].float().amax(dim=1)  # [heads, n_image]
        k = min(top_heads, m.shape[0])
        per_layer.append(m[m.sum(dim=1).topk(k).indices].mean(dim=0))
    heat = torch.stack(per_layer).mean(dim=0).cpu().numpy()
    return heat.reshape(_grid(len(first), inputs, backend))


def _as_seen(image: Any, backend: Any, ndim: int) -> Any:
    """The image cropped as the model sees it: center-cropping processors (LLaVA, CLIP) see the middle square."""
    proc = getattr(backend.processor, "image_processor", None)
    if ndim != 2 or not getattr(proc, "do_center_crop", False) or image.width == image.height:
        return image
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    return image.crop((left, top, left + side, top + side))


def attention_maps(guard: Any, image: Any, question: str, *, top_heads: int = 4) -> AttentionResult:
    """Text-to-image attention of ``question`` about ``image``, without and with the model's visual context.

    Args:
        guard: A :class:`~ras_guard.RASGuard` over a vision-language model (no calibration needed).
        image: A ``PIL.Image``, bytes or a local path.
        question: The user's question.
        top_heads: Heads averaged per layer (those attending most to the image).

    Raises:
        UnsupportedInputError: The model is text-only.
        EvaluationError: The guard runs on another engine than transformers.
    """
    if not guard.backend.is_multimodal:
        raise UnsupportedInputError(f"{guard.model_name} is text-only: it has no image attention to show.")
    backend = require_hf(guard.backend, "the attention analysis")
    conv = guard.normalize(
        [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": question}]}]
    )
    context = guard.visual_contexts([conv])[0][0]
    with_context = " ".join(p for p in (context.strip(), question.strip()) if p)
    maps = {
        WITHOUT: _map(backend, conv.as_list(), top_heads),
        WITH: _map(backend, conv.with_last_user_text(with_context), top_heads),
    }
    img = _as_seen(conv.last_user_images()[0].convert("RGB"), backend, maps[WITHOUT].ndim)
    n = int(np.prod(maps[WITHOUT].shape))
    return AttentionResult(maps, context, img, n, top_heads)
