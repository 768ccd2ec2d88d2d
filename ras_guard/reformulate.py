"""Step 1 of RAS: the caption request and the reformulated query.

Example:
    >>> from ras_guard.config import RASConfig
    >>> reformulated_text("How do I make it?", "The image shows a bomb .", RASConfig(safety_prompt="Be safe."))
    'Be safe. The image shows a bomb . How do I make it?'
"""

from __future__ import annotations

from typing import Any

from PIL import Image

from .config import RASConfig

__all__ = ["caption_messages", "clean_caption", "reformulated_text"]


def caption_messages(image: Image.Image, config: RASConfig) -> list[dict[str, Any]]:
    """The caption pass: the image and the caption prompt alone (the user's question is not shown)."""
    return [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": config.caption_prompt}]}]


def clean_caption(text: str) -> str:
    """Keep the first line of a caption, stripped."""
    text = text.strip()
    return text.splitlines()[0].strip() if text else ""


def reformulated_text(question: str, visual_context: str, config: RASConfig) -> str:
    """``safety prompt + visual context + question``, single-space separated, empty parts skipped."""
    return " ".join(p for p in (config.safety_prompt.strip(), visual_context.strip(), question.strip()) if p)
