"""Stage 1 of RAS as a plan: the visual context of each request (formula: :mod:`ras_guard.reformulate`).

Each new image of a request's last user turn gets one greedy caption request (image + caption prompt, the question
not shown); images seen before come from the caption cache, keyed by image hash and the caption settings.

Example:
    >>> from ras_guard.config import RASConfig
    >>> from ras_guard.messages import normalize_messages
    >>> from ras_guard.testing import FakeBackend, tiny_image
    >>> from ras_guard._cache import LRUCache
    >>> img = {"role": "user", "content": [{"type": "image", "image": tiny_image(1)}, {"type": "text", "text": "?"}]}
    >>> cache, fake = LRUCache(8), FakeBackend(text="The image shows a cup .")
    >>> drive(visual_contexts([normalize_messages([img])], RASConfig(), cache), fake).texts
    ['The image shows a cup .']
    >>> drive(visual_contexts([normalize_messages([img])], RASConfig(), cache), fake).from_cache
    [True]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ..backends.protocol import GenerationRequest
from ..config import RASConfig
from ..messages import Conversation
from ..reformulate import caption_messages, clean_caption
from .drive import Plan, drive

__all__ = ["CaptionCache", "Contexts", "drive", "visual_contexts"]


class CaptionCache(Protocol):
    """What stage 1 needs of a caption cache (:class:`ras_guard._cache.LRUCache`)."""

    def get(self, key: Any) -> str | None: ...

    def put(self, key: Any, value: str) -> None: ...


@dataclass(frozen=True)
class Contexts:
    """Stage 1's result.

    Attributes:
        texts: One visual context per request (its last turn's captions joined; "" without images).
        from_cache: Whether each came entirely from the cache.
        tokens: Tokens the caption requests spent (prompt + generated), all requests together.
    """

    texts: list[str]
    from_cache: list[bool]
    tokens: int


def visual_contexts(
    convs: Sequence[Conversation],
    config: RASConfig,
    cache: CaptionCache | None,
    groups: Sequence[str | None] | None = None,
) -> Plan[Contexts]:
    """Caption the images not in ``cache`` (one batched call), then join each request's captions.

    Args:
        convs: The normalised requests.
        config: Caption prompt and token budget.
        cache: The caption cache (None: no cache).
        groups: The request group of each request (the caption request takes its first owner's).
    """
    key = (config.caption_prompt, config.caption_max_new_tokens)
    found: dict[str, str] = {}
    todo: dict[str, tuple[Any, int]] = {}
    for i, conv in enumerate(convs):
        for h, img in zip(conv.last_user_image_hashes(), conv.last_user_images(), strict=True):
            cached = found.get(h) or (cache.get((h, *key)) if cache is not None else None)
            if cached is not None:
                found[h] = cached
            elif h not in todo:
                todo[h] = (img, i)
    spent = 0
    if todo:
        outs = yield [
            GenerationRequest(
                caption_messages(img, config), max_new_tokens=config.caption_max_new_tokens, image_hashes=(h,),
                group=groups[owner] if groups else None,
            )
            for h, (img, owner) in todo.items()
        ]
        for h, out in zip(todo, outs, strict=True):
            found[h] = clean_caption(out.text)
            if cache is not None:
                cache.put((h, *key), found[h])
            spent += out.prompt_tokens + len(out.token_ids)
    texts = [" ".join(found[h] for h in c.last_user_image_hashes()) for c in convs]
    from_cache = [all(h not in todo for h in c.last_user_image_hashes()) for c in convs]
    return Contexts(texts, from_cache, spent)
