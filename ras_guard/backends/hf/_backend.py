"""The Hugging Face transformers backend.

Loads local checkpoints through the Auto classes (``AutoProcessor`` + ``AutoModelForImageTextToText`` for
vision-language models, ``AutoTokenizer`` + ``AutoModelForCausalLM`` for text-only ones), renders conversations
with the checkpoint's own chat template, and runs ``model.generate``. Nothing is hooked into the model.

Example:
    >>> from ras_guard.backends.hf import HFBackend
    >>> backend = HFBackend.from_pretrained("path/to/checkpoint")  # doctest: +SKIP
    >>> backend.is_multimodal  # doctest: +SKIP
    True
"""

from __future__ import annotations

import dataclasses
import hashlib
import pickle
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import LogitsProcessorList, StoppingCriteriaList

from ... import _deadline
from ..._control import ControlTokens
from ...errors import GenerationError, InvalidMessageError, ModelLoadError
from ..base import ModelFingerprint, flatten_text
from ..protocol import GenerationRequest, GenerationResult
from . import _kv, _requests
from ._decoding import CancelCriteria, DeadlineCriteria, StopOnStrings
from ._load import cache_name, quiet_loading, resolve_dtype, unsafe_pickle
from ._prefix import PrefixStore
from ._stream import HFStream

__all__ = ["HFBackend"]

_CACHE = cache_name()
_FINGERPRINT_ROWS = 257
_UNSTATED = 10**9  # tokenizers without a stated length report int(1e30)


@dataclasses.dataclass
class RawResult:
    """What one raw ``model.generate`` call (:meth:`HFBackend.run`) produced.

    Attributes:
        sequences: ``[B, new_tokens]`` generated ids (prompt removed; finished rows padded).
        prompt_length: Padded prompt length.
        prompt_tokens: Unpadded prompt length of each row.
        logits: ``[B, steps, V]`` raw logits per step when requested, else None.
        last_hidden: ``[B, steps, H]`` final-norm hidden state (lm_head input) per step when requested, else None.
        cache: The KV cache the call ended with (``want_cache=True``), else None.
    """

    sequences: torch.Tensor
    prompt_length: int
    prompt_tokens: list[int]
    logits: torch.Tensor | None = None
    last_hidden: torch.Tensor | None = None
    cache: Any = None


class HFBackend:
    """A transformers model and its processor (or tokenizer), behind the :class:`~ras_guard.backends.protocol.Backend`
    protocol (``generate`` / ``stream`` of :class:`GenerationRequest`); :meth:`run` is the raw ``model.generate``.

    Requests of one group continue from the prompt prefixes their group's earlier calls left (see
    :mod:`._prefix`), where the architecture is verified for it (:func:`._kv.prefix_support`).

    Args:
        model: A loaded ``PreTrainedModel`` with a generation head.
        processor: Its ``ProcessorMixin`` (vision-language) or tokenizer (text-only).

    Example:
        >>> backend = HFBackend(model, processor)  # doctest: +SKIP
    """

    def __init__(self, model: Any, processor: Any) -> None:
        self.model = model.eval()
        self.processor = processor
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.is_multimodal = hasattr(processor, "image_processor")
        self.name = str(getattr(model.config, "_name_or_path", "") or type(model).__name__)
        text_cfg = model.config.get_text_config()
        self.softcap: float | None = getattr(text_cfg, "final_logit_softcapping", None) or None
        head = model.get_output_embeddings()
        if head is None or not hasattr(head, "weight"):
            raise ModelLoadError(f"{type(model).__name__} has no output embeddings (lm_head); RAS needs one.")
        if getattr(head, "bias", None) is not None:
            raise ModelLoadError(
                f"{type(model).__name__}.lm_head has a bias; RAS's logit interpolation is exact only without one."
            )
        self._head = head
        gen_eos = getattr(model.generation_config, "eos_token_id", None)
        eos = gen_eos if gen_eos is not None else self.tokenizer.eos_token_id
        self.eos_token_ids: set[int] = set(eos if isinstance(eos, (list, tuple)) else [eos] if eos is not None else [])
        pad = self.tokenizer.pad_token_id
        self.pad_token_id: int = pad if pad is not None else (min(self.eos_token_ids) if self.eos_token_ids else 0)
        self.control = ControlTokens.from_tokenizer(self.tokenizer, processor if self.is_multimodal else None)
        self.prefixes = PrefixStore()
        self.prefix_reason: str | None = _kv.prefix_support(self)
        self.prefix_min_tokens = 16  # shortest text-only prefix worth reusing (RASConfig.prefix_min_tokens' default)
        self.media = _kv.media_token_ids(model.config)
        self.window = _kv.sliding_window(model.config)
        self._longest: int | None = None

    @classmethod
    @quiet_loading()
    def from_pretrained(cls, path: str | Path, *, device: Any = None, dtype: Any = None) -> HFBackend:
        """Load a local checkpoint folder.

        Args:
            path: Folder written by ``save_pretrained`` (no hub downloads are attempted).
            device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``...; default CUDA when available, else CPU.
            dtype: ``"auto"`` (the checkpoint's), ``"float32"``, ``"bfloat16"``, a ``torch.dtype``...

        Raises:
            ModelLoadError: The folder is missing or holds no loadable model.

        Example:
            >>> HFBackend.from_pretrained("/models/llava-1.5-7b-hf", dtype="bfloat16")  # doctest: +SKIP
        """
        from transformers import (
            AutoConfig,
            AutoModelForCausalLM,
            AutoModelForImageTextToText,
            AutoProcessor,
            AutoTokenizer,
        )

        folder = Path(path).expanduser()
        if not (folder / "config.json").is_file():
            raise ModelLoadError(
                f"{str(path)!r} is not a local checkpoint folder (no config.json); download the model first and pass "
                "its folder, or pass 'demo' for the bundled demo model."
            )
        torch_dtype = resolve_dtype(dtype)
        dev = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
        try:
            config = AutoConfig.from_pretrained(folder, local_files_only=True)
            if getattr(config, "vision_config", None) is not None:
                processor = AutoProcessor.from_pretrained(folder, local_files_only=True)
                model = AutoModelForImageTextToText.from_pretrained(folder, dtype=torch_dtype, local_files_only=True)
            else:
                processor = AutoTokenizer.from_pretrained(folder, local_files_only=True)
                model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch_dtype, local_files_only=True)
        except ImportError as exc:
            raise ModelLoadError(
                f"cannot load {str(folder)!r}: a package it needs is missing ({exc}). Qwen2-VL / Qwen2.5-VL processors "
                "need torchvision in transformers 5: pip install torchvision (matching your torch build)."
            ) from exc
        except pickle.UnpicklingError as exc:
            raise unsafe_pickle(folder, exc) from None  # torch's text suggests weights_only=False: never
        except (OSError, ValueError, KeyError) as exc:
            raise ModelLoadError(f"cannot load a model from {str(folder)!r}: {exc}") from exc
        return cls(model.to(dev), processor)

    @property
    def device(self) -> torch.device:
        """Device of the model's parameters."""
        return self._head.weight.device

    @property
    def chat_template(self) -> str:
        """The chat template source (empty when there is none)."""
        tpl = getattr(self.processor, "chat_template", None) or getattr(self.tokenizer, "chat_template", None)
        if isinstance(tpl, dict):
            tpl = tpl.get("default") or next(iter(tpl.values()), "")
        return tpl or ""

    @property
    def supports_tools(self) -> bool:
        """Whether the chat template renders ``tools``."""
        return "tools" in self.chat_template

    def _render(self, conversations: list[list[dict[str, Any]]], tools: list[dict] | None) -> list[str]:
        """The prompt strings of ``conversations`` (generation prompt added), untokenized."""
        if self.is_multimodal:
            out = self.processor.apply_chat_template(
                conversations, tools=tools, add_generation_prompt=True, tokenize=False
            )
        else:
            out = self.tokenizer.apply_chat_template(
                [flatten_text(c) for c in conversations], tools=tools, add_generation_prompt=True,
                tokenize=False,
            )
        return [out] if isinstance(out, str) else list(out)

    def encode(self, conversations: Sequence[list[dict[str, Any]]], *, tools: list[dict] | None = None) -> Any:
        """Render and tokenize conversations with the generation prompt, left-padded, on the model's device.

        Supplied text never becomes a control token: control strings in it are neutralised and the rendered
        prompt is verified (see :mod:`ras_guard._control`).

        Raises:
            SpecialTokenError: Supplied text would still form a control token.
            InvalidMessageError: The chat template rejects the messages.
        """
        if not self.chat_template:
            raise ModelLoadError(f"{self.name} has no chat template; ras-guard needs chat-formatted models.")
        try:
            convs, tools = self.control.encode_safe(self.tokenizer, self._render, [list(c) for c in conversations], tools)
            if self.is_multimodal:
                enc = self.processor.apply_chat_template(
                    convs,
                    tools=tools,
                    add_generation_prompt=True,
                    tokenize=True,
                    return_dict=True,
                    return_tensors="pt",
                    processor_kwargs={"padding": True, "padding_side": "left"},
                )
            else:
                enc = self.tokenizer.apply_chat_template(
                    [flatten_text(c) for c in convs],
                    tools=tools,
                    add_generation_prompt=True,
                    tokenize=True,
                    return_dict=True,
                    return_tensors="pt",
                    padding=True,
                    tokenizer_kwargs={"padding_side": "left"},
                )
        except InvalidMessageError:
            raise
        except Exception as exc:  # templates raise jinja/ValueError/TypeError on bad input
            raise InvalidMessageError(f"the chat template of {self.name} rejected the messages: {exc}") from exc
        return enc.to(self.device)

    # ------------------------------------------------------------------ the protocol
    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        """Run protocol requests (batched where their settings agree); one result per request, in order."""
        return _requests.generate(self, requests)

    def stream(self, request: GenerationRequest) -> HFStream:
        """Text deltas of one request; its ``result`` is set once exhausted, ``close()`` cancels."""
        return HFStream(self, request)

    def count_prompt_tokens(self, request: GenerationRequest) -> int:
        """Tokens of the rendered prompt of ``request`` (images expanded)."""
        return self.count_prompt_tokens_batch([request])[0]

    def count_prompt_tokens_batch(self, requests: Sequence[GenerationRequest]) -> list[int]:
        """:meth:`count_prompt_tokens` of several requests sharing ``tools``, in one batched encode."""
        if not requests:
            return []
        enc = self.encode([r.messages for r in requests], tools=requests[0].tools)
        return [int(n) for n in enc["attention_mask"].sum(dim=1).tolist()]

    def head_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """``lm_head(hidden)`` in float32, uncapped."""
        return self.lm_head_logits(hidden)

    @property
    def context_length(self) -> int | None:
        """The context the checkpoint states: the smaller of ``max_position_embeddings`` / ``model_max_length``."""
        found: list[int] = []
        text = self.model.config.get_text_config()
        for cfg in (text, self.model.config):
            value = getattr(cfg, "max_position_embeddings", None)
            if isinstance(value, int) and 0 < value < _UNSTATED:
                found.append(value)
                break
        value = getattr(self.tokenizer, "model_max_length", None)
        if isinstance(value, int) and 0 < value < _UNSTATED:
            found.append(value)
        return min(found) if found else None

    @property
    def longest_token_chars(self) -> int:
        """Characters of the longest vocabulary entry (64 when the vocabulary cannot be listed)."""
        if self._longest is None:
            try:
                vocab = self.tokenizer.get_vocab()
            except Exception:  # noqa: BLE001 - some tokenizers cannot list their vocabulary
                vocab = {}
            self._longest = max((len(k) for k in vocab), default=64) or 64
        return self._longest

    def release(self, groups: Sequence[str]) -> None:
        """Drop the prompt prefixes kept for these request groups."""
        self.prefixes.release(groups)

    # ------------------------------------------------------------------ raw transformers
    def run(
        self,
        inputs: Any,
        *,
        max_new_tokens: int,
        logits_processors: Sequence[Any] = (),
        want_logits: bool = False,
        want_hidden: bool = False,
        want_cache: bool = False,
        streamer: Any | None = None,
        stop: Sequence[str] = (),
        cancel: threading.Event | None = None,
        **kwargs: Any,
    ) -> RawResult:
        """Run ``model.generate`` on encoded inputs; see :class:`RawResult` for what comes back.

        ``stop``: stop strings (a row stops once its decoded answer holds one); ``cancel``: stops every row at the
        next token once set. ``kwargs`` go to ``model.generate`` (e.g. ``past_key_values`` to continue from a
        cached prompt prefix).
        """
        prompt_length = int(inputs["input_ids"].shape[1])
        prompt_tokens = [int(x) for x in inputs["attention_mask"].sum(dim=1).tolist()]
        gen: dict[str, Any] = {
            "max_new_tokens": max_new_tokens,
            "return_dict_in_generate": True,
            "output_logits": want_logits,
            "output_hidden_states": want_hidden,
            "pad_token_id": self.pad_token_id,
        }
        if logits_processors:
            gen["logits_processor"] = LogitsProcessorList(list(logits_processors))
        if streamer is not None:
            gen["streamer"] = streamer
        gen.update(kwargs)
        extra = [StopOnStrings(self.tokenizer, list(stop), prompt_length)] if any(stop) else []
        if cancel is not None:
            extra.append(CancelCriteria(cancel))
        if extra:
            gen["stopping_criteria"] = StoppingCriteriaList([*(gen.get("stopping_criteria") or []), *extra])
        if "past_key_values" in gen and _CACHE != "past_key_values":  # renamed in transformers 5.24
            gen[_CACHE] = gen.pop("past_key_values")
        deadline = _deadline.current()
        if deadline is not None:  # a guarded call with timeout=: check it, and stop at the next token past it
            deadline.check("before a generation pass")
            criteria = [*(gen.get("stopping_criteria") or []), DeadlineCriteria(deadline)]
            gen["stopping_criteria"] = StoppingCriteriaList(criteria)
        try:
            with torch.inference_mode():
                out = self.model.generate(**inputs, **gen)
        except (RuntimeError, ValueError, IndexError) as exc:
            raise GenerationError(f"generation failed in {self.name}: {exc}") from exc
        if deadline is not None and deadline.fired:
            raise deadline.error("during a generation pass")
        logits = torch.stack(out.logits, dim=1).float() if want_logits else None
        hidden = None
        if want_hidden:
            hidden = torch.stack([step[-1][:, -1, :] for step in out.hidden_states], dim=1).float()
        return RawResult(
            sequences=out.sequences[:, prompt_length:],
            prompt_length=prompt_length,
            prompt_tokens=prompt_tokens,
            logits=logits,
            last_hidden=hidden,
            cache=getattr(out, _CACHE) if want_cache else None,
        )

    def trim(self, row: torch.Tensor) -> tuple[list[int], str]:
        """Cut a generated row at its first EOS/pad; return the kept ids and the finish reason."""
        ids = [int(t) for t in row.tolist()]
        for i, t in enumerate(ids):
            if t in self.eos_token_ids:
                return ids[:i], "stop"
        return ids, "length"

    def decode(self, token_ids: Sequence[int]) -> str:
        """Token ids to text, special tokens skipped."""
        return self.tokenizer.decode(list(token_ids), skip_special_tokens=True)

    def lm_head_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """``lm_head(hidden)`` in float32, uncapped."""
        w = self._head.weight
        with torch.inference_mode():
            return self._head(hidden.to(device=w.device, dtype=w.dtype)).float()

    def fingerprint(self) -> ModelFingerprint:
        """Architecture, head shape and a hash of sampled lm_head rows rounded to bfloat16."""
        w = self._head.weight.detach()
        vocab, hidden = int(w.shape[0]), int(w.shape[1])
        idx = torch.linspace(0, vocab - 1, min(vocab, _FINGERPRINT_ROWS), device=w.device).long()
        sample = w[idx].to(torch.bfloat16).float().cpu().contiguous()
        digest = hashlib.sha256(sample.numpy().tobytes()).hexdigest()
        archs = getattr(self.model.config, "architectures", None) or [type(self.model).__name__]
        return ModelFingerprint(str(archs[0]), vocab, hidden, digest)
