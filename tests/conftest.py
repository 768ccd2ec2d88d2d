"""Shared pytest fixtures.

``tiny_model_path``: tiny random-weight checkpoints of real transformers architectures (see
:mod:`ras_guard.testing`), built lazily, once per test session, in a session temporary folder::

    def test_something(tiny_model_path):
        path = tiny_model_path("qwen2_vl")  # pathlib.Path of a save_pretrained folder
        processor, model = ras_guard.testing.load_tiny_model(path)  # or the Auto classes directly
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import pytest

from ras_guard.testing import build_tiny_model


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """Factory ``(arch, *, seed=0, vocab_words=()) -> Path`` of tiny checkpoints, built once per session.

    ``arch`` is one of ``ras_guard.testing.ARCHITECTURES``. The folders are shared by every test of the session:
    treat them as read-only (build your own with ``build_tiny_model`` to modify one).
    """
    cache: dict[tuple[str, int, tuple[str, ...]], Path] = {}

    def get(arch: str, *, seed: int = 0, vocab_words: Iterable[str] = ()) -> Path:
        key = (arch, seed, tuple(vocab_words))
        if key not in cache:
            folder = tmp_path_factory.mktemp(f"tiny-{arch}-{seed}")
            cache[key] = build_tiny_model(arch, folder, seed=seed, vocab_words=key[2])
        return cache[key]

    return get
