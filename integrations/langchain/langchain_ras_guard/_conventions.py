"""LangChain conventions of a local chat model: token counting, the model profile, the seed (private).

* ``get_token_ids`` / ``get_num_tokens`` use the checkpoint's own tokenizer (LangChain's default is GPT-2's,
  which this package does not ship, so it counted 0 and ``trim_messages`` never trimmed);
  ``get_num_tokens_from_messages`` renders the chat template, as the model will see it (images included).
* The profile states what the checkpoint does: tool calling when its chat template renders tools and the
  model is not known to ignore them (the bundled demo model is a toy that never calls tools), image input
  when it is a vision-language model, the context window from its config.
* ``seed`` seeds torch's random generator right before a sampled answer.

Example:
    >>> llm.get_num_tokens("hello world")  # doctest: +SKIP
    2
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from langchain_core.language_models.base import LangSmithParams
from langchain_core.language_models.model_profile import ModelProfile
from langchain_core.messages import BaseMessage, get_buffer_string
from langchain_core.utils.function_calling import convert_to_openai_tool
from ras_guard import RASGuard
from ras_guard.backends.protocol import GenerationRequest
from ras_guard.errors import InvalidMessageError

__all__ = ["ConventionsMixin", "calls_tools", "guard_profile", "seeded", "warn_if_no_tool_calls"]

_SEED_LOCK = threading.Lock()


def _is_demo(name: str) -> bool:
    from ras_guard import demo

    try:
        return Path(name).resolve() == demo.model_path().resolve()
    except (OSError, ValueError):
        return False


def _context_window(guard: RASGuard) -> int | None:
    config = getattr(getattr(guard.backend, "model", None), "config", None)
    if config is None:
        return None
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    n = getattr(text, "max_position_embeddings", None)
    return int(n) if isinstance(n, int) else None


def calls_tools(guard: RASGuard) -> bool:
    """Whether the model can call tools: its template renders them and it is not known to ignore them."""
    return bool(guard.supports_tools) and not _is_demo(str(guard.model_name))


def guard_profile(guard: RASGuard) -> ModelProfile:
    """The honest profile of a loaded guard's model."""
    multimodal = bool(getattr(guard.backend, "is_multimodal", False))
    tools = calls_tools(guard)
    profile = ModelProfile(
        name=str(guard.model_name),
        open_weights=True,
        text_inputs=True,
        text_outputs=True,
        image_inputs=multimodal,
        image_url_inputs=multimodal,
        image_tool_message=multimodal and tools,
        audio_inputs=False,
        video_inputs=False,
        pdf_inputs=False,
        tool_calling=tools,
        tool_choice=False,  # a local model cannot be forced to call a tool
        structured_output=False,  # no JSON guarantee without constrained decoding
    )
    window = _context_window(guard)
    if window:
        profile["max_input_tokens"] = window
    return profile


def warn_if_no_tool_calls(profile: ModelProfile | None, model: str) -> None:
    """Warn when tools are bound to a model its profile says does not call them."""
    if profile and profile.get("tool_calling") is False:
        warnings.warn(
            f"tools were bound to {model!r}, whose profile says it does not call tools (the bundled demo "
            "model is a toy that never does): its answers will be plain text. Use a tool-calling checkpoint "
            "(e.g. Qwen2.5-VL) to act on tools.",
            UserWarning,
            stacklevel=3,
        )


def seeded(seed: int | None) -> None:
    """Seed torch's generators for the next sampled answer (None: leave them alone)."""
    if seed is not None:
        with _SEED_LOCK:
            torch.manual_seed(int(seed))


def token_ids(guard: RASGuard, text: str) -> list[int]:
    """Token ids of ``text`` by the checkpoint's tokenizer, without special tokens."""
    tokenizer = guard.backend.tokenizer  # type: ignore[attr-defined]
    return [int(t) for t in tokenizer.encode(text, add_special_tokens=False)]


def count_messages(
    guard: RASGuard, converted: list[dict[str, Any]] | None, messages: Sequence[BaseMessage], tools: Any
) -> int:
    """Prompt tokens of a conversation as the chat template renders it (text per message if it cannot).

    Args:
        guard: The loaded guard.
        converted: The messages as chat dicts (None when they could not be converted).
        messages: The LangChain messages (for the fallback).
        tools: Tools as LangChain accepts them, rendered by the template when it can.
    """
    if converted is not None:
        schemas = [convert_to_openai_tool(t) for t in tools] if tools and guard.supports_tools else None
        try:
            conv = guard.normalize(converted).as_list()
            request = GenerationRequest(messages=conv, max_new_tokens=1, tools=schemas)
            return guard.backend.count_prompt_tokens(request)
        except InvalidMessageError:
            pass  # e.g. a history slice without a user turn: count its text
    return sum(len(token_ids(guard, get_buffer_string([m]))) for m in messages)


class ConventionsMixin:
    """Token counting with the checkpoint's tokenizer and the model profile (mixed into the chat model)."""

    if TYPE_CHECKING:  # fields of the chat model
        model: str
        calibration: str | None
        policy: Literal["steer", "block", "monitor"]
        block_threshold: float
        max_tokens: int
        temperature: float | None
        stop: list[str] | None

    def _guard(self) -> RASGuard:  # provided by the chat model
        raise NotImplementedError

    @property
    def _identifying_params(self) -> dict[str, Any]:
        """What identifies the model in LangChain's cache and traces."""
        return {
            "model": self.model,
            "calibration": self.calibration,
            "policy": self.policy,
            "block_threshold": self.block_threshold,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
        }

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = LangSmithParams(
            ls_provider="ras_guard",
            ls_model_name=str(kwargs.get("model") or self.model),
            ls_model_type="chat",
            ls_temperature=kwargs.get("temperature", self.temperature),
            ls_max_tokens=kwargs.get("max_tokens", self.max_tokens),
        )
        if ls_stop := stop or self.stop:
            params["ls_stop"] = ls_stop
        return params

    def get_token_ids(self, text: str) -> list[int]:
        """Token ids of ``text`` by the checkpoint's own tokenizer (no special tokens).

        Example:
            >>> llm.get_token_ids("hello")  # doctest: +SKIP
            [123]
        """
        custom = getattr(self, "custom_get_token_ids", None)
        return custom(text) if custom is not None else token_ids(self._guard(), text)

    def get_num_tokens_from_messages(
        self, messages: list[BaseMessage], tools: Sequence[Any] | None = None
    ) -> int:
        """Prompt tokens of ``messages`` as the chat template renders them (images and tools included).

        Example:
            >>> llm.get_num_tokens_from_messages([HumanMessage("hello")])  # doctest: +SKIP
            9
        """
        try:
            converted = self.convert_messages(messages)  # type: ignore[attr-defined]
        except InvalidMessageError:
            converted = None
        return count_messages(self._guard(), converted, messages, tools)
