"""Tiny random-weight checkpoints that both transformers and vLLM's CPU backend load (test kit).

:func:`ras_guard.testing.build_tiny_model` makes head size 8 decoders, which vLLM's CPU attention backend
rejects (it takes 32, 64, 80, ...). :func:`build_vllm_tiny_model` writes the same tokenizer, processor and chat
template, then replaces the weights with a decoder of head size 32, and for LLaVA saves the vision tower under
the published llava-hf key layout (``vision_tower.vision_model.*``), the one vLLM accepts.

Example:
    >>> path = build_vllm_tiny_model("llama", tmp_dir / "llama")  # doctest: +SKIP
    >>> from vllm import LLM  # doctest: +SKIP
    >>> llm = LLM(str(path), dtype="float32")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any

__all__ = ["VLLM_TINY_ARCHITECTURES", "build_vllm_tiny_model", "save_llava_for_vllm"]

VLLM_TINY_ARCHITECTURES: tuple[str, ...] = ("llama", "llava")
"""Architectures :func:`build_vllm_tiny_model` can build."""

_TEXT = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "head_dim": 32,
}


def _llava_hf_layout(state: dict[str, Any]) -> dict[str, Any]:
    """``vision_tower.*`` -> ``vision_tower.vision_model.*`` (the llava-hf layout vLLM loads)."""
    out = {}
    for key, value in state.items():
        if ".vision_tower." in f".{key}" and ".vision_model." not in key:
            head, _, tail = key.partition("vision_tower.")
            key = f"{head}vision_tower.vision_model.{tail}"
        out[key] = value
    return out


def build_vllm_tiny_model(
    arch: str, path: str | os.PathLike[str], *, seed: int = 0, vocab_words: tuple[str, ...] = ()
) -> pathlib.Path:
    """Build a tiny random-weight ``arch`` checkpoint loadable by transformers and by vLLM on CPU.

    Args:
        arch: One of :data:`VLLM_TINY_ARCHITECTURES`.
        path: Output folder (created; existing files overwritten).
        seed: Seed of the weights.
        vocab_words: Extra vocabulary words (see :func:`ras_guard.testing.build_tiny_model`).

    Returns:
        The folder.

    Raises:
        ValueError: ``arch`` is not supported.
    """
    if arch not in VLLM_TINY_ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(VLLM_TINY_ARCHITECTURES)}")
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText

    from . import build_tiny_model

    folder = build_tiny_model(arch, path, seed=seed, vocab_words=vocab_words)
    config = AutoConfig.from_pretrained(folder, local_files_only=True)
    text = config.get_text_config()
    for key, value in _TEXT.items():
        setattr(text, key, value)
    if arch == "llava":
        config.projector_hidden_act = "gelu"
    auto = AutoModelForImageTextToText if arch == "llava" else AutoModelForCausalLM
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = auto.from_config(config, dtype=torch.float32)
    gen = json.loads((folder / "generation_config.json").read_text())
    model.save_pretrained(folder)
    (folder / "generation_config.json").write_text(json.dumps(gen, indent=2) + "\n")
    if arch == "llava":
        save_llava_for_vllm(model, folder)
    return folder


def save_llava_for_vllm(model: Any, folder: str | os.PathLike[str]) -> None:
    """Rewrite the weights of a transformers 5 LLaVA in ``folder`` in the llava-hf key layout (vLLM loads it).

    Args:
        model: The ``LlavaForConditionalGeneration`` whose ``config.json`` is already in ``folder``.
        folder: Its checkpoint folder; existing ``model*.safetensors*`` files are replaced by one file.
    """
    from safetensors.torch import save_file

    root = pathlib.Path(folder)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    for old in root.glob("model*.safetensors*"):
        old.unlink()
    save_file(_llava_hf_layout(_hf_keys(state)), str(root / "model.safetensors"), metadata={"format": "pt"})


def _hf_keys(state: dict[str, Any]) -> dict[str, Any]:
    """transformers 5 in-memory names -> the llava-hf checkpoint names (``language_model.model.*``...)."""
    out = {}
    for key, value in state.items():
        if key.startswith("model.language_model."):
            key = "language_model.model." + key[len("model.language_model.") :]
        elif key.startswith("model.vision_tower."):
            key = "vision_tower." + key[len("model.vision_tower.") :]
        elif key.startswith("model.multi_modal_projector."):
            key = "multi_modal_projector." + key[len("model.multi_modal_projector.") :]
        elif key == "lm_head.weight":
            key = "language_model.lm_head.weight"
        out[key] = value
    return out
