"""The tiny checkpoints of :mod:`ras_guard.testing`: they build, load through the Auto classes and generate."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from ras_guard.testing import (
    ARCHITECTURES,
    VLM_ARCHITECTURES,
    build_tiny_model,
    load_tiny_model,
    needs_torchvision,
    tiny_image,
    video_processor_optional,
)

GEN = {"max_new_tokens": 8, "do_sample": False}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "weather",
            "description": "Get the weather",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]


def _conversations(multimodal: bool) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Two different conversations: a short one with a system message, a longer one with 2 images and 3 turns."""
    first: list[dict[str, Any]] = [
        {"role": "system", "content": "You are a careful helper."},
        {
            "role": "user",
            "content": [{"type": "image", "image": tiny_image(0)}, {"type": "text", "text": "What?"}],
        },
    ]
    second: list[dict[str, Any]] = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Look at this picture"},
                {"type": "image", "image": tiny_image(1, (40, 28))},
                {"type": "text", "text": "and this one"},
                {"type": "image", "image": tiny_image(2, (16, 32))},
            ],
        },
        {"role": "assistant", "content": [{"type": "text", "text": "I see two pictures of a dog."}]},
        {"role": "user", "content": "Tell me more about the first one, please."},
    ]
    if not multimodal:  # text-only: string content
        for conv in (first, second):
            for m in conv:
                if not isinstance(m["content"], str):
                    m["content"] = " ".join(p.get("text", "") for p in m["content"])
    return first, second


def _encode(processor: Any, convs: list[list[dict[str, Any]]], multimodal: bool) -> Any:
    kw = {"tokenize": True, "return_dict": True, "return_tensors": "pt", "add_generation_prompt": True}
    batch = convs if len(convs) > 1 else convs[0]
    if multimodal:
        return processor.apply_chat_template(
            batch, processor_kwargs={"padding": True, "padding_side": "left"}, **kw
        )
    return processor.apply_chat_template(batch, padding=True, tokenizer_kwargs={"padding_side": "left"}, **kw)


@pytest.fixture(scope="module", params=ARCHITECTURES)
def loaded(request: pytest.FixtureRequest, tiny_model_path: Any) -> tuple[str, Path, Any, Any]:
    path = tiny_model_path(request.param)
    processor, model = load_tiny_model(path)
    return request.param, path, processor, model


def test_loads_through_the_auto_classes_and_generates(loaded: tuple[str, Path, Any, Any]) -> None:
    arch, path, processor, model = loaded
    assert json.loads((path / "config.json").read_text())["model_type"] == arch
    multimodal = arch in VLM_ARCHITECTURES
    assert hasattr(processor, "image_processor") == multimodal
    first, _ = _conversations(multimodal)
    enc = _encode(processor, [first], multimodal)
    with torch.inference_mode():
        out = model.generate(**enc, **GEN)
    assert 0 < out.shape[1] - enc["input_ids"].shape[1] <= 8
    assert model.get_output_embeddings() is not None
    assert getattr(model.config.get_text_config(), "final_logit_softcapping", None) is None


def test_batch_rows_equal_single_runs_and_hidden_states_give_the_logits(
    loaded: tuple[str, Path, Any, Any],
) -> None:
    arch, _, processor, model = loaded
    multimodal = arch in VLM_ARCHITECTURES
    convs = _conversations(multimodal)
    gen = {**GEN, "return_dict_in_generate": True, "output_logits": True, "output_hidden_states": True}
    with torch.inference_mode():
        singles = [model.generate(**_encode(processor, [c], multimodal), **gen) for c in convs]
        batch_enc = _encode(processor, list(convs), multimodal)
        batch = model.generate(**batch_enc, **gen)
        head = model.get_output_embeddings()
        for step, hidden in enumerate(batch.hidden_states):  # last layer == final-norm output, at every step
            torch.testing.assert_close(head(hidden[-1][:, -1]), batch.logits[step], atol=1e-5, rtol=0)
    assert batch_enc["attention_mask"][0, 0] == 0  # the shorter conversation is left-padded
    length = batch_enc["input_ids"].shape[1]
    for row, single in enumerate(singles):
        new = single.sequences[0, single.sequences.shape[1] - len(single.logits) :]
        assert batch.sequences[row, length : length + len(new)].tolist() == new.tolist()
        got = torch.stack(batch.logits, 1)[row, : len(new)]
        torch.testing.assert_close(got, torch.stack(single.logits, 1)[0], atol=1e-4, rtol=0)


def test_chat_template_renders_tools_tool_calls_and_tool_messages(loaded: tuple[str, Path, Any, Any]) -> None:
    _, _, processor, _ = loaded
    messages = [
        {"role": "user", "content": "What is the weather in the city?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"function": {"name": "weather", "arguments": {"city": "x"}}}],
        },
        {"role": "tool", "content": "sunny"},
        {"role": "assistant", "content": "It is sunny."},
    ]
    text = processor.apply_chat_template(messages, tools=TOOLS, tokenize=False, add_generation_prompt=True)
    assert json.dumps(TOOLS[0]) in text
    assert '{"name": "weather", "arguments": {"city": "x"}}' in text and "sunny" in text
    plain = processor.apply_chat_template(messages[:1], tokenize=False, add_generation_prompt=True)
    assert "weather" in plain and "Tools" not in plain


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_same_seed_gives_the_same_weights(arch: str, tmp_path: Path) -> None:
    a, b, c = (
        load_file(build_tiny_model(arch, tmp_path / f"{s}{i}", seed=s) / "model.safetensors")
        for i, s in enumerate((3, 3, 4))
    )
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_vocab_words_become_tokens_without_moving_the_others(tmp_path: Path) -> None:
    plain, _ = load_tiny_model(build_tiny_model("llama", tmp_path / "plain"))
    extended, _ = load_tiny_model(
        build_tiny_model("llama", tmp_path / "ext", vocab_words=["Grenade", "xray"])
    )
    ids = extended("a GRENADE, xray", add_special_tokens=False)["input_ids"]
    assert len(ids) == 4 and extended.unk_token_id not in ids
    assert plain("a grenade", add_special_tokens=False)["input_ids"][1] == plain.unk_token_id
    assert {k: v for k, v in extended.get_vocab().items() if k in plain.get_vocab()} == plain.get_vocab()


def test_unknown_architecture_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown architecture"):
        build_tiny_model("gpt2", tmp_path)


def test_qwen_generate_in_two_threads_matches_serial(tiny_model_path: Any) -> None:
    processor, model = load_tiny_model(tiny_model_path("qwen2_vl"))
    convs = [
        [{"role": "user", "content": [{"type": "image", "image": tiny_image(i, (8 + 16 * i, 24))}]}]
        for i in (0, 1)
    ]
    encs = [_encode(processor, [c], True) for c in convs]

    def run(enc: Any) -> list[int]:
        with torch.inference_mode():
            return model.generate(**enc, **GEN)[0].tolist()

    expected = [run(e) for e in encs]
    got: dict[int, list[list[int]]] = {0: [], 1: []}
    threads = [
        threading.Thread(target=lambda i=i: [got[i].append(run(encs[i])) for _ in range(3)]) for i in (0, 1)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == {i: [expected[i]] * 3 for i in (0, 1)}


def test_video_processor_optional_restores_transformers() -> None:
    from transformers import processing_utils as pu

    before = (
        pu._LazyAutoProcessorMapping._MAPPING_NAMES["video_processor"],
        pu.ProcessorMixin.check_argument_for_proper_class,
    )
    with video_processor_optional():
        pass
    after = (
        pu._LazyAutoProcessorMapping._MAPPING_NAMES["video_processor"],
        pu.ProcessorMixin.check_argument_for_proper_class,
    )
    assert after == before
    assert not needs_torchvision("llava") and not needs_torchvision("llama")
