from __future__ import annotations

import io

import pytest
from PIL import Image

from ras_guard.errors import (
    CorruptImageError,
    EmptyMessagesError,
    ImageTooLargeError,
    InvalidMessageError,
    RASGuardError,
    UnknownContentPartError,
    UnsupportedInputError,
)
from ras_guard.images import image_sha256, load_image
from ras_guard.messages import normalize_messages


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def test_sources_path_bytes_pil(tmp_path) -> None:
    img = Image.new("RGBA", (5, 4), (10, 20, 30, 255))
    path = tmp_path / "x.png"
    img.save(path)
    for src in (img, _png(img), str(path), path):
        out = load_image(src)
        assert out.mode == "RGB" and out.size == (5, 4)
    assert image_sha256(load_image(path)) == image_sha256(load_image(_png(img)))


def test_corrupt_bytes_raise_typed_error() -> None:
    with pytest.raises(CorruptImageError, match="cannot decode"):
        load_image(b"\x89PNG\r\n\x1a\nnot really a png")
    with pytest.raises(CorruptImageError):
        load_image(_png(Image.new("RGB", (8, 8)))[:40])  # truncated


def test_huge_image_is_refused_before_decoding() -> None:
    huge = Image.new("1", (20000, 20000))
    with pytest.raises(ImageTooLargeError, match="20000x20000"):
        load_image(huge)
    with pytest.raises(ImageTooLargeError, match="exceeds the limit"):
        load_image(_png(huge))
    with pytest.raises(ImageTooLargeError, match="5000x5000"):
        load_image(_png(Image.new("1", (5000, 5000))), max_pixels=1000)
    with pytest.raises(ImageTooLargeError, match="bytes"):
        load_image(b"0" * 100, max_bytes=10)


def test_urls_and_bad_types_are_refused() -> None:
    with pytest.raises(InvalidMessageError, match="fetch the image first"):
        load_image("https://example.com/a.png")
    with pytest.raises(InvalidMessageError, match="does not exist"):
        load_image("/no/such/file.png")
    with pytest.raises(InvalidMessageError, match="unsupported image type"):
        load_image(12)


def test_normalize_multi_turn_multi_image() -> None:
    a, b = Image.new("RGB", (4, 4), "red"), Image.new("RGB", (4, 4), "blue")
    conv = normalize_messages([
        {"role": "system", "content": "be nice"},
        {"role": "user", "content": [{"type": "image", "image": a}, "first?"]},
        {"role": "assistant", "content": "answer"},
        {"role": "user", "content": [{"type": "text", "text": "compare"}, {"type": "image", "image": b},
                                     {"type": "image", "image": _png(a)}]},
    ])
    assert conv.last_user == 3 and conv.question == "compare"
    assert len(conv.images) == 3 and conv.last_user_image_hashes() == [image_sha256(b), image_sha256(a)]
    rewritten = conv.with_last_user_text("new")
    assert [p["type"] for p in rewritten[-1]["content"]] == ["image", "image", "text"]
    assert len(rewritten) == 4 and rewritten[-1]["content"][-1]["text"] == "new"


@pytest.mark.parametrize(
    ("messages", "error", "match"),
    [
        ([], EmptyMessagesError, "empty"),
        ([{"role": "system", "content": "x"}], EmptyMessagesError, "no user message"),
        ([{"role": "user", "content": []}], EmptyMessagesError, "no content"),
        ([{"role": "user", "content": [{"type": "audio", "audio": b""}]}], UnknownContentPartError, "'audio'"),
        ([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}], UnknownContentPartError, "image_url"),
        ([{"role": "robot", "content": "x"}], InvalidMessageError, "robot"),
        ([{"role": "user", "content": 5}], InvalidMessageError, "content must be"),
        ([{"role": "user", "content": [{"type": "image"}]}], InvalidMessageError, "needs an 'image'"),
        ("hello", InvalidMessageError, "list"),
        ([{"role": "user", "content": [{"type": "image", "image": b"garbage"}]}], CorruptImageError, r"messages\[0\]"),
    ],
)
def test_bad_messages_raise_typed_errors(messages, error, match) -> None:
    with pytest.raises(error, match=match) as info:
        normalize_messages(messages)
    assert isinstance(info.value, RASGuardError)


def test_text_only_models_refuse_images() -> None:
    with pytest.raises(UnsupportedInputError, match="text-only"):
        normalize_messages([{"role": "user", "content": [{"type": "image", "image": Image.new("RGB", (2, 2))}]}],
                           allow_images=False)
