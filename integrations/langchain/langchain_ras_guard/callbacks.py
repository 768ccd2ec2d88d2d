"""``RiskLoggingCallbackHandler``: an application-level safety log of guarded chat-model calls.

Example:
    >>> from langchain_ras_guard import RASGuardedChatModel, RiskLoggingCallbackHandler
    >>> log = RiskLoggingCallbackHandler("safety.jsonl")  # doctest: +SKIP
    >>> RASGuardedChatModel(model="demo").invoke("hi", config={"callbacks": [log]})  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.outputs import LLMResult
from ras_guard._redact import redact

from ._safety_log import SAFETY_LOGGER, SafetyLogSink
from .chat_models import RAS_EVENT

__all__ = ["RiskLoggingCallbackHandler"]

_PROVIDER = "ras_guard"


def _first_message(response: LLMResult) -> Any:
    try:
        return getattr(response.generations[0][0], "message", None)
    except IndexError:
        return None


class RiskLoggingCallbackHandler(BaseCallbackHandler):
    """Writes one JSON line per guarded chat-model call to the ``ras_guard.safety`` logger and a rotated file.

    A line holds: ``time`` (UTC, ISO 8601), ``run_id``, ``parent_run_id``, ``model``, ``risk``,
    ``similarity``, ``decision`` (``answered`` / ``steered`` / ``blocked``, or ``error``), ``policy``,
    ``risk_given``, ``calibration_id``, ``image_sha256`` (hashes of the decoded images, never image data),
    ``guard_tokens``, ``input_tokens`` / ``output_tokens``, ``latency_s`` and, for failed calls, ``error``.
    Calls of other chat models are not logged; a risk event sent without a chat-model run (a request the
    middleware blocks or hands to another model, an assessment by ``llm.as_assessor()``) is logged on its own
    line with ``source``. A call answered from LangChain's LLM cache is logged with ``"cached": true`` and
    ``guard_tokens`` 0: no assessment ran, the risk fields are those of the cached answer.

    Each line goes to the stdlib logger ``ras_guard.safety`` (INFO; ``record.ras`` holds the dict), so
    ``logging.config.dictConfig`` routes it, and, with ``path``, to a size-rotated file. An unwritable
    ``path`` raises :class:`~ras_guard.errors.SafetyLogError` here; a write that fails later raises it from
    the guarded call (``raise_error`` is set), so no line is lost without an error the application sees.

    Safe for concurrent calls (a lock guards the per-run state; the file handler has its own lock) and for
    async runs (LangChain runs this sync handler in a worker thread).

    Args:
        path: Log file (folders are created); None: the logger only.
        max_bytes: Rotate when the file would exceed this size; 0 never rotates.
        backup_count: Rotated files kept (``path.1`` ... ``path.N``).
        include_visual_context: Also log the one-sentence visual context (it describes user images).
        logger: Logger or logger name the lines go to (default ``"ras_guard.safety"``); None: the file only.

    Example:
        >>> handler = RiskLoggingCallbackHandler("logs/safety.jsonl", max_bytes=1_000_000)  # doctest: +SKIP
    """

    raise_error = True
    """A log line that cannot be written fails the call instead of vanishing (fail closed)."""

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        max_bytes: int = 10 * 1024 * 1024,
        backup_count: int = 5,
        include_visual_context: bool = False,
        logger: str | logging.Logger | None = SAFETY_LOGGER,
    ) -> None:
        self.path = Path(path) if path is not None else None
        self.include_visual_context = include_visual_context
        self._sink = SafetyLogSink(path, max_bytes=max_bytes, backup_count=backup_count, logger=logger)
        self._lock = threading.Lock()
        self._runs: dict[UUID, dict[str, Any]] = {}

    # ---------------------------------------------------------------- callbacks
    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[Any]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Start timing a guarded chat-model run."""
        meta = metadata or {}
        if meta.get("ls_provider") != _PROVIDER:
            return
        with self._lock:
            self._runs[run_id] = {
                "start": time.monotonic(),
                "model": meta.get("ls_model_name"),
                "parent_run_id": parent_run_id,
            }

    def on_custom_event(
        self,
        name: str,
        data: Any,
        *,
        run_id: UUID,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Keep the assessment of a run; log it at once if it belongs to no chat-model run."""
        if name != RAS_EVENT or not isinstance(data, dict):
            return
        with self._lock:
            run = self._runs.get(run_id)
            if run is not None:
                run["ras"] = data
                return
        self._write(run_id, None, data, None, latency=None)

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        """Log a finished guarded call."""
        with self._lock:
            run = self._runs.pop(run_id, None)
        if run is None:
            return
        message = _first_message(response)
        meta = getattr(message, "response_metadata", None) or {}
        ras: dict[str, Any] = meta["ras"] if isinstance(meta.get("ras"), dict) else run.get("ras") or {}
        cached = "ras" not in run and bool(ras)  # every fresh call sends its event before answering
        self._write(
            run_id, run, ras, getattr(message, "usage_metadata", None), time.monotonic() - run["start"],
            cached=cached,
        )

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        """Log a failed guarded call (e.g. an unsafe image URL)."""
        with self._lock:
            run = self._runs.pop(run_id, None)
        if run is None:
            return
        self._write(
            run_id,
            run,
            run.get("ras") or {},
            None,
            time.monotonic() - run["start"],
            error=f"{type(error).__name__}: {redact(error)[:300]}",
        )

    # ---------------------------------------------------------------- output
    def _write(
        self,
        run_id: UUID,
        run: dict[str, Any] | None,
        ras: dict[str, Any],
        usage: dict[str, Any] | None,
        latency: float | None,
        error: str | None = None,
        cached: bool = False,
    ) -> None:
        parent = (run or {}).get("parent_run_id")
        line: dict[str, Any] = {
            "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            "run_id": str(run_id),
            "parent_run_id": str(parent) if parent else None,
            "model": (run or {}).get("model") or ras.get("model_name"),
            "risk": ras.get("risk"),
            "similarity": ras.get("similarity"),
            "decision": "error" if error else ras.get("decision"),
            "policy": ras.get("policy"),
            "risk_given": ras.get("risk_given"),
            "calibration_id": ras.get("calibration_id"),
            "image_sha256": list(ras.get("image_sha256") or []),
            "guard_tokens": ras.get("guard_tokens"),
            "input_tokens": (usage or {}).get("input_tokens"),
            "output_tokens": (usage or {}).get("output_tokens"),
            "latency_s": round(latency, 4) if latency is not None else None,
        }
        if self.include_visual_context:
            line["visual_context"] = ras.get("visual_context")
        if run is None:
            line["source"] = ras.get("source", "event")
        if cached:  # answered from LangChain's cache: no assessment ran for this call
            line.update(cached=True, guard_tokens=0)
        if error:
            line["error"] = error
        self._sink.emit(line)

    def close(self) -> None:
        """Flush and close the log file."""
        self._sink.close()

    def __enter__(self) -> RiskLoggingCallbackHandler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
