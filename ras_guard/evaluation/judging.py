"""The refusal judge of an evaluation: the documented keyword judge by default, or any ``text -> bool`` callable.

Example:
    >>> from ras_guard.evaluation.judging import judge_name, load_judge
    >>> judge = load_judge("ras_guard.judge:is_refusal")  # doctest: +SKIP
    >>> judge("I am sorry, but I cannot help with that.")  # doctest: +SKIP
    True
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any

from ..errors import EvaluationError

__all__ = ["DEFAULT_JUDGE", "Judge", "default_judge", "judge_name", "load_judge"]

Judge = Callable[[str], bool]
"""A refusal judge: True when the answer refuses."""

DEFAULT_JUDGE = "ras_guard.judge:is_refusal"


def default_judge() -> Judge:
    """The keyword refusal judge of :mod:`ras_guard.judge`."""
    return load_judge(DEFAULT_JUDGE)


def load_judge(spec: str) -> Judge:
    """Import a judge from ``"module:attribute"``, or load a model judge from ``"model:PATH"``.

    The attribute is a function ``text -> bool``, an object with such a ``__call__`` or ``is_refusal`` method, or a
    class with one of those methods (instantiated without arguments).

    Raises:
        EvaluationError: Malformed spec, missing module or attribute, or not a judge.

    Example:
        >>> load_judge("os.path:isfile")("/nonexistent")
        False
    """
    if spec.startswith("model:"):
        from .model_judge import load_model_judge

        return load_model_judge(spec)
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise EvaluationError(f"judge {spec!r} must look like 'package.module:callable'.")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise EvaluationError(f"cannot import the judge's module {module_name!r}: {exc}") from exc
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise EvaluationError(f"module {module_name!r} has no attribute {attr!r} (judge {spec!r}).")
        obj = getattr(obj, part)
    if inspect.isclass(obj) and ("__call__" in dir(obj) or hasattr(obj, "is_refusal")):  # a judge class
        try:
            obj = obj()
        except TypeError as exc:
            raise EvaluationError(f"judge class {spec!r} cannot be built without arguments: {exc}") from exc
    method = getattr(obj, "is_refusal", None)
    if callable(method) and not inspect.isfunction(obj):
        return method
    if not callable(obj):
        raise EvaluationError(f"judge {spec!r} is not callable; pass a function text -> bool.")
    return obj


def judge_name(judge: Judge) -> str:
    """``module:qualname`` of a judge, for the results file.

    Example:
        >>> import os.path
        >>> judge_name(os.path.isfile).endswith(":isfile")
        True
    """
    if hasattr(judge, "path") and type(judge).__name__ == "ModelJudge":
        return f"model:{judge.path}"
    target = getattr(judge, "__func__", judge)
    owner = getattr(judge, "__self__", None)
    if owner is not None and not inspect.ismodule(owner):
        target = type(owner)
    module = getattr(target, "__module__", None) or type(target).__module__
    name = getattr(target, "__qualname__", None) or type(target).__qualname__
    return f"{module}:{name}"
