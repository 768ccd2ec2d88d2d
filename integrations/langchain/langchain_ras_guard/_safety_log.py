"""Where safety-log lines go: the named stdlib logger ``ras_guard.safety``, and optionally a rotating file.

Every line is one ``logging`` record on the logger :data:`SAFETY_LOGGER` (level INFO, message: the JSON line,
``record.ras``: the same fields as a dict, for JSON formatters such as python-json-logger), so an application
routes it with ``logging.config.dictConfig`` like any other log. The file handler of
:class:`~langchain_ras_guard.RiskLoggingCallbackHandler` (``path=...``) is a convenience on top: it writes the
JSON lines of that handler only, size-rotated.

No line is dropped silently: the file is opened for appending at construction (an unwritable path raises
:class:`~ras_guard.errors.SafetyLogError` there), and a later write error raises ``SafetyLogError`` instead of
logging's default of printing a traceback to stderr and going on. The callback handler sets ``raise_error``,
so LangChain lets that error reach the application's call.

Example:
    >>> import logging.config
    >>> logging.config.dictConfig({"version": 1, "disable_existing_loggers": False,
    ...     "handlers": {"safety": {"class": "logging.StreamHandler", "stream": "ext://sys.stdout"}},
    ...     "loggers": {"ras_guard.safety": {"handlers": ["safety"], "level": "INFO", "propagate": False}}})
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import sys
from pathlib import Path
from typing import Any

from ras_guard.errors import SafetyLogError

__all__ = ["SAFETY_LOGGER", "SafetyLogSink"]

SAFETY_LOGGER = "ras_guard.safety"
"""Name of the stdlib logger every safety-log line is sent to."""


class _StrictRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """A rotating file handler whose write errors raise instead of being printed and forgotten."""

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        exc = sys.exc_info()[1]
        raise SafetyLogError(
            f"the safety log {self.baseFilename!r} could not be written ({type(exc).__name__}: {exc}); "
            "the line was not logged. Fix the path or its permissions."
        ) from exc


def _check_writable(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8"):
            pass
    except OSError as exc:
        raise SafetyLogError(
            f"the safety log path {str(path)!r} is not writable ({type(exc).__name__}: "
            f"{exc.strerror or exc}); pass a path in a writable folder, or path=None to log through the "
            "'ras_guard.safety' logger only."
        ) from exc


class SafetyLogSink:
    """Sends JSON lines to the named logger and, with ``path``, to a size-rotated file.

    Args:
        path: Log file (folders are created), or None for the logger only.
        max_bytes: Rotate when the file would exceed this size; 0 never rotates.
        backup_count: Rotated files kept.
        logger: Logger (or its name) the lines are sent to; None sends to the file only.

    Raises:
        SafetyLogError: ``path`` cannot be written.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None,
        *,
        max_bytes: int,
        backup_count: int,
        logger: str | logging.Logger | None = SAFETY_LOGGER,
    ) -> None:
        self.path = Path(path) if path is not None else None
        self.logger = logging.getLogger(logger) if isinstance(logger, str) else logger
        self._file: logging.Handler | None = None
        if self.path is not None:
            _check_writable(self.path)
            self._file = _StrictRotatingFileHandler(
                self.path, maxBytes=max_bytes, backupCount=backup_count, encoding="utf-8", delay=True
            )
            self._file.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, line: dict[str, Any]) -> None:
        """Write one line (to the file first, so its errors surface even if the logger is not configured)."""
        text = json.dumps(line, ensure_ascii=False)
        name = self.logger.name if self.logger is not None else SAFETY_LOGGER
        record = logging.LogRecord(name, logging.INFO, __file__, 0, text, None, None)
        record.ras = line
        if self._file is not None:
            self._file.handle(record)
        if self.logger is not None and self.logger.isEnabledFor(logging.INFO):
            self.logger.handle(record)

    def close(self) -> None:
        """Flush and close the file (the logger belongs to the application)."""
        if self._file is not None:
            self._file.close()
