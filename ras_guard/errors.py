"""The one error hierarchy of ras-guard.

Every error the library raises on purpose derives from :class:`RASGuardError`, so an application can catch
the whole family in one ``except``. Input errors also derive from :class:`ValueError` and lookups of missing
things from :class:`FileNotFoundError` / :class:`LookupError`, so generic handlers keep working.

Messages name the bad value and say how to fix it.

Tree (indented: subclass of the line above; builtin bases in brackets)::

    RASGuardError
        AllowedHostsError (ValueError): an allowed_hosts entry that cannot be parsed
        CalibrationError
            CalibrationIntegrityError: the content does not hash to its calibration_id
            CalibrationMismatchError: made for another model or configuration
        EvaluationError (ValueError)
        GenerationError
            GuardTimeoutError (TimeoutError): the call's deadline passed in a pass or between passes
        ImageError (ValueError)
            CorruptImageError
            ImageFetchError
                ImageFetchTimeoutError (TimeoutError): the image's fetch deadline passed
                UnsafeURLError
            ImageTooLargeError
        InvalidMessageError (ValueError)
            EmptyMessagesError
            PromptTooLongError: the prompt (plus the answer's max_new_tokens) does not fit the token limit
            ResponseFormatError: a structured-output format that is malformed or unsupported
            SpecialTokenError: supplied text would render as a control token
            UnknownContentPartError
            UnsupportedInputError
        ModelLoadError
            EngineNotAvailableError: the engine asked for is not installed
        RequestBlockedError: a blocked request, raised instead of a refusal on request
        SafetyLogError (OSError): the safety log cannot be written
        ServerOverloadedError: the server's queue is full; retry later
        SteeringArgumentError (ValueError): bad per-request steering arguments (vLLM answers HTTP 400)
        ToolCallingNotSupportedError
        UnknownOptionError (TypeError): a constructor option that does not exist (names the closest one)
        UnsupportedRequestError (ValueError): a well-formed request the server or engine cannot honour

Example:
    >>> from ras_guard.errors import ImageTooLargeError, RASGuardError
    >>> issubclass(ImageTooLargeError, RASGuardError)
    True
"""

from __future__ import annotations

__all__ = [
    "AllowedHostsError",
    "CalibrationError",
    "CalibrationIntegrityError",
    "CalibrationMismatchError",
    "CorruptImageError",
    "EmptyMessagesError",
    "EngineNotAvailableError",
    "EvaluationError",
    "GenerationError",
    "GuardTimeoutError",
    "ImageError",
    "ImageFetchError",
    "ImageFetchTimeoutError",
    "ImageTooLargeError",
    "InvalidMessageError",
    "ModelLoadError",
    "PromptTooLongError",
    "RASGuardError",
    "RequestBlockedError",
    "ResponseFormatError",
    "SafetyLogError",
    "ServerOverloadedError",
    "SpecialTokenError",
    "SteeringArgumentError",
    "ToolCallingNotSupportedError",
    "UnknownContentPartError",
    "UnknownOptionError",
    "UnsafeURLError",
    "UnsupportedInputError",
    "UnsupportedRequestError",
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


class SpecialTokenError(InvalidMessageError):
    """Supplied text would become a special or control token of the model (a forged turn, image slot...).

    Typed control strings are neutralised (kept as plain text); this is raised only when that is impossible or
    a control token still forms, e.g. from text parts that join into one.
    """


class ImageError(RASGuardError, ValueError):
    """Base class of image problems."""


class CorruptImageError(ImageError):
    """The image bytes cannot be decoded."""


class ImageTooLargeError(ImageError):
    """The image exceeds the configured pixel or byte limit."""


class ImageFetchError(ImageError):
    """An image URL could not be fetched (network error, bad status, timeout, too many bytes)."""


class ImageFetchTimeoutError(ImageFetchError, TimeoutError):
    """Fetching an image URL took longer than its deadline (DNS, connect, headers, redirects and body in all)."""


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


class AllowedHostsError(RASGuardError, ValueError):
    """An ``allowed_hosts`` entry cannot be parsed (it is refused when the fetch policy is built)."""


class CalibrationIntegrityError(CalibrationError):
    """A calibration's content does not hash to its ``calibration_id`` (edited, truncated or from another tool)."""


class ResponseFormatError(InvalidMessageError):
    """A ``response_format`` (structured output) is malformed, unsupported, or cannot be compiled."""


class SafetyLogError(RASGuardError, OSError):
    """The safety log cannot be written (unwritable path at construction, or a write that failed later)."""


class SteeringArgumentError(RASGuardError, ValueError):
    """A request's steering arguments (``ras_risk``, ``ras_risk_floor`` in vLLM's ``extra_args``) are invalid.

    A :class:`ValueError`, so vLLM answers HTTP 400.
    """


class UnknownOptionError(RASGuardError, TypeError):
    """A constructor got an option it does not have (a typo, another provider's name), or lacks a required one.

    The message names the closest known option; it is a :class:`TypeError`, as Python's "unexpected keyword
    argument" is.
    """


class RequestBlockedError(RASGuardError):
    """A guarded request was refused at high risk, and the caller asked for an exception instead of a refusal.

    Raised by the LangChain middleware with ``raise_on_violation=True``; ``record`` holds the risk metadata.
    """

    def __init__(self, message: str, record: dict | None = None) -> None:
        super().__init__(message)
        self.record = dict(record or {})


class EngineNotAvailableError(ModelLoadError):
    """The inference engine asked for (e.g. ``--engine vllm``) is not installed or not built yet."""


class UnsupportedRequestError(RASGuardError, ValueError):
    """A well-formed request asks for an option this server or engine cannot honour (``n > 1``, ...)."""


class ServerOverloadedError(RASGuardError):
    """The server's request queue is full or a request waited too long; retry after a pause."""


class PromptTooLongError(InvalidMessageError):
    """The prompt is longer than the token limit (the model's context or ``RASConfig.max_prompt_tokens``)."""


class GuardTimeoutError(GenerationError, TimeoutError):
    """The guarded call's deadline (``timeout=``) passed before every pass had finished; nothing is returned."""
