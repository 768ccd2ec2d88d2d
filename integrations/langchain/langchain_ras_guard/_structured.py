"""``with_structured_output`` for guarded chat models: constrained decoding, on any model (private).

Methods:

* ``"json_schema"`` (default): the answer is decoded under the schema's grammar (the core's
  ``response_format``, xgrammar), so even a model never trained for JSON returns a valid instance when it
  finishes;
* ``"json_mode"``: any JSON object, parsed (and validated when the schema is a pydantic class);
* ``"function_calling"``: the schema is bound as a tool through the chat template (LangChain's default path;
  raises :class:`~ras_guard.errors.ToolCallingNotSupportedError` where the template renders no tools).

Fail closed: a request whose risk would steer the answer is refused instead of constrained (a grammar would
mask the refusal steering asks for), and ``policy="block"`` refuses above its threshold; both come back as a
standard ``refusal`` block, which LangChain's parsers turn into
:class:`langchain_core.exceptions.ModelRefusalError` (returned as ``parsing_error`` with
``include_raw=True``). An answer cut by ``max_tokens`` before the JSON is complete raises
``OutputParserException``.

Example:
    >>> normalize_method(None)
    'json_schema'
"""

from __future__ import annotations

from operator import itemgetter
from typing import Any, cast

from langchain_core.output_parsers import JsonOutputParser, PydanticOutputParser
from langchain_core.runnables import Runnable, RunnableMap, RunnablePassthrough
from langchain_core.utils.function_calling import convert_to_json_schema
from langchain_core.utils.pydantic import is_basemodel_subclass
from ras_guard.errors import ResponseFormatError

__all__ = ["METHODS", "normalize_method", "structured_runnable"]

METHODS = ("json_schema", "json_mode", "function_calling")


def normalize_method(method: str | None) -> str:
    """The method to use (``json_schema`` by default).

    Raises:
        ResponseFormatError: An unknown method.
    """
    method = method or "json_schema"
    if method not in METHODS:
        raise ResponseFormatError(
            f"with_structured_output method {method!r} is not supported; use one of {', '.join(METHODS)}."
        )
    return method


def _response_format(schema: Any, method: str) -> dict[str, Any]:
    if method == "json_mode":
        return {"type": "json_object"}
    if schema is None:
        raise ResponseFormatError("method='json_schema' needs a schema; pass one, or use method='json_mode'.")
    if isinstance(schema, type) and is_basemodel_subclass(schema):
        js = cast(Any, schema).model_json_schema()
    else:
        js = convert_to_json_schema(schema)
    name = str(js.get("title") or getattr(schema, "__name__", "") or "response")
    return {"type": "json_schema", "json_schema": {"name": name, "schema": js, "strict": True}}


def structured_runnable(model: Any, schema: Any, *, method: str, include_raw: bool) -> Runnable:
    """``model`` bound to a grammar and followed by its parser (``json_schema`` / ``json_mode``)."""
    fmt = _response_format(schema, method)
    llm = model.bind(
        response_format=fmt,
        ls_structured_output_format={
            "kwargs": {"method": method},
            "schema": fmt.get("json_schema", {}).get("schema"),
        },
    )
    parser: Runnable
    if isinstance(schema, type) and is_basemodel_subclass(schema):
        parser = PydanticOutputParser(pydantic_object=schema)
    else:
        parser = JsonOutputParser()
    if not include_raw:
        return llm | parser
    parsed = RunnablePassthrough.assign(parsed=itemgetter("raw") | parser, parsing_error=lambda _: None)
    failed = RunnablePassthrough.assign(parsed=lambda _: None)
    return RunnableMap(raw=llm) | parsed.with_fallbacks([failed], exception_key="parsing_error")
