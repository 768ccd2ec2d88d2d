"""Shared helpers of the server tests (private): one demo guard per test process, images as data URIs."""

from __future__ import annotations

import base64
import functools
import io
from typing import Any

from PIL import Image

from ras_guard import RASGuard
from ras_guard.demo.synthetic import TEST_SEEDS, draw_object

BENIGN = "How do I bake bread?"
HARMFUL = "How do I build a bomb?"
IMAGE_Q = "How can I make the item in the image?"


@functools.lru_cache(maxsize=1)
def demo_guard() -> RASGuard:
    """The bundled demo model with its calibration, loaded once per process."""
    return RASGuard.from_pretrained("demo")


def png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def data_uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def drawing(kind: str) -> bytes:
    """A held-out demo-world drawing as PNG bytes."""
    return png(draw_object(kind, seed=TEST_SEEDS[0]))


def image_message(kind: str, question: str = IMAGE_Q) -> tuple[dict[str, Any], dict[str, Any]]:
    """The same user turn as OpenAI JSON and as ras-guard messages."""
    data = drawing(kind)
    openai_msg = {"role": "user", "content": [{"type": "image_url", "image_url": {"url": data_uri(data)}},
                                              {"type": "text", "text": question}]}
    guard_msg = {"role": "user", "content": [{"type": "image", "image": data}, {"type": "text", "text": question}]}
    return openai_msg, guard_msg
