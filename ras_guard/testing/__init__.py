"""Tiny random-weight checkpoints of real transformers architectures, for tests.

:func:`build_tiny_model` builds a model of one of :data:`ARCHITECTURES` from a config in-process (no download,
works with ``HF_HUB_OFFLINE=1``), with a word-level tokenizer, a chat template in the style of the model family
(rendering images, system messages, several turns, ``tools``, ``tool_calls`` and ``tool`` messages) and, for the
vision-language models, the family's processor with tiny image sizes. Everything is written with
``save_pretrained``, so a test loads it back exactly like a real checkpoint:

- VLMs: ``AutoProcessor.from_pretrained(path)`` + ``AutoModelForImageTextToText.from_pretrained(path)``;
- ``llama`` (text-only): ``AutoTokenizer.from_pretrained(path)`` + ``AutoModelForCausalLM.from_pretrained(path)``.

Without torchvision, transformers 5 cannot build the Qwen2-VL / Qwen2.5-VL processors (it always loads their video
processor): load those inside :func:`video_processor_optional` (:func:`load_tiny_model` does).

The models are small enough (hidden size 32-64, 2 layers, 4-24 image tokens) that loading one and generating 8
tokens takes a fraction of a second on a CPU. Weights depend only on ``seed``; they are random, so the text they
generate is gibberish made of vocabulary words.

Example:
    >>> from ras_guard.testing import build_tiny_model
    >>> path = build_tiny_model("gemma3", tmp_dir / "gemma3")  # doctest: +SKIP
    >>> from transformers import AutoModelForImageTextToText, AutoProcessor
    >>> processor = AutoProcessor.from_pretrained(path)  # doctest: +SKIP
    >>> model = AutoModelForImageTextToText.from_pretrained(path)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
from collections.abc import Iterable, Iterator
from typing import Any

from . import _tiny_configs as _cfg
from .fake import FakeBackend

__all__ = [
    "ARCHITECTURES",
    "VLM_ARCHITECTURES",
    "FakeBackend",
    "build_tiny_model",
    "load_tiny_model",
    "needs_torchvision",
    "tiny_image",
    "video_processor_optional",
]

ARCHITECTURES: tuple[str, ...] = ("llava", "qwen2_vl", "qwen2_5_vl", "idefics3", "gemma3", "llama")
"""Architectures :func:`build_tiny_model` can build (``model_type`` of the checkpoint)."""

VLM_ARCHITECTURES: tuple[str, ...] = tuple(a for a in ARCHITECTURES if _cfg.SPECS[a].multimodal)
"""The vision-language ones among :data:`ARCHITECTURES` (all but ``llama``)."""

_QWEN = ("qwen2_vl", "qwen2_5_vl")


def _vocabulary(arch: str, vocab_words: Iterable[str]) -> list[str]:
    """Special tokens first, then the shared words, the template's words and ``vocab_words``, deduplicated."""
    spec = _cfg.SPECS[arch]
    tokens = list(spec.specials.values()) + list(spec.extra)
    words = _cfg.base_words() + _cfg.template_words(spec.template)
    words += [w.lower() for w in vocab_words]
    seen: set[str] = set()
    out: list[str] = []
    for token in tokens + words:
        if token and token not in seen:
            seen.add(token)
            out.append(token)
    return out


def _tokenizer(arch: str, vocab_words: Iterable[str]) -> Any:
    """A ``PreTrainedTokenizerFast`` over a ``tokenizers`` WordLevel model of the vocabulary."""
    from tokenizers import AddedToken, Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    spec = _cfg.SPECS[arch]
    vocab = {token: i for i, token in enumerate(_vocabulary(arch, vocab_words))}
    tok = Tokenizer(WordLevel(vocab, unk_token=spec.specials["unk_token"]))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace(), pre_tokenizers.Punctuation()])
    specials = list(dict.fromkeys([*spec.specials.values(), *spec.extra]))
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    if spec.add_bos:
        bos = spec.specials["bos_token"]
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, vocab[bos])]
        )
    extra = [t for t in spec.extra if t not in spec.specials.values()]
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        **spec.specials,
        extra_special_tokens={**spec.named_extra} if spec.named_extra else extra,
        model_max_length=1024,
        padding_side="right",  # the usual default: callers must ask for left padding to batch-generate
        chat_template=spec.template,
    )


def _generation_config(arch: str, tokenizer: Any) -> Any:
    """Greedy decoding; EOS plus the family's other stop tokens."""
    from transformers import GenerationConfig

    spec = _cfg.SPECS[arch]
    eos = [tokenizer.convert_tokens_to_ids(t) for t in (spec.specials["eos_token"], *spec.stop)]
    return GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=eos if len(eos) > 1 else eos[0],
        pad_token_id=tokenizer.pad_token_id,
        do_sample=False,
    )


def build_tiny_model(
    arch: str, path: str | os.PathLike[str], *, seed: int = 0, vocab_words: Iterable[str] = ()
) -> pathlib.Path:
    """Build a tiny random-weight checkpoint of ``arch`` and save it to ``path``.

    The folder holds ``config.json``, ``generation_config.json``, ``model.safetensors``, the tokenizer files and
    the chat template, plus the processor and image-processor configs for the vision-language models. The
    vocabulary is a few hundred common English words, the numbers 0-100, ASCII punctuation, the words of the chat
    template, ``vocab_words`` and the architecture's special tokens; other words encode to ``<unk>``. Text is
    lower-cased.

    Args:
        arch: One of :data:`ARCHITECTURES`.
        path: Output folder (created if needed; existing files are overwritten).
        seed: Seed of the weights: the same seed (and ``vocab_words``) always gives the same weights.
        vocab_words: Extra words to add to the vocabulary (appended, so the ids of the others do not move). Text
            is split on whitespace and punctuation, so a word is letters and digits.

    Returns:
        The folder, as a ``pathlib.Path``.

    Raises:
        ValueError: ``arch`` is not one of :data:`ARCHITECTURES`.

    Example:
        >>> path = build_tiny_model("llava", "/tmp/tiny-llava", vocab_words=["grenade"])  # doctest: +SKIP
        >>> from transformers import AutoModelForImageTextToText, AutoProcessor
        >>> processor = AutoProcessor.from_pretrained(path)  # doctest: +SKIP
        >>> model = AutoModelForImageTextToText.from_pretrained(path)  # doctest: +SKIP
    """
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}")
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText

    spec = _cfg.SPECS[arch]
    folder = pathlib.Path(path).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = _tokenizer(arch, vocab_words)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in [*spec.specials.values(), *spec.extra]}
    config = _cfg.model_config(arch, ids, len(tokenizer))
    auto = AutoModelForImageTextToText if spec.multimodal else AutoModelForCausalLM
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = auto.from_config(config, dtype=torch.float32)
    if arch == "gemma3":
        # Its embeddings are scaled by sqrt(hidden) and tied to the head: unscaled, the residual stream would be
        # the input token's embedding and greedy decoding would repeat the last prompt token.
        with torch.no_grad():
            model.get_input_embeddings().weight.mul_(0.3)
    model.generation_config = _generation_config(arch, tokenizer)
    model.save_pretrained(folder)
    if arch in _QWEN:
        _save_qwen_processor(arch, tokenizer, folder)
    elif spec.multimodal:
        _cfg.processor(arch, tokenizer).save_pretrained(folder)
    else:
        tokenizer.save_pretrained(folder)
    return folder


def _save_qwen_processor(arch: str, tokenizer: Any, folder: pathlib.Path) -> None:
    """Write what ``Qwen2VLProcessor.save_pretrained`` would (it cannot be built without torchvision)."""
    config = _cfg.qwen_processor_config(arch)
    tokenizer._set_processor_class(config["processor_class"])
    tokenizer.chat_template = None  # processors keep the template in chat_template.jinja, not the tokenizer
    tokenizer.save_pretrained(folder)
    (folder / "processor_config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    (folder / "chat_template.jinja").write_text(_cfg.SPECS[arch].template)


def load_tiny_model(path: str | os.PathLike[str]) -> tuple[Any, Any]:
    """Load a checkpoint folder through the public Auto classes, as a user of the library would.

    Vision-language models: ``AutoProcessor`` + ``AutoModelForImageTextToText`` (inside
    :func:`video_processor_optional`, so the Qwen-VL ones load without torchvision); text-only ones:
    ``AutoTokenizer`` + ``AutoModelForCausalLM``. The model is in eval mode, float32, on the CPU.

    Args:
        path: A folder written by :func:`build_tiny_model` (or any local checkpoint).

    Returns:
        ``(processor, model)``, where ``processor`` is the tokenizer for text-only models.

    Example:
        >>> processor, model = load_tiny_model(build_tiny_model("gemma3", tmp_dir))  # doctest: +SKIP
    """
    from transformers import (
        AutoConfig,
        AutoModelForCausalLM,
        AutoModelForImageTextToText,
        AutoProcessor,
        AutoTokenizer,
    )

    config = AutoConfig.from_pretrained(path, local_files_only=True)
    if getattr(config, "vision_config", None) is None:
        processor = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True)
    else:
        with video_processor_optional():
            processor = AutoProcessor.from_pretrained(path, local_files_only=True)
        model = AutoModelForImageTextToText.from_pretrained(path, local_files_only=True)
    return processor, model.eval()


def needs_torchvision(arch: str) -> bool:
    """Whether ``AutoProcessor`` needs torchvision for ``arch`` and it is not installed.

    In transformers 5 the Qwen2-VL / Qwen2.5-VL processors always build their video processor, which needs
    torchvision; without it ``AutoProcessor.from_pretrained`` fails (upstream issue transformers#48558).

    Example:
        >>> needs_torchvision("llava")
        False
    """
    import importlib.util

    return arch in _QWEN and importlib.util.find_spec("torchvision") is None


class _NoVideoProcessor:
    """Stands in for ``AutoVideoProcessor`` inside :func:`video_processor_optional`."""

    @classmethod
    def from_pretrained(cls, *args: Any, **kwargs: Any) -> None:
        return None


@contextlib.contextmanager
def video_processor_optional() -> Iterator[None]:
    """Let ``AutoProcessor`` load Qwen-VL processors without torchvision, with ``video_processor=None``.

    A test-only workaround (it patches two transformers internals for the duration of the block, not
    thread-safe): images and text go through the real processor code; videos are unsupported. Does nothing when
    torchvision is installed.

    Example:
        >>> with video_processor_optional():  # doctest: +SKIP
        ...     processor = AutoProcessor.from_pretrained(build_tiny_model("qwen2_vl", tmp_dir))
    """
    import importlib.util

    from transformers import processing_utils as pu

    if importlib.util.find_spec("torchvision") is not None:
        yield
        return
    names = pu._LazyAutoProcessorMapping._MAPPING_NAMES
    original_entry, original_check = (
        names["video_processor"],
        pu.ProcessorMixin.check_argument_for_proper_class,
    )

    def check(self: Any, argument_name: str, argument: Any) -> Any:
        if argument is None and argument_name == "video_processor":
            return None
        return original_check(self, argument_name, argument)

    names["video_processor"] = (__name__, "_NoVideoProcessor")
    pu.ProcessorMixin.check_argument_for_proper_class = check  # type: ignore[method-assign]
    try:
        yield
    finally:
        names["video_processor"] = original_entry
        pu.ProcessorMixin.check_argument_for_proper_class = original_check  # type: ignore[method-assign]


def tiny_image(seed: int = 0, size: tuple[int, int] = (24, 20)) -> Any:
    """A small deterministic RGB ``PIL.Image`` of random coloured blocks.

    Args:
        seed: Which image: different seeds give different images.
        size: ``(width, height)`` in pixels.

    Example:
        >>> tiny_image(1).size
        (24, 20)
    """
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    w, h = size
    blocks = rng.integers(0, 256, size=((h + 3) // 4, (w + 3) // 4, 3), dtype=np.uint8)
    pixels = np.repeat(np.repeat(blocks, 4, axis=0), 4, axis=1)[:h, :w]
    return Image.fromarray(np.ascontiguousarray(pixels))
