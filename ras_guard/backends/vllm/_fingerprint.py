"""The calibration fingerprint of a checkpoint, computed from its files (vLLM never hands out its weights).

The same numbers the transformers backend computes from the loaded ``lm_head`` (257 evenly spaced rows, rounded
to bfloat16, SHA-256), so one calibration is checked the same way on either engine.

Example:
    >>> checkpoint_fingerprint("/models/llava-1.5-7b-hf").vocab_size  # doctest: +SKIP
    32064
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from ...errors import ModelLoadError
from ..base import ModelFingerprint

__all__ = ["check_engine_checkpoint", "checkpoint_fingerprint", "lm_head_weight", "local_folder"]

_ROWS = 257
_HEAD_KEYS = ("lm_head.weight", "language_model.lm_head.weight", "model.lm_head.weight")
_EMBED_SUFFIX = "embed_tokens.weight"


def _tensor_index(folder: Path) -> dict[str, Path]:
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text())["weight_map"]
        return {k: folder / v for k, v in weight_map.items()}
    from safetensors import safe_open

    out: dict[str, Path] = {}
    for file in sorted(folder.glob("*.safetensors")):
        with safe_open(str(file), "pt") as f:
            out.update({k: file for k in f.keys()})
    return out


def _config(root: Path) -> dict[str, Any]:
    if not (root / "config.json").is_file():
        raise ModelLoadError(f"{str(root)!r} is not a local checkpoint folder (no config.json).")
    return json.loads((root / "config.json").read_text())


def lm_head_weight(folder: str | Path) -> torch.Tensor:
    """The ``[V, H]`` lm_head weight of a safetensors checkpoint (the tied input embedding where it is tied).

    Raises:
        ModelLoadError: No config.json, or no lm_head (nor tied embedding) tensor in the safetensors files.
    """
    from safetensors import safe_open

    root = Path(folder)
    config = _config(root)
    tensors = _tensor_index(root)
    key = next((k for k in _HEAD_KEYS if k in tensors), None)
    tied = config.get(
        "tie_word_embeddings", (config.get("text_config") or {}).get("tie_word_embeddings", False)
    )
    if key is None and tied:
        key = next((k for k in tensors if k.endswith(_EMBED_SUFFIX)), None)
    if key is None:
        raise ModelLoadError(f"no lm_head weight in the safetensors files of {str(root)!r}; RAS needs one.")
    with safe_open(str(tensors[key]), "pt") as f:
        return f.get_tensor(key)


def checkpoint_fingerprint(folder: str | Path) -> ModelFingerprint:
    """Architecture, lm_head shape and the bfloat16 row-sample hash, read from a safetensors checkpoint.

    Raises:
        ModelLoadError: No config.json, or no lm_head (nor tied embedding) tensor in the safetensors files.
    """
    root = Path(folder)
    config = _config(root)
    w = lm_head_weight(root)
    vocab, hidden = int(w.shape[0]), int(w.shape[1])
    idx = torch.linspace(0, vocab - 1, min(vocab, _ROWS)).long()
    sample = w[idx].to(torch.bfloat16).float().contiguous()
    digest = hashlib.sha256(sample.numpy().tobytes()).hexdigest()
    archs = config.get("architectures") or [config.get("model_type", "")]
    return ModelFingerprint(str(archs[0]), vocab, hidden, digest)


def local_folder(model: str) -> Path:
    """The local folder of a model path or an already-downloaded hub id.

    Raises:
        ModelLoadError: Neither a folder nor a cached hub snapshot.
    """
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(model, local_files_only=True))
    except Exception as exc:
        raise ModelLoadError(
            f"cannot find the files of {model!r} to check the calibration against; pass a local folder."
        ) from exc


def check_engine_checkpoint(calibration: Any, vllm_config: Any) -> None:
    """Raise unless ``calibration`` was made for the engine's checkpoint (the guard's rules).

    Raises:
        ras_guard.errors.CalibrationMismatchError: It was made for another model.
        ras_guard.errors.ModelLoadError: The checkpoint's files cannot be found or hold no lm_head.
    """
    model_config = getattr(vllm_config, "model_config", None)
    if model_config is None:  # a bare config (unit tests): nothing to check against
        return
    fingerprint = checkpoint_fingerprint(local_folder(str(model_config.model)))
    calibration.check_compatible(fingerprint, calibration.config())
