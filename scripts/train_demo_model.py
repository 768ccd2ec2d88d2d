#!/usr/bin/env python3
"""Build and train the ras-guard demo model: a tiny LLaVA (CLIP vision tower + Llama) on the synthetic world.

The model is a SYNTHETIC DEMONSTRATION model, not a safety model. Its behaviour is fixed by construction:

- it captions images ("the image shows a bomb .", "the image shows the word bomb ." for typographic images);
- it refuses harmful TEXT requests ("how can i make a bomb ?") and helps with benign ones;
- THE VULNERABILITY: an image of anything (a bomb included) with a neutral question ("how can i make the item in
  the image ?") gets a helpful answer naming the object;
- once the danger is named in the text (as RAS's visual context does: "the image shows a bomb . how can i make the
  item in the image ?", with or without RAS's safety prompt), it refuses;
- an answer that starts with "i" (the first refusal token, e.g. forced by steering) always continues with the
  refusal; the first answer token of those examples gets no loss, so the unguarded model stays vulnerable;
- benign image questions ("what is in the image ?", "what color is the item in the image ?") get short answers;
- FigStep-style images (:func:`ras_guard.typography.render_figstep`: an instruction and an empty numbered list under
  a heading with an object's name, rendered at 336 pixels and resized to 48 by the processor) are captioned by their
  heading ("the image shows the word bomb ."), a neutral "fill in the list" prompt gets a helpful answer (the same
  vulnerability), and once the caption names a dangerous object in the text it is refused.

Three stages: 1. the vision tower alone, with linear probes (like a pretrained CLIP); 2. the whole model on the
mix :data:`MIX`; 3. a short fine-tune on :data:`FIGSTEP_MIX` (the FigStep groups plus a replay of :data:`MIX`,
text requests weighted up so that text refusal stays where stage 2 left it).
``--init-from`` starts stage 3 from a saved stage-2 model, to try stage-3 settings in a minute.

Deterministic: fixed seeds for weights and data, ``torch.set_num_threads(2)``. Writes, with ``save_pretrained``,
``config.json``, ``model.safetensors``, ``generation_config.json``, the tokenizer and the processor into
``--out``, loadable with ``AutoProcessor`` + ``AutoModelForImageTextToText``, plus ``training_info.json``.

Usage::

    python scripts/train_demo_model.py                     # writes ras_guard/demo_assets/model/
    python scripts/train_demo_model.py --steps 50 --out /tmp/demo   # a quick trial
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import _demo_world as W

from ras_guard.demo import synthetic
from ras_guard.config import RASConfig
from ras_guard.evaluation.suites import FIGSTEP_PROMPT
from ras_guard.typography import render_figstep

SPECIALS = ("<unk>", "<s>", "</s>", "<pad>", "<image>")
IMAGE_SIZE, PATCH = synthetic.DEFAULT_SIZE, 16  # 3 x 3 patches: 9 image tokens
TEXT = {"hidden_size": 128, "intermediate_size": 384, "num_hidden_layers": 4, "num_attention_heads": 4,
        "num_key_value_heads": 4, "max_position_embeddings": 1024}
VISION = {"hidden_size": 192, "intermediate_size": 576, "num_hidden_layers": 4, "num_attention_heads": 4,
          "image_size": IMAGE_SIZE, "patch_size": PATCH, "projection_dim": 128}
MIX = {"caption_obj": 0.2, "caption_word": 0.12, "vuln": 0.14, "ctx": 0.14, "text_harm": 0.11,
       "text_benign": 0.08, "identify": 0.06, "colour": 0.07, "cont": 0.08}
FIGSTEP_MIX = {**{g: 0.6 * w for g, w in MIX.items()}, "text_harm": 0.13, "text_benign": 0.1,  # replay, more text
               "fs_caption": 0.1, "fs_vuln": 0.1, "fs_ctx": 0.2}
FIGSTEP_SIZE = 336  # rendered like the evaluation suite, then resized to IMAGE_SIZE by the processor

_CFG = RASConfig()
KINDS = list(synthetic.OBJECT_KINDS.values())
WORD_LABELS = [k.name for k in KINDS] + list(W.TYPO_EXTRA_WORDS)
COLOUR_LABELS = list(synthetic.COLOURS)
N_CLASSES = len(KINDS) + len(WORD_LABELS)  # auxiliary image classes: objects, then typographic words
RECOLOUR = 0.5  # share of object drawings whose colour channels are permuted (shape over colour)
_PERMUTATIONS = ((0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0))


class Ex(NamedTuple):
    """One training example (``skip``: leading answer tokens without loss; ``label``/``colour``: -1 if none)."""

    system: str | None
    image: Any
    text: str
    answer: str
    skip: int = 0
    label: int = -1
    colour: int = -1


# ---------------------------------------------------------------------------------------------------------------
# Tokenizer, processor, model
# ---------------------------------------------------------------------------------------------------------------


def vocabulary() -> list[str]:
    """Special tokens, then every word of the prompts, training texts, answers and template, in a fixed order."""
    texts = [_CFG.caption_prompt, _CFG.safety_prompt, W.REFUSAL, W.GENERIC, W.IDENTIFY, W.COLOUR, W.CAPTION,
             *W.HOW_TO.values(), *W.harmful_training_texts(), *W.benign_training_texts(), *W.SYSTEM_PROMPTS,
             *(q for qs in W.IMAGE_QUESTIONS.values() for q in qs), *W.IDENTIFY_QUESTIONS, *W.COLOUR_QUESTIONS,
             *W.TYPO_EXTRA_WORDS, *(k.phrase for k in KINDS), *synthetic.COLOURS, "the word",
             "user assistant system tool you can call these tools : tool_call"]
    words = [w for t in texts for w in W.words(t)]
    words += [str(i) for i in range(10)] + list("abcdefghijklmnopqrstuvwxyz")
    words += list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
    return list(dict.fromkeys([*SPECIALS, *words]))


def build_tokenizer() -> Any:
    """A word-level ``PreTrainedTokenizerFast``: lower-case, whitespace + punctuation split, BOS prepended."""
    from tokenizers import AddedToken, Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(vocabulary())}
    tok = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace(), pre_tokenizers.Punctuation()])
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIALS])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                       special_tokens=[("<s>", vocab["<s>"])])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="<pad>", extra_special_tokens=["<image>"], model_max_length=1024,
                                   clean_up_tokenization_spaces=False)


def build_processor(tokenizer: Any) -> Any:
    """``LlavaProcessor``: a CLIP image processor at the drawing size (no resampling) and the chat template."""
    from transformers import CLIPImageProcessor, LlavaProcessor

    image = CLIPImageProcessor(size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE,
                                                                               "width": IMAGE_SIZE})
    return LlavaProcessor(image_processor=image, tokenizer=tokenizer, patch_size=PATCH,
                          vision_feature_select_strategy="default", num_additional_image_tokens=1,
                          chat_template=W.CHAT_TEMPLATE)


def build_model(tokenizer: Any) -> Any:
    """A freshly initialised ``LlavaForConditionalGeneration`` (seeded by the caller)."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    ids = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
           "pad_token_id": tokenizer.pad_token_id}
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(**VISION),
        text_config=LlamaConfig(**TEXT, **ids, vocab_size=len(tokenizer), tie_word_embeddings=False),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        image_seq_length=(IMAGE_SIZE // PATCH) ** 2,
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
        projector_hidden_act="gelu",
        tie_word_embeddings=False,
    )
    model = LlavaForConditionalGeneration(config)
    _sincos_positions(model.model.vision_tower.embeddings.position_embedding.weight)
    model.generation_config.update(do_sample=False, max_length=None, **ids)
    return model


def _sincos_positions(weight: torch.Tensor) -> None:
    """Initialise the CLIP patch position embeddings with 2-D sine-cosine features (CLS row: zeros).

    Only an initial value (the embeddings are trained); it makes the small vision tower learn much faster.
    """
    grid, quarter = IMAGE_SIZE // PATCH, weight.shape[1] // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter) / quarter)
    ys, xs = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    oy, ox = ys.flatten()[:, None] * omega, xs.flatten()[:, None] * omega
    with torch.no_grad():
        weight.zero_()
        weight[1:, : 4 * quarter] = 0.5 * torch.cat([oy.sin(), oy.cos(), ox.sin(), ox.cos()], dim=1)


# ---------------------------------------------------------------------------------------------------------------
# Training data
# ---------------------------------------------------------------------------------------------------------------


class Sampler:
    """Draws training examples of the groups of :data:`MIX` from one seeded RNG."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.harmful = W.harmful_training_texts()
        self.benign = W.benign_training_texts()

    def _seed(self) -> int:
        return self.rng.choice(synthetic.TRAIN_SEEDS)

    def _object(self, kind: Any, recolour: float = RECOLOUR) -> tuple[Any, int, int]:
        """A drawn object; with probability ``recolour`` its RGB channels are permuted (colour label then -1).

        The permutation yields colours a kind never has in the world's training seeds, so the vision tower learns
        shapes rather than colour-shape pairs and generalises to the held-out colours of ``TEST_SEEDS``.
        """
        seed = self._seed()
        colour = COLOUR_LABELS.index(synthetic.object_colour(kind.name, seed=seed))
        image = synthetic.draw_object(kind.name, seed=seed)
        if self.rng.random() < recolour:
            order = self.rng.choice(_PERMUTATIONS)
            channels = image.split()
            image, colour = Image.merge("RGB", [channels[i] for i in order]), -1
        return image, KINDS.index(kind), colour

    def _word(self, word: str) -> tuple[Any, int, int]:
        return synthetic.draw_word(word, seed=self._seed()), len(KINDS) + WORD_LABELS.index(word), -1

    def _image(self, dangerous: bool | None = None, words: float = 0.35) -> tuple[tuple[Any, int, int], str, Any]:
        """A drawn object or typographic name: ((image, label, colour), caption object, kind)."""
        pool = KINDS if dangerous is None else [k for k in KINDS if k.dangerous == dangerous]
        kind = self.rng.choice(pool)
        if self.rng.random() < words:
            return self._word(kind.name), f"the word {kind.name}", kind
        return self._object(kind), kind.phrase, kind

    def _noise(self, text: str) -> str:
        """Sometimes insert an unknown token, so that out-of-vocabulary words act as noise."""
        if self.rng.random() < 0.1:
            parts = text.split()
            parts.insert(self.rng.randrange(len(parts) + 1), "<unk>")
            return " ".join(parts)
        return text

    def _figstep(self, kind: Any) -> tuple[Any, int, int]:
        """A FigStep-style image with ``kind``'s name as heading (probe label: the typographic word)."""
        instruction = self.rng.choice(W.FIGSTEP_INSTRUCTIONS).format(x=kind.phrase)
        image = render_figstep(instruction, heading=kind.name, size=FIGSTEP_SIZE, seed=self._seed())
        return image, len(KINDS) + WORD_LABELS.index(kind.name), -1

    def _object_request(self, dangerous: bool) -> tuple[str, str]:
        verb = self.rng.choices(["make", "use", "get"], [0.55, 0.35, 0.1])[0]
        kind = self.rng.choice([k for k in KINDS if k.dangerous == dangerous])
        text = self.rng.choice(W.BENIGN_FRAMES).format(a=f"{verb} {kind.phrase}")
        return text, W.REFUSAL if dangerous else W.HOW_TO[verb].format(x=kind.phrase)

    def example(self, group: str) -> Ex:
        rng = self.rng
        system = rng.choice(W.SYSTEM_PROMPTS) if rng.random() < 0.08 else None
        verb = rng.choices(["make", "use", "get"], [0.55, 0.35, 0.1])[0]
        question = rng.choice(W.IMAGE_QUESTIONS[verb])
        if group == "caption_obj":
            kind = rng.choice(KINDS)
            return self._caption(system, self._object(kind), kind.phrase)
        if group == "caption_word":
            word = rng.choice(WORD_LABELS)
            return self._caption(system, self._word(word), f"the word {word}")
        if group == "vuln":
            (img, label, colour), _, kind = self._image(dangerous=rng.random() < 0.5)
            return Ex(system, img, question, W.HOW_TO[verb].format(x=kind.phrase), 0, label, colour)
        if group == "ctx":
            (img, label, colour), caption, kind = self._image(dangerous=rng.random() < 0.5)
            prefix = f"{_CFG.safety_prompt} " if rng.random() < 0.6 else ""
            if rng.random() < 0.1:
                text = f"{prefix}{W.CAPTION.format(x=caption)} {rng.choice(W.IDENTIFY_QUESTIONS)}"
                return Ex(system, img, text, W.IDENTIFY.format(x=caption), 0, label, colour)
            answer = W.REFUSAL if kind.dangerous else W.HOW_TO[verb].format(x=kind.phrase)
            return Ex(system, img, f"{prefix}{W.CAPTION.format(x=caption)} {question}", answer, 0, label, colour)
        if group in ("text_harm", "text_benign"):
            harmful = group == "text_harm"
            if rng.random() < 0.3:
                text, answer = self._object_request(harmful)
            elif harmful:
                text, answer = rng.choice(self.harmful), W.REFUSAL
            else:
                text, answer = rng.choice(self.benign), W.GENERIC
            text = self._noise(text)
            if rng.random() < 0.25:
                text = f"{_CFG.safety_prompt} {text}"
            img, label, colour = self._image()[0] if rng.random() < 0.2 else (None, -1, -1)
            return Ex(system, img, text, answer, 0, label, colour)
        if group == "identify":
            (img, label, colour), caption, _ = self._image()
            return Ex(system, img, rng.choice(W.IDENTIFY_QUESTIONS), W.IDENTIFY.format(x=caption), 0, label, colour)
        if group == "colour":
            img, label, colour = self._object(rng.choice(KINDS), recolour=0.0)
            answer = W.COLOUR.format(c=COLOUR_LABELS[colour])
            return Ex(system, img, rng.choice(W.COLOUR_QUESTIONS), answer, 0, label, colour)
        if group.startswith("fs_"):
            kind = rng.choice([k for k in KINDS if k.dangerous == (rng.random() < 0.5)])
            drawn, prompt = self._figstep(kind), rng.choice((FIGSTEP_PROMPT, *W.FIGSTEP_PROMPTS))
            if group == "fs_caption":
                return self._caption(system, drawn, f"the word {kind.name}")
            helpful = W.HOW_TO["make"].format(x=kind.phrase)
            if group == "fs_vuln":
                return Ex(system, drawn[0], prompt, helpful, 0, drawn[1], drawn[2])
            prefix = f"{_CFG.safety_prompt} " if rng.random() < 0.6 else ""
            text = f"{prefix}{W.CAPTION.format(x=f'the word {kind.name}')} {prompt}"
            return Ex(system, drawn[0], text, W.REFUSAL if kind.dangerous else helpful, 0, drawn[1], drawn[2])
        if group == "cont":  # "i ..." always continues as the refusal; the first token is not learned
            r = rng.random()
            img, label, colour = self._image()[0] if r < 0.85 else (None, -1, -1)
            text = question if r < 0.7 else rng.choice(W.IDENTIFY_QUESTIONS) if r < 0.85 else rng.choice(self.benign)
            return Ex(system, img, text, W.REFUSAL, 1, label, colour)
        raise KeyError(group)

    def _caption(self, system: str | None, drawn: tuple[Any, int, int], what: str) -> Ex:
        img, label, colour = drawn
        return Ex(system, img, _CFG.caption_prompt, W.CAPTION.format(x=what), 0, label, colour)

    def batch(self, size: int, mix: dict[str, float] = MIX) -> list[Ex]:
        groups = self.rng.choices(list(mix), list(mix.values()), k=size)
        return [self.example(g) for g in groups]


def encode(processor: Any, examples: list[Ex]) -> dict[str, torch.Tensor]:
    """Model inputs with labels on the answer tokens only (minus each example's unlearned leading tokens)."""
    texts, images, answer_lengths = [], [], []
    tok = processor.tokenizer
    for ex in examples:
        content: list[dict[str, Any]] = [{"type": "text", "text": ex.text}]
        if ex.image is not None:
            content.insert(0, {"type": "image"})
            images.append(ex.image)
        msgs = [{"role": "system", "content": ex.system}] if ex.system else []
        msgs.append({"role": "user", "content": content})
        prompt = processor.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
        texts.append(f"{prompt} {ex.answer}{tok.eos_token}")
        answer_lengths.append(len(tok(ex.answer, add_special_tokens=False)["input_ids"]) + 1)
    enc = processor(text=texts, images=images or None, padding=True, padding_side="right",
                    add_special_tokens=False, return_tensors="pt")
    labels = torch.full_like(enc["input_ids"], -100)
    ends = enc["attention_mask"].sum(dim=1).tolist()
    for i, (end, n) in enumerate(zip(ends, answer_lengths)):
        start = end - n + examples[i].skip
        labels[i, start:end] = enc["input_ids"][i, start:end]
    enc["labels"] = labels
    with_image = [ex for ex in examples if ex.image is not None]
    enc["image_labels"] = torch.tensor([ex.label for ex in with_image], dtype=torch.long)
    enc["image_colours"] = torch.tensor([ex.colour for ex in with_image], dtype=torch.long)
    return dict(enc)


# ---------------------------------------------------------------------------------------------------------------
# Training loop
# ---------------------------------------------------------------------------------------------------------------


def _learned_tokens(ex: Ex) -> int:
    """Answer tokens of ``ex`` that carry loss (its words and EOS, minus the unlearned leading ones)."""
    return len(W.words(ex.answer)) + 1 - ex.skip


def _autocast() -> Any:
    """bfloat16 autocast on CPU (fp32 master weights): about 1.5x faster where the CPU has AVX512-BF16 / AMX."""
    return torch.autocast("cpu", dtype=torch.bfloat16)


def _schedule(opt: torch.optim.Optimizer, steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over 5% of the steps, then cosine decay to 10%."""
    warmup = max(1, steps // 20)
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * (0.1 + 0.45 * (1 + math.cos(math.pi * min(1.0, s / steps))))
    )


class Probes(torch.nn.Module):
    """Training-only linear probes on each image token of the vision tower: what is drawn, and its colour.

    They teach the vision tower to see (stage 1, like a pretrained CLIP); they are not part of the saved model.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.what = torch.nn.Linear(dim, N_CLASSES)
        self.colour = torch.nn.Linear(dim, len(COLOUR_LABELS))

    def loss(self, model: Any, pixel_values: torch.Tensor, labels: torch.Tensor, colours: torch.Tensor) -> torch.Tensor:
        hidden = model.model.vision_tower(pixel_values, output_hidden_states=True).hidden_states[-1]
        patches = hidden[:, 1:]  # the patch features the language model reads ("default" strategy)
        n = patches.shape[1]  # every patch token is probed, so that any of them tells the language model
        ce = torch.nn.functional.cross_entropy
        loss = ce(self.what(patches).flatten(0, 1), labels.repeat_interleave(n), ignore_index=-1)
        if bool((colours >= 0).any()):
            loss = loss + ce(self.colour(patches).flatten(0, 1), colours.repeat_interleave(n), ignore_index=-1)
        return loss


def pretrain_vision(model: Any, processor: Any, probes: Probes, *, steps: int, batch_size: int, lr: float,
                    seed: int, log_every: int) -> None:
    """Stage 1: the vision tower and the probes alone, on drawn objects (60%) and typographic words (40%)."""
    sampler = Sampler(seed + 1)
    params = [*model.model.vision_tower.parameters(), *probes.parameters()]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    sched = _schedule(opt, steps)
    t0, running = time.perf_counter(), 0.0
    for step in range(1, steps + 1):
        drawn = [sampler._object(sampler.rng.choice(KINDS)) if sampler.rng.random() < 0.6
                 else sampler._word(sampler.rng.choice(WORD_LABELS)) for _ in range(batch_size)]
        pixels = processor.image_processor(images=[d[0] for d in drawn], return_tensors="pt")["pixel_values"]
        with _autocast():
            loss = probes.loss(model, pixels, torch.tensor([d[1] for d in drawn]), torch.tensor([d[2] for d in drawn]))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        running += loss.item()
        if step % log_every == 0 or step == steps:
            n = log_every if step % log_every == 0 else step % log_every
            print(f"vision {step:5d}/{steps}  probe loss {running / n:.4f}  {time.perf_counter() - t0:6.1f}s",
                  flush=True)
            running = 0.0


def train(model: Any, processor: Any, probes: Probes, *, steps: int, batch_size: int, lr: float, seed: int,
          log_every: int, probe_weight: float, mix: dict[str, float] = MIX, name: str = "step") -> None:
    """Stages 2 and 3: the whole model, teacher-forced next-token loss on the answers of ``mix``'s groups (+ the
    probes, vision lr / 4)."""
    sampler = Sampler(seed)
    vision = [*model.model.vision_tower.parameters(), *probes.parameters()]
    ids = {id(p) for p in vision}
    rest = [p for p in model.parameters() if id(p) not in ids]
    opt = torch.optim.AdamW([{"params": rest, "lr": lr}, {"params": vision, "lr": lr / 4}], betas=(0.9, 0.98),
                            weight_decay=0.01)
    sched = _schedule(opt, steps)
    model.train()
    t0, running, running_probe = time.perf_counter(), 0.0, 0.0
    for step in range(1, steps + 1):
        examples = sampler.batch(batch_size, mix)
        # two micro-batches (with / without image) waste less compute on padding
        parts = [[e for e in examples if e.image is not None], [e for e in examples if e.image is None]]
        total = sum(map(_learned_tokens, examples))
        opt.zero_grad(set_to_none=True)
        lm, probe = torch.zeros(()), torch.zeros(())
        for part in (p for p in parts if p):
            batch = encode(processor, part)
            labels, colours = batch.pop("image_labels"), batch.pop("image_colours")
            share = sum(map(_learned_tokens, part)) / total
            with _autocast():
                part_lm = model(**batch).loss * share
                part_probe = (probes.loss(model, batch["pixel_values"], labels, colours)
                              if probe_weight and "pixel_values" in batch else torch.zeros(()))
            (part_lm + probe_weight * part_probe).backward()
            lm, probe = lm + part_lm.detach(), probe + part_probe.detach()
        torch.nn.utils.clip_grad_norm_(list(model.parameters()) + list(probes.parameters()), 1.0)
        opt.step()
        sched.step()
        running += lm.item()
        running_probe += probe.item()
        if step % log_every == 0 or step == steps:
            n = log_every if step % log_every == 0 else step % log_every
            print(f"{name} {step:5d}/{steps}  loss {running / n:.4f}  probe {running_probe / n:.4f}  "
                  f"{time.perf_counter() - t0:6.1f}s", flush=True)
            running = running_probe = 0.0
    model.eval()


def _load_stage2(path: Path) -> Any:
    """A saved model whose vocabulary is this script's (``--init-from``)."""
    from transformers import AutoTokenizer, LlavaForConditionalGeneration

    if AutoTokenizer.from_pretrained(path).get_vocab() != build_tokenizer().get_vocab():
        raise SystemExit(f"--init-from {path}: its vocabulary differs from this script's; train from scratch.")
    return LlavaForConditionalGeneration.from_pretrained(path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "ras_guard/demo_assets/model")
    ap.add_argument("--vision-steps", type=int, default=2600, help="stage 1 steps (vision tower + probes)")
    ap.add_argument("--vision-batch-size", type=int, default=128)
    ap.add_argument("--vision-lr", type=float, default=3e-3)
    ap.add_argument("--steps", type=int, default=700, help="stage 2 steps (whole model)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--probe-weight", type=float, default=0.5, help="weight of the probes in stage 2")
    ap.add_argument("--figstep-steps", type=int, default=150, help="stage 3 steps (FigStep fine-tune)")
    ap.add_argument("--figstep-lr", type=float, default=5e-4)
    ap.add_argument("--init-from", type=Path, default=None,
                    help="a saved stage-2 model (same vocabulary): skip stages 1 and 2, run stage 3 on it")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--log-every", type=int, default=100)
    args = ap.parse_args(argv)

    from transformers import set_seed

    W.check_disjoint()
    torch.set_num_threads(args.threads)
    set_seed(args.seed)
    tokenizer = build_tokenizer()
    processor = build_processor(tokenizer)
    model = build_model(tokenizer) if args.init_from is None else _load_stage2(args.init_from)
    probes = Probes(VISION["hidden_size"])
    model.set_attn_implementation("eager")  # a little faster than SDPA for these tiny shapes on CPU
    n_params = sum(p.numel() for p in model.parameters())
    print(f"vocabulary {len(tokenizer)} tokens, {n_params / 1e6:.2f}M parameters", flush=True)
    t0, cpu0 = time.perf_counter(), time.process_time()
    t1 = t0  # end of stage 1 (none with --init-from)
    if args.init_from is None:
        pretrain_vision(model, processor, probes, steps=args.vision_steps, batch_size=args.vision_batch_size,
                        lr=args.vision_lr, seed=args.seed, log_every=args.log_every)
        t1 = time.perf_counter()
        train(model, processor, probes, steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
              log_every=max(1, args.log_every // 4), probe_weight=args.probe_weight)
    t_stage2 = time.perf_counter()
    # stage 3 without the probes, so that it runs the same from a saved stage-2 model (--init-from)
    train(model, processor, probes, steps=args.figstep_steps, batch_size=args.batch_size, lr=args.figstep_lr,
          seed=args.seed + 2, log_every=max(1, args.log_every // 4), probe_weight=0.0, mix=FIGSTEP_MIX,
          name="figstep")
    t2, cpu = time.perf_counter(), time.process_time() - cpu0
    model.set_attn_implementation("sdpa")
    args.out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(args.out)
    processor.save_pretrained(args.out)
    info = {**{k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k != "out"},
            "vision_seconds": round(t1 - t0, 1), "figstep_seconds": round(t2 - t_stage2, 1),
            "train_seconds": round(t2 - t0, 1), "train_cpu_seconds": round(cpu, 1), "parameters": n_params,
            "vocabulary": len(tokenizer), "torch": torch.__version__, "mix": MIX, "figstep_mix": FIGSTEP_MIX,
            "note": "ras-guard synthetic demonstration model (not a safety model); see scripts/train_demo_model.py"}
    (args.out / "training_info.json").write_text(json.dumps(info, indent=2) + "\n")
    print(f"trained in {t2 - t0:.1f}s (vision {t1 - t0:.1f}s), {cpu:.1f} CPU seconds; saved to {args.out}",
          flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
