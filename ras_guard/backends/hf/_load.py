"""Loading helpers of the HF backend (private): dtype names, quiet loading, the pickle refusal, cache naming."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from ...errors import ModelLoadError


def cache_name() -> str:
    """The name of the KV-cache argument and output of ``generate`` (``cache`` from transformers 5.24 on)."""
    from transformers.generation.utils import GenerateDecoderOnlyOutput

    names = {f.name for f in dataclasses.fields(GenerateDecoderOnlyOutput)}
    return "cache" if "cache" in names else "past_key_values"



@contextmanager
def quiet_loading() -> Iterator[None]:
    """No "Loading weights" progress bar while a checkpoint loads (restored afterwards)."""
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            hf_logging.enable_progress_bar()


def resolve_dtype(dtype: Any) -> Any:
    if dtype is None or dtype == "auto" or isinstance(dtype, torch.dtype):
        return dtype or "auto"
    if isinstance(dtype, str) and isinstance(getattr(torch, dtype, None), torch.dtype):
        return getattr(torch, dtype)
    raise ModelLoadError(f"dtype {dtype!r} is not a torch dtype; use e.g. 'float32', 'bfloat16' or 'auto'.")


def unsafe_pickle(folder: Path, exc: BaseException) -> ModelLoadError:
    """The error for pickle weights that torch's safe (``weights_only``) loader refuses."""
    files = sorted(p.name for p in folder.glob("*.bin")) or ["the .bin weights"]
    detail = str(exc).split("WeightsUnpickler error:", 1)[-1].strip().splitlines()
    reason = detail[0].strip() if len(detail) and "WeightsUnpickler" in str(exc) else type(exc).__name__
    reason = reason.split(". ", 1)[0][:120]  # torch's advice after it (allow-list the global...) is not safe
    return ModelLoadError(
        f"cannot load {str(folder)!r}: its pickle weights ({', '.join(files)}) hold objects other than tensors "
        f"({reason}), which unpickling could run as code, so ras-guard refuses them. Use safetensors weights "
        "instead: download the checkpoint's model.safetensors from its publisher (on the Hugging Face Hub, the "
        "repository's safetensors conversion pull request, refs/pr/N), or ask the publisher for one. Do not "
        "load pickle files you do not trust with torch's unsafe loader."
    )
