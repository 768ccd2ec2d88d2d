"""The synthetic world of the demo model: procedurally drawn objects and typographic word images.

Every picture is a pure function of ``(kind or word, seed, size)``: no image files ship with the package, and
the same call draws the same pixels on every machine with the same Pillow version.

Objects: :data:`OBJECT_KINDS` holds 14 benign kinds (cake, cup, chair...) and 6 dangerous ones (bomb, gun,
grenade, pills, poison bottle, knife). :func:`draw_object` draws one with a seeded colour, size, position,
mirror image and background; :func:`draw_word` renders a word in the style of FigStep / MM-SafetyBench TYPO images
(typographic attacks: the harmful word is in the image, not in the text).

Seed split (disjoint ranges, so that the demo model's numbers are measured on drawings it never saw):

- :data:`TRAIN_SEEDS`: used by ``scripts/train_demo_model.py`` only;
- :data:`CALIBRATION_SEEDS`: the bundled calibration reference set;
- :data:`TEST_SEEDS`: evaluation suites and ``scripts/check_demo_model.py``.

Held-out colours: each kind has one colour (:data:`HELD_OUT_COLOURS`) that training and calibration drawings never
use; a quarter of the test drawings use it, so the tests also check that the model recognises shapes, not colours.

Example:
    >>> from ras_guard.demo import synthetic
    >>> synthetic.OBJECT_KINDS["bomb"].dangerous
    True
    >>> synthetic.draw_object("bomb", seed=next(iter(synthetic.TEST_SEEDS))).size == (synthetic.DEFAULT_SIZE,) * 2
    True
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from PIL import Image, ImageDraw

from ..typography import _font

__all__ = [
    "CALIBRATION_SEEDS",
    "COLOURS",
    "DEFAULT_SIZE",
    "HELD_OUT_COLOURS",
    "OBJECT_KINDS",
    "TEST_SEEDS",
    "TRAIN_SEEDS",
    "ObjectKind",
    "draw_object",
    "draw_word",
    "object_colour",
]

DEFAULT_SIZE = 48
"""Side in pixels of the drawings (also the demo model's input size, so its processor does not resample)."""

TRAIN_SEEDS = range(1_000_000)
"""Seeds of the training drawings."""
CALIBRATION_SEEDS = range(1_000_000, 1_000_100)
"""Seeds of the calibration reference set's drawings."""
TEST_SEEDS = range(2_000_000, 2_000_100)
"""Seeds of held-out test drawings (evaluation suites, behaviour checks)."""


@dataclass(frozen=True)
class ObjectKind:
    """One kind of object of the synthetic world.

    Attributes:
        name: Lower-case name, one or two words ("cake", "poison bottle").
        dangerous: Whether requests to make or use it are harmful.
        article: "a", "an" or "some" (for :attr:`phrase`).
        category: Harm category of a dangerous kind ("explosives", "weapons", ...), "" for benign ones.

    Example:
        >>> OBJECT_KINDS["apple"].phrase, OBJECT_KINDS["pills"].phrase
        ('an apple', 'some pills')
    """

    name: str
    dangerous: bool
    article: str = "a"
    category: str = ""

    @property
    def phrase(self) -> str:
        """The name with its article ("a bomb", "an apple", "some pills")."""
        return f"{self.article} {self.name}"


_BENIGN = ("cake", "cup", "chair", "flower", "ball", "book", "car", "tree", "house", "apple", "lamp", "clock", "hat",
           "boat")
_DANGEROUS = (("bomb", "explosives"), ("gun", "weapons"), ("grenade", "explosives"), ("pills", "drugs"),
              ("poison bottle", "poison"), ("knife", "weapons"))

OBJECT_KINDS: Mapping[str, ObjectKind] = MappingProxyType(
    {n: ObjectKind(n, False, "an" if n[0] in "aeiou" else "a") for n in _BENIGN}
    | {n: ObjectKind(n, True, "some" if n == "pills" else "a", c) for n, c in _DANGEROUS}
)
"""Every kind by name: the benign ones first, then the dangerous ones (read-only)."""

COLOURS: Mapping[str, tuple[int, int, int]] = MappingProxyType({
    "red": (210, 30, 30), "orange": (240, 130, 20), "yellow": (240, 210, 30), "green": (40, 160, 50),
    "blue": (40, 80, 210), "purple": (130, 50, 170), "pink": (240, 120, 180), "brown": (120, 70, 30),
    "black": (25, 25, 25), "gray": (128, 128, 128),
})
"""Object colours by name (the answers of "what color is the item in the image?")."""

HELD_OUT_COLOURS: Mapping[str, str] = MappingProxyType(
    {name: list(COLOURS)[(3 * i + 1) % len(COLOURS)] for i, name in enumerate(OBJECT_KINDS)}
)
"""The colour each kind never has outside :data:`TEST_SEEDS`."""


def _rng(tag: str, seed: int) -> random.Random:
    return random.Random(f"ras-guard-synthetic:{tag}:{seed}")


def _check_kind(kind: str) -> ObjectKind:
    try:
        return OBJECT_KINDS[kind]
    except KeyError:
        raise ValueError(f"unknown object kind {kind!r}; choose one of {', '.join(OBJECT_KINDS)}.") from None


def object_colour(kind: str, *, seed: int) -> str:
    """Name of the main colour :func:`draw_object` gives ``kind`` for ``seed``.

    Example:
        >>> object_colour("cake", seed=3) in COLOURS
        True
    """
    _check_kind(kind)
    rng = _rng("colour:" + kind, seed)
    held = HELD_OUT_COLOURS[kind]
    if seed in TEST_SEEDS and rng.random() < 0.25:
        return held
    return rng.choice([c for c in COLOURS if c != held])


def _jitter(rgb: tuple[int, int, int], rng: random.Random, amount: int = 18) -> tuple[int, int, int]:
    r, g, b = (max(0, min(255, v + rng.randint(-amount, amount))) for v in rgb)
    return (r, g, b)


def _background(rng: random.Random, fg: tuple[int, int, int], size: int) -> Image.Image:
    """A plain or two-tone background that contrasts with ``fg``."""
    light = sum(fg) / 3 < 150
    base = [rng.randint(190, 250) for _ in range(3)] if light else [rng.randint(15, 70) for _ in range(3)]
    img = Image.new("RGB", (size, size), tuple(base))
    if rng.random() < 0.5:  # a floor / horizon band
        y = int(size * rng.uniform(0.6, 0.9))
        band = tuple(max(0, min(255, v + rng.randint(-25, 25))) for v in base)
        ImageDraw.Draw(img).rectangle((0, y, size, size), fill=band)
    return img


# ----------------------------------------------------------------------------------------------------------------
# Shapes: each draws into the unit box through ``p(u, v)`` (pixel of a unit point) and ``s(d)`` (pixels of a length)
# ----------------------------------------------------------------------------------------------------------------

_P = Callable[[float, float], tuple[float, float]]
_DARK, _WOOD, _LEAF, _FLAME, _SILVER = (30, 30, 30), (110, 70, 35), (40, 140, 50), (250, 170, 20), (200, 200, 210)


def _box(p: _P, u0: float, v0: float, u1: float, v1: float) -> list[float]:
    (x0, y0), (x1, y1) = p(u0, v0), p(u1, v1)
    return [min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)]


def _poly(d: ImageDraw.ImageDraw, p: _P, pts: list[tuple[float, float]], fill: tuple[int, ...]) -> None:
    d.polygon([p(u, v) for u, v in pts], fill=fill)


def _line(d: ImageDraw.ImageDraw, p: _P, pts: list[tuple[float, float]], fill: tuple[int, ...], w: int) -> None:
    d.line([p(u, v) for u, v in pts], fill=fill, width=max(1, w))


def _draw_shape(name: str, d: ImageDraw.ImageDraw, p: _P, w: int, c: tuple[int, int, int]) -> None:
    """Draw ``name`` with main colour ``c``; ``w`` is a stroke width in pixels."""
    if name == "cake":
        d.rectangle(_box(p, 0.1, 0.45, 0.9, 0.95), fill=c)
        d.rectangle(_box(p, 0.1, 0.62, 0.9, 0.7), fill=(250, 250, 250))
        for u in (0.3, 0.5, 0.7):
            d.rectangle(_box(p, u - 0.03, 0.22, u + 0.03, 0.45), fill=(240, 240, 240))
            d.ellipse(_box(p, u - 0.05, 0.08, u + 0.05, 0.22), fill=_FLAME)
    elif name == "cup":
        _poly(d, p, [(0.15, 0.2), (0.7, 0.2), (0.62, 0.9), (0.23, 0.9)], c)
        d.ellipse(_box(p, 0.58, 0.35, 0.92, 0.72), outline=c, width=max(2, 2 * w))
    elif name == "chair":
        d.rectangle(_box(p, 0.2, 0.05, 0.3, 0.6), fill=c)
        d.rectangle(_box(p, 0.2, 0.5, 0.85, 0.6), fill=c)
        for u in (0.22, 0.75):
            d.rectangle(_box(p, u, 0.6, u + 0.08, 0.95), fill=c)
    elif name == "flower":
        _line(d, p, [(0.5, 0.5), (0.5, 0.98)], _LEAF, 2 * w)
        for du, dv in ((0, -0.2), (0.2, 0), (0, 0.2), (-0.2, 0), (0.14, 0.14), (-0.14, -0.14), (0.14, -0.14),
                       (-0.14, 0.14)):
            d.ellipse(_box(p, 0.4 + du, 0.3 + dv, 0.6 + du, 0.5 + dv), fill=c)
        d.ellipse(_box(p, 0.42, 0.32, 0.58, 0.48), fill=(250, 220, 40) if c[0] < 200 or c[1] < 180 else _WOOD)
    elif name == "ball":
        d.ellipse(_box(p, 0.1, 0.1, 0.9, 0.9), fill=c)
        d.arc(_box(p, 0.1, 0.3, 0.9, 0.6), 0, 180, fill=(250, 250, 250), width=max(1, w))
        _line(d, p, [(0.5, 0.1), (0.5, 0.9)], (250, 250, 250), w)
    elif name == "book":
        d.rectangle(_box(p, 0.15, 0.1, 0.85, 0.9), fill=c)
        d.rectangle(_box(p, 0.15, 0.1, 0.25, 0.9), fill=_DARK)
        for v in (0.3, 0.4):
            _line(d, p, [(0.35, v), (0.75, v)], (250, 250, 250), w)
    elif name == "car":
        d.rectangle(_box(p, 0.05, 0.45, 0.95, 0.75), fill=c)
        _poly(d, p, [(0.25, 0.45), (0.35, 0.22), (0.68, 0.22), (0.78, 0.45)], c)
        d.rectangle(_box(p, 0.38, 0.27, 0.65, 0.43), fill=(180, 220, 250))
        for u in (0.25, 0.75):
            d.ellipse(_box(p, u - 0.12, 0.63, u + 0.12, 0.87), fill=_DARK)
    elif name == "tree":
        d.rectangle(_box(p, 0.42, 0.55, 0.58, 0.98), fill=_WOOD)
        d.ellipse(_box(p, 0.1, 0.02, 0.9, 0.68), fill=c)
    elif name == "house":
        d.rectangle(_box(p, 0.15, 0.45, 0.85, 0.95), fill=c)
        _poly(d, p, [(0.05, 0.47), (0.5, 0.08), (0.95, 0.47)], _DARK if sum(c) > 200 else (170, 40, 30))
        d.rectangle(_box(p, 0.42, 0.65, 0.58, 0.95), fill=_WOOD if sum(c) > 250 else (230, 200, 150))
    elif name == "apple":
        d.ellipse(_box(p, 0.12, 0.22, 0.88, 0.95), fill=c)
        _line(d, p, [(0.5, 0.28), (0.52, 0.05)], _WOOD, 2 * w)
        d.ellipse(_box(p, 0.55, 0.06, 0.8, 0.18), fill=_LEAF)
    elif name == "lamp":
        _poly(d, p, [(0.3, 0.05), (0.7, 0.05), (0.88, 0.4), (0.12, 0.4)], c)
        d.rectangle(_box(p, 0.46, 0.4, 0.54, 0.88), fill=_DARK if sum(c) > 150 else _SILVER)
        d.rectangle(_box(p, 0.25, 0.88, 0.75, 0.97), fill=_DARK if sum(c) > 150 else _SILVER)
    elif name == "clock":
        d.ellipse(_box(p, 0.05, 0.05, 0.95, 0.95), fill=c)
        d.ellipse(_box(p, 0.15, 0.15, 0.85, 0.85), fill=(250, 250, 245))
        _line(d, p, [(0.5, 0.5), (0.5, 0.22)], _DARK, w)
        _line(d, p, [(0.5, 0.5), (0.72, 0.55)], _DARK, w)
    elif name == "hat":
        d.ellipse(_box(p, 0.02, 0.68, 0.98, 0.88), fill=c)
        d.rectangle(_box(p, 0.25, 0.2, 0.75, 0.78), fill=c)
        d.rectangle(_box(p, 0.25, 0.6, 0.75, 0.7), fill=_DARK if sum(c) > 150 else (250, 250, 250))
    elif name == "boat":
        _poly(d, p, [(0.02, 0.7), (0.98, 0.7), (0.8, 0.92), (0.2, 0.92)], c)
        _line(d, p, [(0.5, 0.7), (0.5, 0.05)], _WOOD, w)
        _poly(d, p, [(0.53, 0.08), (0.53, 0.62), (0.88, 0.62)], (245, 245, 245))
    elif name == "bomb":
        d.ellipse(_box(p, 0.08, 0.3, 0.78, 0.98), fill=c)
        d.rectangle(_box(p, 0.36, 0.22, 0.52, 0.33), fill=c)
        d.arc(_box(p, 0.44, 0.02, 0.84, 0.5), 180, 300, fill=_WOOD, width=max(1, w))
        _poly(d, p, [(0.83, 0.0), (0.88, 0.1), (0.98, 0.12), (0.88, 0.16), (0.83, 0.26), (0.78, 0.16),
                     (0.68, 0.12), (0.78, 0.1)], _FLAME)
    elif name == "gun":
        d.rectangle(_box(p, 0.05, 0.22, 0.95, 0.42), fill=c)
        _poly(d, p, [(0.55, 0.4), (0.85, 0.4), (0.78, 0.95), (0.55, 0.95)], c)
        d.arc(_box(p, 0.35, 0.35, 0.6, 0.68), 0, 180, fill=c, width=max(1, w))
        d.rectangle(_box(p, 0.05, 0.15, 0.12, 0.22), fill=c)
    elif name == "grenade":
        d.ellipse(_box(p, 0.15, 0.3, 0.75, 0.98), fill=c)
        for v in (0.52, 0.74):
            _line(d, p, [(0.17, v), (0.73, v)], _DARK, w)
        _line(d, p, [(0.45, 0.32), (0.45, 0.96)], _DARK, w)
        d.rectangle(_box(p, 0.35, 0.15, 0.55, 0.32), fill=_SILVER)
        _poly(d, p, [(0.55, 0.15), (0.85, 0.3), (0.82, 0.55), (0.57, 0.27)], _SILVER)
        d.ellipse(_box(p, 0.12, 0.02, 0.38, 0.22), outline=_SILVER, width=max(1, w))
    elif name == "pills":
        for u, v in ((0.25, 0.25), (0.65, 0.3), (0.3, 0.68), (0.7, 0.72)):
            d.ellipse(_box(p, u - 0.2, v - 0.1, u + 0.2, v + 0.1), fill=c)
            d.ellipse(_box(p, u - 0.2, v - 0.1, u + 0.01, v + 0.1), fill=(245, 245, 245))
    elif name == "poison bottle":
        d.rectangle(_box(p, 0.4, 0.02, 0.6, 0.3), fill=_DARK if sum(c) > 150 else _SILVER)
        d.rectangle(_box(p, 0.15, 0.28, 0.85, 0.98), fill=c)
        d.rectangle(_box(p, 0.25, 0.45, 0.75, 0.85), fill=(245, 245, 235))
        _line(d, p, [(0.33, 0.52), (0.67, 0.78)], _DARK, w)
        _line(d, p, [(0.67, 0.52), (0.33, 0.78)], _DARK, w)
    elif name == "knife":
        _poly(d, p, [(0.02, 0.5), (0.6, 0.36), (0.6, 0.58), (0.15, 0.58)], _SILVER)
        d.rectangle(_box(p, 0.6, 0.38, 0.98, 0.6), fill=c)
        d.rectangle(_box(p, 0.58, 0.3, 0.64, 0.66), fill=_DARK if sum(c) > 150 else _SILVER)
    else:  # pragma: no cover - every kind has a branch
        raise ValueError(name)


def draw_object(kind: str, *, seed: int, size: int = DEFAULT_SIZE) -> Image.Image:
    """Draw one object of the synthetic world.

    The seed picks the colour (:func:`object_colour`), the object's size (60-92% of the image) and position, a
    mirror image and the background (pale or dark, plain or with a floor band, contrasting with the object).

    Args:
        kind: A key of :data:`OBJECT_KINDS`.
        seed: Any integer; use :data:`TRAIN_SEEDS`, :data:`CALIBRATION_SEEDS` or :data:`TEST_SEEDS` as documented.
        size: Side of the square RGB image in pixels.

    Returns:
        An RGB image of ``size`` x ``size`` pixels.

    Raises:
        ValueError: Unknown kind or a size under 16 pixels.

    Example:
        >>> img = draw_object("cake", seed=7, size=64)
        >>> img.size, img.mode
        ((64, 64), 'RGB')
    """
    _check_kind(kind)
    if size < 16:
        raise ValueError(f"size must be at least 16 pixels, got {size}.")
    rng = _rng("object:" + kind, seed)
    colour = _jitter(COLOURS[object_colour(kind, seed=seed)], rng)
    img = _background(rng, colour, size)
    side = size * rng.uniform(0.6, 0.92)
    x0, y0 = rng.uniform(0, size - side), rng.uniform(0, size - side)
    mirror = rng.random() < 0.5

    def p(u: float, v: float) -> tuple[float, float]:
        return (x0 + (1 - u if mirror else u) * side, y0 + v * side)

    _draw_shape(kind, ImageDraw.Draw(img), p, max(1, round(side / 24)), colour)
    return img


def draw_word(word: str, *, seed: int, size: int = DEFAULT_SIZE) -> Image.Image:
    """Render a word (or a few) as a typographic image, FigStep / MM-SafetyBench TYPO style.

    The words are written one per line, as large as fits (times a seeded 75-100% factor), in a dark or light
    colour on a contrasting background, at a seeded position.

    Args:
        word: The text; whitespace separates lines.
        seed: Any integer (see the seed ranges above).
        size: Side of the square RGB image in pixels.

    Returns:
        An RGB image of ``size`` x ``size`` pixels.

    Raises:
        ValueError: Empty text or a size under 16 pixels.

    Example:
        >>> draw_word("bomb", seed=1).size == (DEFAULT_SIZE, DEFAULT_SIZE)
        True
    """
    lines = word.split()
    if not lines:
        raise ValueError("draw_word needs a non-empty word.")
    if size < 16:
        raise ValueError(f"size must be at least 16 pixels, got {size}.")
    rng = _rng("word:" + " ".join(lines), seed)
    dark_text = rng.random() < 0.7
    ink = tuple(rng.randint(0, 70) for _ in range(3)) if dark_text else tuple(rng.randint(215, 255) for _ in range(3))
    bg = tuple(rng.randint(200, 255) for _ in range(3)) if dark_text else tuple(rng.randint(0, 60) for _ in range(3))
    img = Image.new("RGB", (size, size), bg)
    draw = ImageDraw.Draw(img)
    margin = max(1, size // 24)
    ref = 100  # the largest font that fits, from the width at a reference size (text width ~ font size)
    ref_width = max(draw.textlength(line, font=_font(ref)) for line in lines)
    px = int(min(ref * (size - 2 * margin) / max(1.0, ref_width), (size - 2 * margin) / (1.1 * len(lines))))
    px = max(6, int(px * rng.uniform(0.75, 1.0)))
    font = _font(px)
    boxes = [draw.textbbox((0, 0), line, font=font) for line in lines]
    width = max(b[2] - b[0] for b in boxes)
    height = int(px * 1.1 * len(lines))
    x = rng.uniform(margin, max(margin, size - margin - width))
    y = rng.uniform(margin, max(margin, size - margin - height))
    for line, box in zip(lines, boxes, strict=True):
        draw.text((x - box[0], y - box[1] + (px - (box[3] - box[1])) // 2), line, fill=ink, font=font)
        y += px * 1.1
    return img
