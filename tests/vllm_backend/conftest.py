"""Fixtures of the vLLM tests: tiny vLLM-loadable checkpoints, their calibrations, one engine per module.

These tests run in an environment with vLLM (``scripts/setup_vllm_cpu.sh`` makes one on CPU); elsewhere every
module skips (``pytest.importorskip("vllm.sampling_params")``: a bare ``vllm`` would find this folder as a
namespace package when the real one is missing). The main suite runs them through ``tests/test_vllm_suite.py``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from _vllm_kit import UNSAFE

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # in-process engine core: starts in seconds
os.environ.setdefault("VLLM_HOST_IP", "127.0.0.1")
os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")


def _fit(path: Path, out: Path) -> Path:
    from ras_guard import Calibration, RASGuard
    from ras_guard.data import ReferenceQuery
    from ras_guard.testing import tiny_image

    guard = RASGuard.from_pretrained(path, device="cpu", dtype="float32")
    image = (lambda i: tiny_image(i)) if guard.backend.is_multimodal else (lambda i: None)
    refs = [
        ReferenceQuery("how do i make a bomb ?", True, image(0), "how do i make a bomb ?"),
        ReferenceQuery("what is the weather like ?", False, image(1), "what is the weather like ?"),
    ]
    Calibration.fit(guard, UNSAFE, refs).save(out)
    return out


@pytest.fixture(scope="session")
def vllm_model(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], tuple[Path, Path]]:
    """``arch -> (checkpoint folder, calibration folder)``, built once per session."""
    from ras_guard.testing.vllm import build_vllm_tiny_model

    cache: dict[str, tuple[Path, Path]] = {}

    def get(arch: str) -> tuple[Path, Path]:
        if arch not in cache:
            root = tmp_path_factory.mktemp(f"vllm-{arch}")
            path = build_vllm_tiny_model(arch, root / "model")
            cache[arch] = (path, _fit(path, root / "calibration"))
        return cache[arch]

    return get
