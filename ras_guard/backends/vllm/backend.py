"""The backend protocol (:mod:`ras_guard.backends.protocol`) on vLLM: :class:`VLLMBackend` and :class:`AsyncVLLMBackend`.

Each :class:`~ras_guard.backends.protocol.GenerationRequest` becomes one vLLM request, rendered with the
checkpoint's own chat template (tools included) exactly as the transformers backend renders it:

- limits and sampling become ``SamplingParams`` (``temperature=None``: the checkpoint's generation config, greedy
  unless it samples); EOS ids are stop tokens;
- a steering spec becomes the risk and floor in ``extra_args`` for the engine's
  :class:`~ras_guard.backends.vllm.v1.RASSteeringV1`, which steers with the prototype logits of the calibration
  the engine was built with; a spec carrying other prototypes (or another soft-cap) is refused, never steered
  with the engine's;
- ``num_distributions`` asks for full-vocabulary log-probabilities in-process (flat, not detokenized), returned as
  a ``[K, V]`` float32 tensor (vLLM's raw log-probabilities: after the model's soft-cap, before steering);
- stop strings are watched on ras-guard's own decoding and the request is aborted at the first one (:mod:`._run`);
- ``response_format`` becomes vLLM's structured outputs (xgrammar);
- ``return_hidden`` is refused: vLLM hands out no hidden states, calibrations are fitted on the HF backend;
- ``group`` needs nothing: vLLM's automatic prefix caching shares the prompt prefix.

:class:`VLLMBackend` runs a batch as one ``vllm.LLM`` call; :class:`AsyncVLLMBackend` submits every request as its
own ``AsyncLLM`` request, so concurrent callers share the engine's batches. Streams yield text deltas, hold back a
possible stop-string prefix, and abort the engine request when closed.

Example:
    >>> backend = VLLMBackend.from_pretrained("/models/llava-1.5-7b-hf", "cal/llava")  # doctest: +SKIP
    >>> backend.generate([GenerationRequest(messages, max_new_tokens=32)])[0].text  # doctest: +SKIP
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

from typing_extensions import Self

import torch

from ...calibration import Calibration
from ...errors import CalibrationError, InvalidMessageError, ToolCallingNotSupportedError
from ..base import ModelFingerprint
from ..protocol import GenerationRequest, GenerationResult
from ._fingerprint import lm_head_weight
from ._formats import GrammarText
from ._requests import check_steering, checkpoint_sampling, sampling_params
from ._run import Mailbox
from ._steer import CALIBRATION_KEY
from ._text import TextDeltas
from .aguard import AsyncVLLMEngine
from .engine import VLLMEngine

__all__ = ["AsyncVLLMBackend", "VLLMBackend"]


class _VLLMBackendBase:
    """What both vLLM backends share: rendering, request parameters, results, the model's facts."""

    _engine_class: type[VLLMEngine] = VLLMEngine

    def __init__(self, engine: VLLMEngine) -> None:
        self.engine = engine
        self.name: str = engine.name
        self.is_multimodal: bool = engine.is_multimodal
        self.softcap: float | None = engine.softcap
        self._defaults = checkpoint_sampling(engine.generation_config)
        self._head: torch.Tensor | None = None
        self._calibration: Calibration | None = None
        self._accepted: torch.Tensor | None = None  # the last prototype tensor found equal to the engine's
        self._grammar_text: GrammarText | None = None

    @classmethod
    def from_pretrained(
        cls, model_path: str | Path, calibration: Calibration | str | Path, **engine_args: Any
    ) -> Self:
        """Start a vLLM engine on a checkpoint with the steering processor and a calibration.

        Args:
            model_path: Local checkpoint folder.
            calibration: The calibration folder whose prototypes the engine's steering processor uses, or a
                :class:`~ras_guard.calibration.Calibration` (saved to a private temporary folder for the engine).
            **engine_args: ``vllm.LLM`` / ``AsyncEngineArgs`` fields (``dtype``, ``max_model_len``...).

        Raises:
            CalibrationMismatchError: The calibration was made for another checkpoint (the processor refuses it).
        """
        if isinstance(calibration, Calibration):
            import tempfile

            calibration = calibration.save(Path(tempfile.mkdtemp(prefix="ras-guard-calibration-")))
        return cls(cls._engine_class.from_pretrained(model_path, calibration, **engine_args))

    @classmethod
    def wrap(cls, llm: Any, model_path: str | Path) -> Self:
        """Serve requests on an existing engine built with ``**steering_args(calibration_dir, args)``."""
        return cls(cls._engine_class(llm, model_path))

    # ----------------------------------------------------------------- the model
    @property
    def calibration(self) -> Calibration:
        """The calibration the engine's steering processor was built with."""
        if self._calibration is None:
            extra = self.engine.vllm_config.additional_config or {}
            folder = extra.get(CALIBRATION_KEY) if isinstance(extra, dict) else None
            if not folder:
                raise CalibrationError(
                    "the vLLM engine has no ras-guard calibration; build it with VLLMBackend.from_pretrained."
                )
            self._calibration = Calibration.load(folder)
        return self._calibration

    @property
    def supports_tools(self) -> bool:
        """Whether the chat template renders ``tools``."""
        proc, tok = self.engine.processor, self.engine.tokenizer
        tpl = getattr(proc, "chat_template", None) or getattr(tok, "chat_template", None) or ""
        if isinstance(tpl, dict):
            tpl = tpl.get("default") or next(iter(tpl.values()), "")
        return "tools" in (tpl or "")

    def fingerprint(self) -> ModelFingerprint:
        """The calibration fingerprint of the checkpoint, from its files."""
        return self.engine.fingerprint()

    def head_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """``lm_head(hidden)`` in float32, uncapped, with the lm_head weight read from the checkpoint's files.

        Raises:
            ModelLoadError: The checkpoint's safetensors files hold no lm_head.
            InvalidMessageError: ``hidden`` has another width than the model's.
        """
        if self._head is None:
            self._head = lm_head_weight(self.engine.folder).float()
        if hidden.shape[-1] != self._head.shape[1]:
            raise InvalidMessageError(
                f"hidden states have width {hidden.shape[-1]}, the model's lm_head takes {self._head.shape[1]}."
            )
        return hidden.float() @ self._head.T

    def count_prompt_tokens(self, request: GenerationRequest) -> int:
        """Tokens of the rendered prompt of ``request`` (images expanded as the engine expands them)."""
        prompt, kwargs = self._prompt(request)
        if "prompt_token_ids" in prompt:
            return len(prompt["prompt_token_ids"])
        image = (prompt.get("multi_modal_data") or {}).get("image")
        images = None if image is None else image if isinstance(image, list) else [image]
        enc = self.engine.processor(text=[prompt["prompt"]], images=images, **(kwargs or {}))
        return len(enc["input_ids"][0])

    # ----------------------------------------------------------------- requests
    def _prompt(self, request: GenerationRequest) -> tuple[dict[str, Any], dict[str, Any] | None]:
        if request.tools is not None and not self.supports_tools:
            raise ToolCallingNotSupportedError(
                f"the chat template of {self.name} does not render tools; send the request without tools."
            )
        return self.engine.prompt(request.messages, request.tools)

    def _params(self, request: GenerationRequest) -> Any:
        """The ``SamplingParams`` of ``request`` (checked; steering checked against the engine's calibration)."""
        if request.steering is not None:
            self._accepted = check_steering(request.steering, self.calibration, self.softcap, self._accepted)
        return sampling_params(request, self._defaults, self.engine.eos_token_ids)

    def _prepare(self, requests: Sequence[GenerationRequest]) -> tuple[list[Any], list[Any]]:
        return [self._prompt(r) for r in requests], [self._params(r) for r in requests]

    def _text_of(self, request: GenerationRequest) -> Any:
        """How the text of ``request``'s ids is read: the grammar's reading under a response_format."""
        if request.response_format is None:
            return self.engine.text_of
        if self._grammar_text is None:
            engine = self.engine
            self._grammar_text = GrammarText(engine.tokenizer, engine.vocab_size, engine.eos_token_ids)
        return self._grammar_text

    def _result(self, request: GenerationRequest, out: Any, seconds: float) -> GenerationResult:
        decode = self._text_of(request)
        done, text = self.engine.finish(out, request.max_new_tokens, request.stop, decode)
        logprobs = None
        if request.num_distributions:
            logprobs = self.engine.read_logprobs([out], request.num_distributions)[0][0]
        return GenerationResult(
            done.token_ids, text, done.finish_reason, done.prompt_tokens, logprobs=logprobs,
            timings={"generate": seconds},
        )


class _TextStream:
    """Text deltas of one request on ``vllm.LLM``, stepped from the consumer's thread; ``close`` aborts it."""

    def __init__(self, engine: VLLMEngine, prompt: Any, params: Any, stop: Sequence[str], text_of: Any) -> None:
        self._mail = Mailbox.of(engine.llm.llm_engine)
        self._id = self._mail.open(prompt, params)
        self._deltas = TextDeltas(text_of, stop)
        self._finished, self._open = False, True
        self._iter = self._pieces()

    def _pieces(self) -> Iterator[str]:
        try:
            while self._open:
                out = self._mail.next(self._id)
                self._finished = bool(out.finished)
                piece = self._deltas.push(list(out.outputs[0].token_ids), final=self._finished)
                if piece:
                    yield piece
                if self._finished or self._deltas.stopped:
                    return
        finally:
            self.close()

    def __iter__(self) -> Iterator[str]:
        return self._iter

    def __next__(self) -> str:
        return next(self._iter)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Abort the engine request (nothing more is generated for it)."""
        if self._open:
            self._open = False
            self._mail.close(self._id, self._finished)


class VLLMBackend(_VLLMBackendBase):
    """:class:`~ras_guard.backends.protocol.Backend` over ``vllm.LLM`` (see the module docstring)."""

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        """Run every request as one batched engine call; one result per request, in order."""
        prompts, params = self._prepare(requests)
        t0 = time.perf_counter()
        outs = self.engine.run_prompts(prompts, params, [r.stop for r in requests])
        seconds = time.perf_counter() - t0
        return [self._result(r, o, seconds) for r, o in zip(requests, outs)]

    def stream(self, request: GenerationRequest) -> _TextStream:
        """Text deltas of one request; closing the stream (or leaving ``with``) aborts the engine request.

        Do not call :meth:`generate` on the same engine while a stream is open: ``vllm.LLM`` runs every pending
        request to its end inside that call.
        """
        (prompt,), (params,) = self._prepare([request])
        return _TextStream(self.engine, prompt, params, request.stop, self._text_of(request))


class AsyncVLLMBackend(_VLLMBackendBase):
    """:class:`~ras_guard.backends.protocol.AsyncBackend` over ``AsyncLLM``: one engine request per request."""

    _engine_class = AsyncVLLMEngine
    engine: AsyncVLLMEngine

    async def agenerate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        """Run every request as its own engine request (batched with concurrent callers'); results in order."""
        prompts, params = self._prepare(requests)
        t0 = time.perf_counter()
        outs = await self.engine.arun_prompts(prompts, params, [r.stop for r in requests])
        seconds = time.perf_counter() - t0
        return [self._result(r, o, seconds) for r, o in zip(requests, outs)]

    def astream(self, request: GenerationRequest) -> AsyncIterator[str]:
        """Text deltas of one request (validated now); ``aclose()`` aborts the engine request."""
        (prompt,), (params,) = self._prepare([request])
        return self._astream(prompt, params, request.stop, self._text_of(request))

    async def _astream(self, prompt: Any, params: Any, stop: Sequence[str], text_of: Any) -> AsyncIterator[str]:
        import uuid

        from vllm.sampling_params import RequestOutputKind

        params.output_kind = RequestOutputKind.CUMULATIVE
        llm, rid = self.engine.llm, f"ras-stream-{uuid.uuid4().hex}"
        deltas, finished = TextDeltas(text_of, stop), False
        outs = llm.generate(prompt[0], params, rid, tokenization_kwargs=prompt[1])
        try:
            async for out in outs:
                finished = bool(out.finished)
                piece = deltas.push(list(out.outputs[0].token_ids), final=finished)
                if piece:
                    yield piece
                if finished or deltas.stopped:
                    return
        finally:
            await outs.aclose()
            if not finished:
                await llm.abort(rid)

    def shutdown(self) -> None:
        """Stop the engine (its engine-core process)."""
        self.engine.llm.shutdown()
