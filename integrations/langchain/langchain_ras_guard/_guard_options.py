"""Options of :class:`~langchain_ras_guard.RASGuardedChatModel`: its pydantic fields and their checks.

Kept apart from the chat model's behaviour so each stays one concept; the chat model inherits them, and
pydantic, LangChain's serialisation and the standard tests see them as its own fields.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator
from ras_guard import RASGuard
from ras_guard.fetch import parse_allowed_hosts

from ._batch import BatchingChatModel
from ._options import chat_model_options

__all__ = ["GuardOptions"]


class GuardOptions(BatchingChatModel):
    """Fields of the guarded chat model (each docstring states its default)."""

    model_config = ConfigDict(arbitrary_types_allowed=True, populate_by_name=True)

    model: str
    """No default (required unless ``guard`` is given): checkpoint folder, or ``"demo"`` (the bundled toy)."""
    calibration: str | None = None
    """Calibration folder; default None: the demo's own for ``"demo"``, else a ``ras_risk``-only guard."""
    guard: RASGuard | None = Field(default=None, exclude=True)
    """A loaded guard to share among chat models; default None: loaded from ``model``."""
    device: str | None = None
    """Torch device for loading (``"cpu"``, ``"cuda"``...); default None: CUDA when available, else CPU."""
    dtype: str | None = None
    """Torch dtype for loading (``"float32"``, ``"bfloat16"``, ``"auto"``); default None: the checkpoint's"""
    max_tokens: int = Field(default=256, ge=1)
    """Maximum new tokens of an answer (default 256)."""
    temperature: float | None = Field(default=None, ge=0.0)
    """Sampling temperature; 0 means greedy; default None keeps the checkpoint's generation config."""
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    """Nucleus sampling mass; given alone it samples at temperature 1.0 (OpenAI's semantics); default None:
    the checkpoint's."""
    stop: list[str] | None = Field(default=None, alias="stop_sequences")
    """Stop strings; the answer is cut before the first one (default None)."""
    streaming: bool = False
    """Stream tokens to callback handlers also from ``invoke`` (default False)."""
    timeout: float | None = Field(default=None, gt=0.0)
    """Seconds the whole call may take (image fetch, caption, risk and answer passes, streaming); past it the
    running pass stops at the next token and ``ras_guard.errors.GuardTimeoutError`` is raised (default None:
    no limit)."""
    max_retries: int = Field(default=2, ge=0)
    """Retries of an image download after a connection error or an HTTP 5xx (default 2)."""
    policy: Literal["steer", "block", "monitor"] = "steer"
    """Steer the answer (default ``"steer"``), refuse above ``block_threshold``, or only report the risk."""
    block_threshold: float = Field(default=0.5, ge=0.0, le=1.0)
    """Risk at or above which ``policy="block"`` refuses without generating (default 0.5)."""
    refusal_message: str = "I can't help with that request."
    """Text of the refusal block of a blocked request (default "I can't help with that request.")."""
    allowed_hosts: list[str] = Field(default_factory=list)
    """Image URL hosts exempt from the private-address check (names, ``*.suffix``, IPs, CIDR networks; with
    ``:PORT`` only that port); an entry that cannot be parsed raises at construction."""
    allow_private_urls: bool = False
    """Fetch image URLs of loopback/private/link-local addresses (trusted input only); default False."""
    max_image_bytes: int = Field(default=20 * 1024 * 1024, ge=1)
    """Largest accepted image in bytes (downloads stop reading past it); default 20 MiB."""
    image_timeout: float = Field(default=10.0, gt=0.0)
    """Seconds allowed to fetch one image URL (DNS, retries, redirects and body); default 10."""
    seed: int | None = None
    """Seed of torch's generator, set right before each sampled answer (reproducible runs on one device);
    None (default): not seeded. A ``batch`` chunk is seeded once, so its rows differ from one-by-one calls."""
    include_visual_context: bool = True
    """Report the image description (``visual_context``) in ``response_metadata["ras"]``, the
    ``ras_risk_assessed`` event and agent state (default True); False reports None there."""
    model_kwargs: dict[str, Any] = Field(default_factory=dict)
    """Extra keyword arguments for ``model.generate`` (e.g. ``repetition_penalty``); default {}."""

    @model_validator(mode="before")
    @classmethod
    def _check_options(cls, data: Any) -> Any:
        """Unknown keywords raise, naming the closest option; ``model`` is required unless ``guard`` is."""
        return chat_model_options(cls.__name__, cls.model_fields, data)

    @field_validator("allowed_hosts")
    @classmethod
    def _check_hosts(cls, value: list[str]) -> list[str]:
        """Refuse unparsable entries now (``AllowedHostsError``), not at the first image URL."""
        parse_allowed_hosts(value)
        return value
