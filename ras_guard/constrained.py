"""Structured output: constrained decoding of the answer pass with a grammar (xgrammar).

``RASGuard.generate(..., response_format=...)`` (also ``generate_batch`` and ``stream``) takes:

* ``{"type": "json_object"}``: any JSON object (as OpenAI's JSON mode: an object, not any JSON value);
* ``{"type": "json_schema", "json_schema": {"name": ..., "schema": {...}}}`` (the OpenAI form), or
  ``{"type": "json_schema", "schema": {...}}``, or a pydantic model class: JSON valid against the schema.

The grammar is applied as a logits processor after steering (and before temperature / top-k / top-p), so every
answer token is one the grammar allows; special tokens other than EOS are masked too. The answer text of a
constrained row is the grammar's own reading of its tokens (xgrammar's decoded vocabulary), which equals the
tokenizer's ``decode`` for byte-level and SentencePiece vocabularies and, unlike it, inserts no spaces between
the tokens of a word-level vocabulary (the demo model's), so what was validated is what is returned.

**High-risk requests fail closed.** Steering works by pulling the first tokens towards a refusal; a grammar masks
those very tokens, so a steered answer under a grammar would be a half-steered but well-formed JSON whose content
nobody vetted. A row whose risk would steer it (``risk >= RASConfig.risk_floor``) is therefore not generated:
it comes back with ``text=""``, ``steered=True`` and ``finish_reason="refusal"`` (LangChain: a standard
``refusal`` block, so ``with_structured_output`` raises ``ModelRefusalError``). An answer that runs out of tokens
before the grammar is complete has ``finish_reason="length"`` and is not valid JSON.

Example:
    >>> spec = parse_response_format({"type": "json_object"})
    >>> spec.kind
    'json_object'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import ResponseFormatError

__all__ = ["REFUSAL", "ResponseFormat", "make_constraint", "parse_response_format"]

REFUSAL = "refusal"
"""``finish_reason`` of a row refused because its risk would steer it under a grammar."""



@dataclass(frozen=True)
class ResponseFormat:
    """A parsed ``response_format``.

    Attributes:
        kind: ``"json_object"`` or ``"json_schema"``.
        schema: The JSON schema (``json_schema`` only).
    """

    kind: str
    schema: dict[str, Any] | None = None


def parse_response_format(spec: Any) -> ResponseFormat:
    """Validate a ``response_format`` (see the module docstring for the accepted forms).

    Raises:
        ResponseFormatError: The form is unknown or the schema is not a JSON-schema object.
    """
    if isinstance(spec, ResponseFormat):
        return spec
    if isinstance(spec, type) and hasattr(spec, "model_json_schema"):
        return ResponseFormat("json_schema", spec.model_json_schema())
    if not isinstance(spec, dict):
        raise ResponseFormatError(
            f"response_format must be a dict or a pydantic model class, got {type(spec).__name__}; use "
            '{"type": "json_object"} or {"type": "json_schema", "json_schema": {"name": ..., "schema": {...}}}.'
        )
    kind = spec.get("type")
    if kind == "json_object":
        return ResponseFormat("json_object")
    if kind != "json_schema":
        raise ResponseFormatError(
            f"response_format type {kind!r} is not supported; use 'json_object' or 'json_schema'."
        )
    inner = spec.get("json_schema", spec)
    schema = inner.get("schema") if isinstance(inner, dict) else None
    if not isinstance(schema, dict):
        raise ResponseFormatError(
            'a json_schema response_format needs a schema object: {"type": "json_schema", "json_schema": '
            f'{{"name": ..., "schema": {{...}}}}}}; got keys {sorted(inner) if isinstance(inner, dict) else inner!r}.'
        )
    return ResponseFormat("json_schema", schema)


def make_constraint(response_format: Any, stop: list[str] | None) -> ResponseFormat | None:
    """The parsed ``response_format`` of one call, or None without one (the backend compiles the grammar).

    Raises:
        ResponseFormatError: The format is invalid, or stop strings were given with it.

    Example:
        >>> make_constraint({"type": "json_object"}, None).kind
        'json_object'
    """
    if response_format is None:
        return None
    if stop and any(stop):
        raise ResponseFormatError(
            f"stop strings {stop!r} would cut a constrained answer into invalid JSON; drop stop= when passing "
            "response_format= (the grammar decides where the answer ends)."
        )
    return parse_response_format(response_format)
