"""Configs, special tokens and chat templates of the tiny test models built by :mod:`ras_guard.testing`.

Private: every value here exists to make :func:`ras_guard.testing.build_tiny_model` produce a small, realistic
checkpoint of one transformers architecture. The chat templates follow the style of each real model family
(LLaVA-1.5, Qwen2-VL, Idefics3/SmolVLM, Gemma 3, Llama 3) and all of them also render ``tools``, assistant
``tool_calls`` and ``tool`` messages.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ._tiny_templates import (
    GEMMA3_TEMPLATE,
    IDEFICS3_TEMPLATE,
    LLAMA_TEMPLATE,
    LLAVA_TEMPLATE,
    QWEN2_VL_TEMPLATE,
)

# ---------------------------------------------------------------------------------------------------------------
# Vocabulary
# ---------------------------------------------------------------------------------------------------------------

_COMMON_WORDS = """
the of and to a in is it you that he was for on are with as i his they be at one have this from or had by not
word but what some we can out other were all there when up use your how said an each she which do their time if
will way about many then them write would like so these her long make thing see him two has look more day could
go come did number sound no most people my over know water than call first who may down side been now find any
new work part take get place made live where after back little only round man year came show every good me give
our under name very through just form sentence great think say help low line differ turn cause much mean before
move right boy old too same tell does set three want air well also play small end put home read hand port large
spell add even land here must big high such follow act why ask men change went light kind off need house picture
try us again animal point mother world near build self earth father head stand own page should country found
answer school grow study still learn plant cover food sun four between state keep eye never last let thought
city tree cross farm hard start might story saw far sea draw left late run while press close night real life few
north open seem together next white children begin got walk example ease paper group always music those both mark
often letter until mile river car feet care second book carry took science eat room friend began idea fish
mountain stop once base hear horse cut sure watch color face wood main enough plain girl usual young ready above
ever red list though feel talk bird soon body dog family direct pose leave song measure door product black short
class wind question happen complete ship area half rock order fire south problem piece told knew pass since top
whole king space heard best hour better true during hundred five remember step early hold west ground interest
reach fast verb sing listen six table travel less morning ten simple several toward war lay against pattern slow
center love person money serve appear road map rain rule govern pull cold notice voice unit power town fine
certain fly fall lead cry dark machine note wait plan figure star box noun field rest correct able pound done
beauty drive stood contain front teach week final gave green oh quick develop ocean warm free minute strong
special mind behind clear tail produce fact street inch multiply nothing course stay wheel full force blue object
decide surface deep moon island foot system busy test record boat common gold possible plane stead dry wonder
laugh thousand ago ran check game shape equate hot miss brought heat snow tire bring yes distant fill east paint
language among image photo describe please sorry cannot hello thanks weather safe unsafe harmful bomb weapon knife
gun drug poison steal hack kill attack refuse assist request item brief sunny cloudy city
type function name description parameters properties required string integer boolean array object enum items
null false arguments tool tools call result error
"""


def base_words() -> list[str]:
    """The shared word list (a few hundred common English words, numbers 0-100, letters and punctuation), in order."""
    words = _COMMON_WORDS.split()
    words += [str(i) for i in range(101)] + list("abcdefghijklmnopqrstuvwxyz")
    words += list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
    return words


def template_words(template: str) -> list[str]:
    """Words appearing in the string literals of a Jinja template (so the template's own text is in-vocabulary)."""
    out: list[str] = []
    for literal in re.findall(r"'((?:[^'\\]|\\.)*)'", template):
        out += re.findall(r"[^\W_]+", literal.replace("\\n", " ").lower())
    return out



# ---------------------------------------------------------------------------------------------------------------
# Per-architecture specs
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArchSpec:
    """Everything :func:`ras_guard.testing.build_tiny_model` needs to know about one architecture.

    Attributes:
        template: The Jinja chat template.
        specials: Named special tokens (``bos_token``, ``eos_token``, ``unk_token``, ``pad_token``).
        extra: Other special tokens (the image placeholders, the turn markers...).
        named_extra: Model-specific named tokens set as tokenizer attributes (Gemma 3's ``boi_token``...).
        add_bos: Whether the tokenizer's post-processor prepends ``bos_token`` (the Llama/Gemma tokenizers do).
        stop: Extra stop tokens for ``generation_config.eos_token_id``.
        multimodal: Whether it is a vision-language model.
    """

    template: str
    specials: dict[str, str]
    extra: tuple[str, ...] = ()
    named_extra: dict[str, str] = field(default_factory=dict)
    add_bos: bool = False
    stop: tuple[str, ...] = ()
    multimodal: bool = True


_QWEN_EXTRA = (
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
_QWEN_SPECIALS = {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "unk_token": "<unk>"}
_ROW_COL = tuple(f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7))

SPECS: dict[str, ArchSpec] = {
    "llava": ArchSpec(
        LLAVA_TEMPLATE,
        {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"},
        ("<image>",),
        add_bos=True,
    ),
    "qwen2_vl": ArchSpec(QWEN2_VL_TEMPLATE, _QWEN_SPECIALS, _QWEN_EXTRA, stop=("<|endoftext|>",)),
    "qwen2_5_vl": ArchSpec(QWEN2_VL_TEMPLATE, _QWEN_SPECIALS, _QWEN_EXTRA, stop=("<|endoftext|>",)),
    "idefics3": ArchSpec(
        IDEFICS3_TEMPLATE,
        {
            "bos_token": "<|begin_of_text|>",
            "eos_token": "<end_of_utterance>",
            "unk_token": "<unk>",
            "pad_token": "<pad>",
        },
        ("<fake_token_around_image>", "<image>", "<global-img>", "<end_of_utterance>", "<|end_of_text|>")
        + _ROW_COL,
        add_bos=True,
        stop=("<|end_of_text|>",),
    ),
    "gemma3": ArchSpec(
        GEMMA3_TEMPLATE,
        {"bos_token": "<bos>", "eos_token": "<eos>", "unk_token": "<unk>", "pad_token": "<pad>"},
        ("<start_of_turn>", "<end_of_turn>", "<start_of_image>", "<end_of_image>", "<image_soft_token>"),
        {"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>", "image_token": "<image_soft_token>"},
        add_bos=True,
        stop=("<end_of_turn>",),
    ),
    "llama": ArchSpec(
        LLAMA_TEMPLATE,
        {
            "bos_token": "<|begin_of_text|>",
            "eos_token": "<|eot_id|>",
            "unk_token": "<unk>",
            "pad_token": "<|finetune_right_pad_id|>",
        },
        ("<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"),
        add_bos=True,
        stop=("<|end_of_text|>",),
        multimodal=False,
    ),
}

# Tiny decoder sizes shared by every architecture.
TEXT: dict[str, Any] = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 1024,
    "initializer_range": 0.2,
}
VISION: dict[str, Any] = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "image_size": 16,
    "patch_size": 4,
    "initializer_range": 0.2,
}


def model_config(arch: str, ids: dict[str, int], vocab_size: int) -> Any:
    """The transformers config of the tiny ``arch`` model.

    Args:
        arch: One of :data:`SPECS`.
        ids: Token id of every special token (by its string).
        vocab_size: Size of the tokenizer's vocabulary.
    """
    import transformers as tf

    spec = SPECS[arch]
    tok: dict[str, Any] = {
        "bos_token_id": ids.get(spec.specials.get("bos_token", "")),
        "eos_token_id": ids[spec.specials["eos_token"]],
        "pad_token_id": ids[spec.specials["pad_token"]],
        "vocab_size": vocab_size,
    }
    if arch == "llama":
        return tf.LlamaConfig(**TEXT, **tok, tie_word_embeddings=False)
    if arch == "llava":
        return tf.LlavaConfig(
            vision_config=tf.CLIPVisionConfig(**VISION, projection_dim=32),
            text_config=tf.LlamaConfig(**TEXT, **tok),
            image_token_index=ids["<image>"],
            image_seq_length=16,
            vision_feature_select_strategy="default",
            vision_feature_layer=-2,
            tie_word_embeddings=False,
        )
    if arch in ("qwen2_vl", "qwen2_5_vl"):
        # head_dim 16: mrope sections 2+3+3
        text: dict[str, Any] = {**TEXT, "hidden_size": 64, "intermediate_size": 128}
        rope: dict[str, Any] = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]}
        vis: dict[str, Any] = {"depth": 2, "num_heads": 2, "patch_size": 4, "spatial_merge_size": 2}
        vis.update(temporal_patch_size=2, in_channels=3, initializer_range=0.2)
        if arch == "qwen2_vl":
            cfg_cls: Any
            cfg_cls, vcfg = tf.Qwen2VLConfig, {**vis, "embed_dim": 32, "mlp_ratio": 2, "hidden_size": 64}
        else:
            cfg_cls = tf.Qwen2_5_VLConfig
            vcfg = {**vis, "hidden_size": 32, "intermediate_size": 64, "out_hidden_size": 64}
            vcfg.update(window_size=16, fullatt_block_indexes=[1])
        return cfg_cls(
            text_config={**text, **tok, "rope_parameters": rope},
            vision_config=vcfg,
            image_token_id=ids["<|image_pad|>"],
            video_token_id=ids["<|video_pad|>"],
            vision_start_token_id=ids["<|vision_start|>"],
            vision_end_token_id=ids["<|vision_end|>"],
            tie_word_embeddings=False,
        )
    if arch == "idefics3":
        return tf.Idefics3Config(
            vision_config=tf.Idefics3VisionConfig(**VISION),
            text_config=tf.LlamaConfig(**TEXT, **tok),
            image_token_id=ids["<image>"],
            scale_factor=2,
            tie_word_embeddings=False,
        )
    if arch == "gemma3":
        text = {**TEXT, "head_dim": 8, "query_pre_attn_scalar": 8, "sliding_window": 8}
        text.update(layer_types=["sliding_attention", "full_attention"])
        text.update(final_logit_softcapping=None, attn_logit_softcapping=None)
        return tf.Gemma3Config(
            vision_config=tf.SiglipVisionConfig(**VISION),
            text_config=tf.Gemma3TextConfig(**text, **tok),
            mm_tokens_per_image=4,
            boi_token_index=ids["<start_of_image>"],
            eoi_token_index=ids["<end_of_image>"],
            image_token_index=ids["<image_soft_token>"],
            initializer_range=0.2,
        )
    raise KeyError(arch)


def processor(arch: str, tokenizer: Any) -> Any:
    """The ``ProcessorMixin`` of a tiny VLM, with tiny image sizes, around ``tokenizer``."""
    import transformers as tf

    template = SPECS[arch].template
    image: Any
    if arch == "llava":
        image = tf.CLIPImageProcessor(size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16})
        return tf.LlavaProcessor(
            image_processor=image,
            tokenizer=tokenizer,
            patch_size=4,
            vision_feature_select_strategy="default",
            num_additional_image_tokens=1,  # CLIP's CLS token, dropped again by the "default" strategy
            chat_template=template,
        )
    if arch in ("qwen2_vl", "qwen2_5_vl"):
        raise ValueError("the Qwen-VL processors are written by qwen_processor_config()")
    if arch == "idefics3":
        image = tf.Idefics3ImageProcessor(
            size={"longest_edge": 32}, max_image_size={"longest_edge": 16}, do_image_splitting=True
        )
        return tf.Idefics3Processor(
            image_processor=image, tokenizer=tokenizer, image_seq_len=4, chat_template=template
        )
    if arch == "gemma3":
        image = tf.Gemma3ImageProcessor(size={"height": 16, "width": 16})
        return tf.Gemma3Processor(
            image_processor=image, tokenizer=tokenizer, image_seq_length=4, chat_template=template
        )
    raise KeyError(arch)


# 1 to 16 image tokens (each one a merged 8x8-pixel cell)
QWEN_PIXELS: dict[str, Any] = {"shortest_edge": 8 * 8, "longest_edge": 32 * 32}
QWEN_PATCHES: dict[str, Any] = {"patch_size": 4, "merge_size": 2, "temporal_patch_size": 2}


def qwen_processor_config(arch: str) -> dict[str, Any]:
    """``processor_config.json`` of a tiny Qwen2-VL / Qwen2.5-VL.

    Written by hand because transformers 5 cannot build these processors without torchvision (their video
    processor needs it), while the image processor has a PIL backend.
    """
    import transformers as tf

    image = tf.Qwen2VLImageProcessor(size=dict(QWEN_PIXELS), **QWEN_PATCHES).to_dict()
    image["image_processor_type"] = "Qwen2VLImageProcessor"
    video = {"video_processor_type": "Qwen2VLVideoProcessor", "size": dict(QWEN_PIXELS), **QWEN_PATCHES}
    video.update(image_mean=image["image_mean"], image_std=image["image_std"])
    name = "Qwen2VLProcessor" if arch == "qwen2_vl" else "Qwen2_5_VLProcessor"
    return {"image_processor": image, "video_processor": video, "processor_class": name}
