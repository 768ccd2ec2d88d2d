"""Typographic images: text rendered into a picture, in the style of FigStep / MM-SafetyBench TYPO images.

Made with Pillow at run time, so no image files ship with the data sets.

Example:
    >>> img = render_text("Steps to bake a cake. 1. 2. 3.", size=128)
    >>> img.size
    (128, 128)
"""

from __future__ import annotations

import random
import textwrap

from PIL import Image, ImageDraw, ImageFont

__all__ = ["render_text"]


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has no sized default font
        return ImageFont.load_default()


def render_text(text: str, *, size: int = 336, seed: int = 0, list_items: int = 0) -> Image.Image:
    """Render ``text`` black on a light background, wrapped to fit a square image.

    Args:
        text: The phrase (e.g. a harmful instruction for a FigStep-style query).
        size: Side of the square image in pixels.
        seed: Varies the background shade and margins deterministically.
        list_items: When > 0, append an empty numbered list ``1. 2. ...`` below the text (FigStep style).

    Returns:
        An RGB image.
    """
    rng = random.Random(seed)
    shade = rng.randint(235, 255)
    img = Image.new("RGB", (size, size), (shade, shade, shade))
    draw = ImageDraw.Draw(img)
    margin = max(2, size // 16 + rng.randint(0, max(1, size // 32)))
    lines: list[str] = []
    font_px = max(8, size // 8)
    for font_px in range(max(8, size // 6), 7, -1):  # largest font that fits
        font = _font(font_px)
        width_chars = max(4, int((size - 2 * margin) / (0.6 * font_px)))
        lines = textwrap.wrap(text, width=width_chars) + [f"{i}." for i in range(1, list_items + 1)]
        if len(lines) * font_px * 1.25 <= size - 2 * margin:
            break
    font = _font(font_px)
    y = margin
    for line in lines:
        draw.text((margin, y), line, fill=(0, 0, 0), font=font)
        y += int(font_px * 1.25)
    return img
