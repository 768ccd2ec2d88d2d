"""Grammar-constrained decoding on transformers with xgrammar (private to the HF backend).

The grammar runs as a logits processor after steering and before the sampling warpers; see
:mod:`ras_guard.constrained` for the public behaviour (formats, fail-closed refusal of steered rows).

Example:
    >>> GrammarConstraint(backend, {"type": "json_object"}).processor(prompt_length=4)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import threading
import weakref
from typing import Any, cast

import torch
from transformers import LogitsProcessor

from ...constrained import parse_response_format
from ...errors import ResponseFormatError
from ._decoding import sampling_after_steering

__all__ = ["GrammarConstraint", "GrammarLogitsProcessor"]

_COMPILERS: weakref.WeakKeyDictionary[Any, tuple[Any, Any]] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def _compiler(backend: Any) -> tuple[Any, Any]:
    """xgrammar's ``(GrammarCompiler, TokenizerInfo)`` for a backend, built once per backend."""
    try:
        import xgrammar as xgr
    except ImportError as exc:
        raise ResponseFormatError(
            "response_format needs xgrammar: pip install 'ras-guard[structured]' (or pip install xgrammar)."
        ) from exc

    with _LOCK:
        found = _COMPILERS.get(backend)
        if found is None:
            vocab = int(backend.model.get_output_embeddings().weight.shape[0])
            info = xgr.TokenizerInfo.from_huggingface(
                backend.tokenizer, vocab_size=vocab, stop_token_ids=sorted(backend.eos_token_ids) or None
            )
            found = (xgr.GrammarCompiler(info, max_threads=1), info)
            _COMPILERS[backend] = found
        return found


class GrammarConstraint:
    """A compiled grammar for one backend: builds per-call processors and reads constrained answers.

    Args:
        backend: An :class:`~ras_guard.backends.hf.HFBackend` (anything with ``tokenizer``, ``eos_token_ids``).
        response_format: See :func:`parse_response_format`.

    Raises:
        ResponseFormatError: The format is invalid, or xgrammar cannot compile the schema.
    """

    def __init__(self, backend: Any, response_format: Any) -> None:
        self.format = parse_response_format(response_format)
        compiler, self.info = _compiler(backend)
        try:
            schema = self.format.schema if self.format.kind == "json_schema" else {"type": "object"}
            self.compiled = compiler.compile_json_schema(json.dumps(schema), strict_mode=True)
        except (RuntimeError, ValueError, TypeError) as exc:
            raise ResponseFormatError(f"cannot compile the response_format schema: {exc}") from exc
        self._vocab = list(self.info.decoded_vocab)
        stops = set(backend.eos_token_ids)
        special = set(getattr(backend.tokenizer, "all_special_ids", []) or [])
        self.banned = sorted(t for t in special if t not in stops and t < len(self._vocab))
        self._skip = frozenset(special | stops)
        self.model_config = getattr(backend.model, "generation_config", None)

    def processor(self, prompt_length: int) -> GrammarLogitsProcessor:
        """A fresh processor for one ``generate`` call (it keeps one matcher per row)."""
        return GrammarLogitsProcessor(self.compiled, prompt_length, banned=self.banned)

    def add_to(
        self, processors: list[Any], kwargs: dict[str, Any], prompt_length: int
    ) -> tuple[list[Any], dict[str, Any]]:
        """Insert the grammar after steering and before the sampling warpers (moved out of ``kwargs``)."""
        grammar = self.processor(prompt_length)
        if processors:  # [steering, *warpers]: the warpers were already moved out
            return [processors[0], grammar, *processors[1:]], kwargs
        kwargs, warpers = sampling_after_steering(self.model_config, kwargs)
        return [grammar, *warpers], kwargs

    def decode(self, token_ids: Any, **_: Any) -> str:
        """The grammar's reading of generated tokens, EOS and special tokens skipped (tokenizer-like, so
        transformers' streamers can use it)."""
        skip = self._skip
        raw = b"".join(
            self._vocab[t] if isinstance(self._vocab[t], bytes) else self._vocab[t].encode()
            for t in (int(x) for x in token_ids)
            if 0 <= t < len(self._vocab) and t not in skip
        )
        return raw.decode("utf-8", errors="replace")


class GrammarLogitsProcessor(LogitsProcessor):
    """Masks every token the grammar does not allow next, one xgrammar matcher per batch row.

    Rows whose matcher has terminated (EOS accepted) are left alone (transformers pads them anyway). A row that
    reaches a state where its vocabulary allows no token is forced to EOS and recorded in ``dead_rows``.

    Args:
        compiled: An xgrammar ``CompiledGrammar``.
        prompt_length: Padded prompt length of the call (the first call accepts no token).
        banned: Token ids masked at every step (special tokens other than EOS).
    """

    def __init__(self, compiled: Any, prompt_length: int, *, banned: list[int] | None = None) -> None:
        self.compiled = compiled
        self.prompt_length = prompt_length
        self.banned = list(banned or [])
        self.matchers: list[Any] = []
        self.dead_rows: set[int] = set()
        self._bitmask: torch.Tensor | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        import xgrammar as xgr

        rows = int(scores.shape[0])
        if not self.matchers:
            self.matchers = [xgr.GrammarMatcher(self.compiled) for _ in range(rows)]
            self._bitmask = xgr.allocate_token_bitmask(rows, self.compiled.tokenizer_info.vocab_size)
        assert self._bitmask is not None
        if input_ids.shape[1] > self.prompt_length:
            for i, m in enumerate(self.matchers):
                running = i not in self.dead_rows and not m.is_terminated()
                if running and not m.accept_token(int(input_ids[i, -1])):
                    self.dead_rows.add(i)
        out = scores.float().cpu()
        live: list[int] = []
        for i, m in enumerate(self.matchers):
            if i not in self.dead_rows and not m.is_terminated():
                m.fill_next_token_bitmask(self._bitmask, i)
                live.append(i)
        if live:
            xgr.apply_token_bitmask_inplace(out, self._bitmask, indices=live)
            if self.banned:
                out[torch.tensor(live)[:, None], torch.tensor(self.banned)[None, :]] = float("-inf")
        stops = list(self.compiled.tokenizer_info.stop_token_ids)
        for i in live:
            if not torch.isfinite(out[i]).any():  # the vocabulary cannot continue: end the row, record it
                self.dead_rows.add(i)
                if stops:
                    out[i, stops[0]] = 0.0
        return cast(torch.FloatTensor, out.to(device=scores.device, dtype=scores.dtype))

    def complete(self, row: int) -> bool:
        """Whether a row's answer is a complete match of the grammar."""
        return row < len(self.matchers) and row not in self.dead_rows and self.matchers[row].is_terminated()
