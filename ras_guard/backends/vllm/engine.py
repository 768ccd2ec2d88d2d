"""A vLLM engine in RAS terms: greedy captions, first-N next-token distributions, steered answers.

The conversation is rendered with the checkpoint's own processor (or tokenizer) exactly as the transformers
backend renders it, and handed to ``vllm.LLM`` as a prompt plus its images (text-only models: as token ids), so
both engines see the same prompt tokens. Stage 2 asks vLLM for the full-vocabulary log-probabilities of the first
N greedy steps in-process (``logprobs=-1``, ``flat_logprobs=True``, ``detokenize=False``: no detokenization of
every candidate). Stage 3 passes the risk in ``SamplingParams.extra_args`` to
:class:`~ras_guard.backends.vllm.v1.RASSteeringV1`, which the engine is built with.

Example:
    >>> engine = VLLMEngine.from_pretrained("/models/llava-1.5-7b-hf", "cal/llava", dtype="bfloat16")  # doctest: +SKIP
    >>> engine.captions([[{"role": "user", "content": [...]}]], max_tokens=40)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..._control import ControlTokens
from ...errors import InvalidMessageError, ModelLoadError
from ..base import ModelFingerprint, flatten_text
from ._fingerprint import checkpoint_fingerprint, local_folder
from ._run import run_watched
from ._steer import CALIBRATION_KEY, FLOOR_ARG, RISK_ARG
from ._text import cut_at_stop, stop_prefix
from .v1 import RASSteeringV1

__all__ = ["Completion", "VLLMEngine", "steering_args"]

Conversation = list[dict[str, Any]]


@dataclass(frozen=True)
class Completion:
    """One finished request: its generated ids (cut at the first EOS), finish reason and prompt size."""

    token_ids: list[int]
    finish_reason: str
    prompt_tokens: int


def steering_args(calibration_dir: str | Path, engine_args: dict[str, Any]) -> dict[str, Any]:
    """``engine_args`` plus the steering processor, full-vocabulary log-probabilities and the calibration."""
    args = dict(engine_args)
    extra = dict(args.pop("additional_config", None) or {})
    extra[CALIBRATION_KEY] = str(Path(calibration_dir).resolve())
    procs = [*args.pop("logits_processors", []), RASSteeringV1]
    return {**args, "logits_processors": procs, "max_logprobs": -1, "additional_config": extra}


class VLLMEngine:
    """A ``vllm.LLM`` built with the RAS steering processor, plus the checkpoint's processor for rendering.

    Args:
        llm: A ``vllm.LLM`` (or a ``vllm.v1.engine.async_llm.AsyncLLM``, for
            :class:`~ras_guard.backends.vllm.aguard.AsyncVLLMGuard`) created with
            ``logits_processors=[RASSteeringV1]``, ``max_logprobs=-1`` and a calibration in ``additional_config``
            (see :meth:`from_pretrained`).
        model_path: The checkpoint folder (for the processor, the generation config and the fingerprint).

    Raises:
        ModelLoadError: The engine lacks the steering processor or full-vocabulary log-probabilities.
    """

    def __init__(self, llm: Any, model_path: str | Path) -> None:
        self.vllm_config = llm.llm_engine.vllm_config if hasattr(llm, "llm_engine") else llm.vllm_config
        model_config = self.vllm_config.model_config
        procs = list(model_config.logits_processors or [])
        if not any(p is RASSteeringV1 or str(p).endswith(":RASSteeringV1") for p in procs):
            raise ModelLoadError(
                "the vLLM engine was built without the RAS steering processor: create it with "
                "logits_processors=[RASSteeringV1] (or use VLLMEngine.from_pretrained)."
            )
        if model_config.max_logprobs != -1:
            raise ModelLoadError(
                f"the vLLM engine has max_logprobs={model_config.max_logprobs}; RAS scores the full vocabulary: "
                "create it with max_logprobs=-1."
            )
        from transformers import AutoConfig, AutoProcessor, AutoTokenizer, GenerationConfig

        self.llm = llm
        self.vocab_size = int(model_config.get_vocab_size())
        self.folder = local_folder(str(model_path))
        config = AutoConfig.from_pretrained(self.folder, local_files_only=True)
        self.is_multimodal = getattr(config, "vision_config", None) is not None
        loader = AutoProcessor if self.is_multimodal else AutoTokenizer
        self.processor = loader.from_pretrained(self.folder, local_files_only=True)
        self.tokenizer = getattr(self.processor, "tokenizer", self.processor)
        self.control = ControlTokens.from_tokenizer(self.tokenizer, self.processor if self.is_multimodal else None)
        self.softcap: float | None = (
            getattr(config.get_text_config(), "final_logit_softcapping", None) or None
        )
        try:
            self.generation_config: Any = GenerationConfig.from_pretrained(self.folder, local_files_only=True)
        except OSError:
            self.generation_config = None
        eos = getattr(self.generation_config, "eos_token_id", None)
        eos = eos if eos is not None else self.tokenizer.eos_token_id
        self.eos_token_ids: set[int] = set(
            eos if isinstance(eos, (list, tuple)) else [eos] if eos is not None else []
        )
        self.name = str(model_path)

    @classmethod
    def from_pretrained(
        cls, model_path: str | Path, calibration_dir: str | Path, **engine_args: Any
    ) -> VLLMEngine:
        """Build ``vllm.LLM(model_path, ...)`` with the steering processor and the calibration.

        Args:
            model_path: Local checkpoint folder (or an already-downloaded hub id).
            calibration_dir: A ras-guard calibration folder made for this checkpoint.
            **engine_args: Passed to ``vllm.LLM`` (``dtype``, ``max_model_len``, ``tensor_parallel_size``...).
        """
        from vllm import LLM

        return cls(LLM(str(model_path), **steering_args(calibration_dir, engine_args)), model_path)

    def fingerprint(self) -> ModelFingerprint:
        """The calibration fingerprint of the checkpoint, from its files."""
        return checkpoint_fingerprint(self.folder)

    # ----------------------------------------------------------------- prompts
    def _render(self, conversations: list[Conversation], tools: Any) -> list[str]:
        """The prompt strings of ``conversations`` (generation prompt added), untokenized."""
        if self.is_multimodal:
            out = self.processor.apply_chat_template(
                conversations, tools=tools, add_generation_prompt=True, tokenize=False
            )
        else:
            out = self.tokenizer.apply_chat_template(
                [flatten_text(c) for c in conversations], tools=tools, add_generation_prompt=True, tokenize=False
            )
        return [out] if isinstance(out, str) else list(out)

    def prompt(
        self, conversation: Conversation, tools: list[dict[str, Any]] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """The vLLM prompt of one conversation (generation prompt added, ``tools`` rendered by the chat template)
        and its tokenization kwargs.

        As on the transformers backend, supplied text never becomes a control token (see
        :mod:`ras_guard._control`): control strings in it are neutralised and the rendered prompt is verified.

        Raises:
            SpecialTokenError: Supplied text would still form a control token.
            InvalidMessageError: The chat template rejects the messages.
        """
        try:
            (conversation,), tools = self.control.encode_safe(self.tokenizer, self._render, [conversation], tools)
            if not self.is_multimodal:
                ids = self.tokenizer.apply_chat_template(
                    flatten_text(conversation), tools=tools, add_generation_prompt=True, tokenize=True,
                    return_dict=True,
                )["input_ids"]
                return {"prompt_token_ids": list(ids)}, None
            text = self.processor.apply_chat_template(
                [conversation], tools=tools, add_generation_prompt=True, tokenize=False
            )
        except InvalidMessageError:
            raise
        except Exception as exc:  # templates raise jinja/ValueError/TypeError on bad input
            raise InvalidMessageError(
                f"the chat template of {self.name} rejected the messages: {exc}"
            ) from exc
        text = text[0] if isinstance(text, list) else text
        images = [
            p["image"] for m in conversation for p in m.get("content") or [] if p.get("type") == "image"
        ]
        prompt: dict[str, Any] = {"prompt": text}
        if images:
            prompt["multi_modal_data"] = {"image": images if len(images) > 1 else images[0]}
        bos = self.tokenizer.bos_token
        # the processor tokenizes templated text without adding special tokens a second time
        kwargs = {"add_special_tokens": False} if bos and text.startswith(bos) else None
        return prompt, kwargs

    def prompts(
        self, conversations: Sequence[Conversation]
    ) -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
        """The vLLM prompt and tokenization kwargs of each conversation."""
        return [self.prompt(c) for c in conversations]

    def run(self, call: Any) -> list[Any]:
        """The last ``RequestOutput`` of every row of an engine call (``conversations``, ``params``, ``stops``)."""
        return self._run(call.conversations, call.params, getattr(call, "stops", None))

    def _run(
        self,
        conversations: Sequence[Conversation],
        params: Sequence[Any],
        stops: Sequence[Sequence[str]] | None = None,
    ) -> list[Any]:
        return self.run_prompts(self.prompts(conversations), params, stops)

    def run_prompts(
        self,
        prompted: Sequence[tuple[dict[str, Any], dict[str, Any] | None]],
        params: Sequence[Any],
        stops: Sequence[Sequence[str]] | None = None,
    ) -> list[Any]:
        """The last ``RequestOutput`` of every rendered row; rows with stop strings are aborted at the first one.

        Without stop strings the rows run as one ``vllm.LLM.generate`` call; with any, every row is stepped from
        here and its text watched (see :mod:`._run`).
        """
        if stops is not None and any(any(s) for s in stops):
            return run_watched(self.llm.llm_engine, self.text_of, prompted, params, stops)
        prompts, kwargs = zip(*prompted) if prompted else ((), ())
        groups: dict[Any, list[int]] = {}
        for i, kw in enumerate(kwargs):
            groups.setdefault(None if kw is None else tuple(sorted(kw.items())), []).append(i)
        outs: list[Any] = [None] * len(prompts)
        for key, rows in groups.items():
            res = self.llm.generate(
                [prompts[i] for i in rows],
                [params[i] for i in rows],
                use_tqdm=False,
                tokenization_kwargs=None if key is None else dict(key),
            )
            for i, r in zip(rows, res):
                outs[i] = r
        return outs

    def trim(self, out: Any, max_tokens: int) -> Completion:
        """A finished ``RequestOutput`` as a :class:`Completion` (ids cut at the first EOS)."""
        ids = list(out.outputs[0].token_ids)
        for i, t in enumerate(ids):
            if t in self.eos_token_ids:
                return Completion(ids[:i], "stop", len(out.prompt_token_ids))
        return Completion(ids, "length" if len(ids) >= max_tokens else "stop", len(out.prompt_token_ids))

    def decode(self, token_ids: Sequence[int]) -> str:
        """Token ids to text, special tokens skipped (the transformers backend's decoding)."""
        return self.tokenizer.decode(list(token_ids), skip_special_tokens=True)

    def text_of(self, token_ids: Sequence[int]) -> str:
        """The text of generated ids up to their first EOS."""
        ids = list(token_ids)
        cut = next((i for i, t in enumerate(ids) if t in self.eos_token_ids), len(ids))
        return self.decode(ids[:cut])

    def finish(
        self, out: Any, max_tokens: int, stop: Sequence[str] = (), decode: Any = None
    ) -> tuple[Completion, str]:
        """A finished (or stop-aborted) ``RequestOutput`` as a :class:`Completion` and its text.

        The text (``decode``, default :meth:`decode`) is cut before its first stop string; the ids then end with
        the token that completed it.
        """
        decode = decode or self.decode
        done = self.trim(out, max_tokens)
        text, hit = cut_at_stop(decode(done.token_ids), stop)
        if hit:
            k = stop_prefix(decode, done.token_ids, stop)
            done = Completion(done.token_ids[:k], "stop", done.prompt_tokens)
        return done, text

    # ----------------------------------------------------------------- the three passes
    def answer_params(
        self,
        count: int,
        *,
        max_tokens: int,
        risks: Sequence[float | None] | None = None,
        floor: float = 0.05,
        **sampling: Any,
    ) -> list[Any]:
        """``SamplingParams`` of ``count`` rows; rows with a risk are steered by the processor (greedy by default).

        Args:
            count: Number of rows.
            max_tokens: Token limit per row.
            risks: One risk per row, or None (no steering); a risk under ``floor`` leaves the row untouched.
            floor: The risk floor sent with each risk.
            **sampling: Other ``vllm.SamplingParams`` fields (``temperature`` defaults to 0, i.e. greedy).
        """
        from vllm import SamplingParams

        risks = list(risks) if risks is not None else [None] * count
        base = {"temperature": 0.0, **sampling, "max_tokens": max_tokens, "detokenize": False}
        base["stop_token_ids"] = sorted(set(base.get("stop_token_ids") or []) | self.eos_token_ids)
        return [
            SamplingParams(
                **base, extra_args=None if r is None else {RISK_ARG: float(r), FLOOR_ARG: float(floor)}
            )
            for r in risks
        ]

    def complete(
        self, conversations: Sequence[Conversation], *, max_tokens: int, **kwargs: Any
    ) -> list[Completion]:
        """Generate for each conversation (``kwargs`` as :meth:`answer_params`'s)."""
        params = self.answer_params(len(conversations), max_tokens=max_tokens, **kwargs)
        return [self.trim(o, max_tokens) for o in self._run(conversations, params)]

    @staticmethod
    def logprob_params(num_steps: int) -> Any:
        """``SamplingParams`` of the risk pass: ``num_steps`` greedy steps, full-vocabulary log-probabilities."""
        from vllm import SamplingParams

        return SamplingParams(
            temperature=0.0,
            max_tokens=num_steps,
            min_tokens=num_steps,
            logprobs=-1,
            flat_logprobs=True,
            detokenize=False,
        )

    def read_logprobs(
        self, outs: Sequence[Any], num_steps: int
    ) -> tuple[torch.Tensor, list[list[int]], list[int]]:
        """``([B, N, V] float32 log-probabilities, the N greedy ids per row, prompt tokens per row)``."""
        rows, tokens = [], []
        for out in outs:
            lp = out.outputs[0].logprobs
            dense = torch.full((num_steps, self.vocab_size), float("-inf"))
            for n in range(num_steps):
                s, e = lp.start_indices[n], lp.end_indices[n]
                dense[n, torch.tensor(lp.token_ids[s:e])] = torch.tensor(
                    lp.logprobs[s:e], dtype=torch.float32
                )
            rows.append(dense)
            tokens.append(list(out.outputs[0].token_ids))
        logprobs = torch.stack(rows) if rows else torch.empty(0, num_steps, self.vocab_size)
        return logprobs, tokens, [len(o.prompt_token_ids) for o in outs]

    def first_step_logprobs(
        self, conversations: Sequence[Conversation], num_steps: int
    ) -> tuple[torch.Tensor, list[list[int]], list[int]]:
        """Full-vocabulary log-probabilities of the first ``num_steps`` greedy steps (see :meth:`read_logprobs`)."""
        params = [self.logprob_params(num_steps)] * len(conversations)
        return self.read_logprobs(self._run(conversations, params), num_steps)
