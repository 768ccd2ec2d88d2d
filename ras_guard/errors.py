"""The one error hierarchy of ras-guard.

Every error the library raises on purpose derives from :class:`RASGuardError`, so an application can catch
the whole family in one ``except``. Input errors also derive from :class:`ValueError` and lookups of missing
things from :class:`FileNotFoundError` / :class:`LookupError`, so generic handlers keep working.

Messages name the bad value and say how to fix it.

Tree (indented: subclass of the line above)::

    RASGuardError
        InvalidMessageError (ValueError)
            EmptyMessagesError, UnknownContentPartError, UnsupportedInputError
            PromptTooLongError: the prompt (plus the answer's max_new_tokens) does not fit the token limit
        ImageError (ValueError): CorruptImageError, ImageTooLargeError, ImageFetchError > UnsafeURLError
        CalibrationError > CalibrationMismatchError
        ModelLoadError
        EvaluationError (ValueError)
        GenerationError
            GuardTimeoutError (TimeoutError): the call's deadline passed in a pass or between passes
        ToolCallingNotSupportedError

Example:
    >>> from ras_guard.errors import ImageTooLargeError, RASGuardError
    >>> issubclass(ImageTooLargeError, RASGuardError)
    True
"""

from __future__ import annotations

__all__ = [
    "CalibrationError",
    "CalibrationMismatchError",
    "CorruptImageError",
    "EmptyMessagesError",
    "EvaluationError",
    "GenerationError",
    "GuardTimeoutError",
    "ImageError",
    "ImageFetchError",
    "ImageTooLargeError",
    "InvalidMessageError",
    "ModelLoadError",
    "PromptTooLongError",
    "RASGuardError",
    "ToolCallingNotSupportedError",
    "UnknownContentPartError",
    "UnsafeURLError",
    "UnsupportedInputError",
]


class RASGuardError(Exception):
    """Base class of every error raised by ras-guard."""


class InvalidMessageError(RASGuardError, ValueError):
    """A chat message is malformed (missing role, content of the wrong type, ...)."""


class EmptyMessagesError(InvalidMessageError):
    """The message list is empty or holds no user content to answer."""


class UnknownContentPartError(InvalidMessageError):
    """A content part has a ``type`` that ras-guard does not understand."""


class UnsupportedInputError(InvalidMessageError):
    """The input is well formed but the loaded model cannot take it (e.g. an image for a text-only model)."""


class ImageError(RASGuardError, ValueError):
    """Base class of image problems."""


class CorruptImageError(ImageError):
    """The image bytes cannot be decoded."""


class ImageTooLargeError(ImageError):
    """The image exceeds the configured pixel or byte limit."""


class ImageFetchError(ImageError):
    """An image URL could not be fetched (network error, bad status, timeout, too many bytes)."""


class UnsafeURLError(ImageFetchError):
    """An image URL points at a loopback, private, link-local or otherwise internal address."""


class CalibrationError(RASGuardError):
    """A calibration artifact is missing, malformed, or cannot be fitted."""


class CalibrationMismatchError(CalibrationError):
    """A calibration was made for another model than the one it is used with."""


class ModelLoadError(RASGuardError):
    """A checkpoint cannot be loaded (missing folder, unsupported architecture, ...)."""


class EvaluationError(RASGuardError, ValueError):
    """An evaluation or analysis cannot run as asked (unknown suite, bad judge, resuming a different run...)."""


class GenerationError(RASGuardError):
    """Generation failed inside the model; the model itself is left unchanged."""


class ToolCallingNotSupportedError(RASGuardError):
    """The model's chat template does not render tools."""


class PromptTooLongError(InvalidMessageError):
    """The prompt is longer than the token limit (the model's context or ``RASConfig.max_prompt_tokens``)."""


class GuardTimeoutError(GenerationError, TimeoutError):
    """The guarded call's deadline (``timeout=``) passed before every pass had finished; nothing is returned."""
